"""Accounts: the user store, the password hasher and the clock put together.

:class:`UserService` owns the rules that must hold whichever page, API or CLI command drives
them: new passwords are checked, logins of unknown and of disabled users cost one argon2
verification just like a wrong password (no enumeration by timing, no hint that an account
exists but is disabled), stale hashes are upgraded on login, and a password change or a
disabling runs the registered callbacks, which is how the server revokes the user's other
sessions and remember-me tokens without this module knowing about sessions.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence

from tessera.clock import SYSTEM_CLOCK, Clock
from tessera.errors import NotFound
from tessera.identity.events import EventKind, EventLog
from tessera.identity.passwords import PasswordHasher, check_new_password
from tessera.identity.users import User, UserStore, normalize_email, normalize_username

__all__ = ["UserCallback", "UserService", "new_user_id"]

UserCallback = Callable[[User], Awaitable[None]]
"""Called with the updated user after a password change or a disabling."""


def new_user_id() -> str:
    """A fresh random user id: 128 bits as 32 hex characters."""
    return secrets.token_hex(16)


class UserService:
    """Registration, authentication and account changes over a :class:`UserStore`."""

    __slots__ = (
        "_clock",
        "_events",
        "_hasher",
        "_store",
        "on_disabled",
        "on_password_changed",
    )

    def __init__(
        self,
        store: UserStore,
        hasher: PasswordHasher,
        clock: Clock = SYSTEM_CLOCK,
        *,
        events: EventLog | None = None,
        on_password_changed: Sequence[UserCallback] = (),
        on_disabled: Sequence[UserCallback] = (),
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._clock = clock
        self._events = events
        self.on_password_changed: list[UserCallback] = list(on_password_changed)
        """Run after every password change (not after a rehash): revoke sessions here."""
        self.on_disabled: list[UserCallback] = list(on_disabled)
        """Run after a user is disabled: revoke sessions here."""

    @property
    def store(self) -> UserStore:
        return self._store

    async def register(self, username: str, password: str, email: str | None = None) -> User:
        """Create a user; InvalidInput for a bad name, email or password, Conflict if taken."""
        name = normalize_username(username)
        mail = normalize_email(email) if email is not None else None
        check_new_password(password)
        now = self._clock.now()
        user = User(
            id=new_user_id(),
            username=name,
            email=mail,
            password_hash=await self._hasher.hash_async(password),
            disabled=False,
            created_at=now,
            updated_at=now,
            password_changed_at=now,
        )
        await self._store.create(user)
        return user

    async def authenticate(self, username: str, password: str) -> User | None:
        """The user when the password is right and the account enabled; otherwise None.

        Exactly one argon2 verification runs for every outcome (unknown user, disabled user,
        wrong or right password), so the answer time does not tell them apart.
        """
        user = await self._store.get_by_username(username)
        if user is None:
            await self._hasher.dummy_verify_async(password)
            return None
        ok = await self._hasher.verify_async(user.password_hash, password)
        if not ok or user.disabled:
            return None
        if self._hasher.needs_rehash(user.password_hash):
            # Same password, new parameters: not a "change", so no callbacks and no new
            # password_changed_at (sessions made before stay valid).
            new_hash = await self._hasher.hash_async(password)
            user = await self._store.set_password_hash(
                user.id, new_hash, self._clock.now(), password_changed=False
            )
        return user

    async def _existing(self, user_id: str) -> User:
        user = await self._store.get_by_id(user_id)
        if user is None:
            raise NotFound("no such user", code="user_not_found")
        return user

    async def change_password(self, user_id: str, new_password: str) -> User:
        """Set a new password and run :attr:`on_password_changed`.

        Verifying the *current* password (or a recent login) is the caller's job: an admin
        resetting a password through the CLI has no current password to give.
        """
        check_new_password(new_password)
        await self._existing(user_id)
        new_hash = await self._hasher.hash_async(new_password)
        user = await self._store.set_password_hash(user_id, new_hash, self._clock.now())
        if self._events is not None:
            await self._events.record(EventKind.PASSWORD_CHANGED, user_id=user_id)
        await _run_callbacks(self.on_password_changed, user)
        return user

    async def disable(self, user_id: str) -> User:
        """Disable the account (logins fail like a wrong password) and run :attr:`on_disabled`."""
        user = await self._store.set_disabled(user_id, True, self._clock.now())
        if self._events is not None:
            await self._events.record(EventKind.USER_DISABLED, user_id=user_id)
        await _run_callbacks(self.on_disabled, user)
        return user

    async def enable(self, user_id: str) -> User:
        """Allow logins again."""
        return await self._store.set_disabled(user_id, False, self._clock.now())

    async def set_email(self, user_id: str, email: str | None) -> User:
        """Change or clear the email address; Conflict when another user has it."""
        user = await self._store.set_email(user_id, email, self._clock.now())
        if self._events is not None:
            await self._events.record(EventKind.EMAIL_CHANGED, user_id=user_id)
        return user


async def _run_callbacks(callbacks: Sequence[UserCallback], user: User) -> None:
    """Run every callback even if one fails, then raise the first failure.

    A failing revocation must not stop the others, and must not pass silently either: the
    caller learns that some sessions may have survived.
    """
    first: BaseException | None = None
    for callback in callbacks:
        try:
            await callback(user)
        except Exception as exc:
            first = first or exc
    if first is not None:
        raise first
