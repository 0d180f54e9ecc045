"""User records, the rules for usernames and email addresses, and the user store contract.

Usernames: NFKC-normalised, then restricted to ASCII ``[A-Za-z0-9._-]``, 1 to 64 characters,
starting with a letter or digit. The restriction is deliberate: it rules out homoglyph
impersonation ("admin" spelled with a Cyrillic a, U+0430), invisible and bidirectional
characters, and names that look like command-line options, without a confusables table to keep
up to date. NFKC runs first so that a name typed in full-width letters (U+FF21 ...) becomes its
ASCII form (and then collides with it) instead of being refused. Uniqueness is case-insensitive
and enforced by the database on a lower-case key column, so two concurrent registrations of
"Alice" and "alice" cannot both win.

Email addresses are optional, checked only for shape (one ``@``, no spaces or control
characters, at most 254 characters) and unique case-insensitively, also by the database.
"""

from __future__ import annotations

import builtins
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Final, Protocol, runtime_checkable

from tessera.errors import Conflict, InvalidInput, NotFound

__all__ = [
    "MAX_EMAIL_LENGTH",
    "MAX_USERNAME_LENGTH",
    "MemoryUserStore",
    "User",
    "UserStore",
    "email_key",
    "email_lookup_key",
    "normalize_email",
    "normalize_username",
    "username_key",
    "username_lookup_key",
]

MAX_USERNAME_LENGTH: Final = 64
MAX_EMAIL_LENGTH: Final = 254
"""RFC 5321's limit on a forward path, which every mail system honours."""

_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,253}")


def normalize_username(raw: str) -> str:
    """The username as it will be stored and shown; raises InvalidInput when not allowed."""
    # Bound the work before normalising: NFKC of a huge string is wasted effort.
    if len(raw) > 4 * MAX_USERNAME_LENGTH:
        raise InvalidInput("username is too long", code="invalid_username")
    name = unicodedata.normalize("NFKC", raw)
    if not _USERNAME.fullmatch(name):
        raise InvalidInput(
            "a username has 1 to 64 characters from A-Z a-z 0-9 . _ - and starts with a "
            "letter or digit",
            code="invalid_username",
        )
    return name


def username_key(raw: str) -> str:
    """The case-insensitive identity of a username: what the unique index is built on."""
    return normalize_username(raw).lower()


def normalize_email(raw: str) -> str:
    """The email address as stored and shown; raises InvalidInput when it is not one."""
    if len(raw) > 4 * MAX_EMAIL_LENGTH:
        raise InvalidInput("email address is too long", code="invalid_email")
    email = unicodedata.normalize("NFKC", raw.strip())
    if (
        len(email) > MAX_EMAIL_LENGTH
        or not _EMAIL.fullmatch(email)
        or any(unicodedata.category(c).startswith("C") for c in email)
    ):
        raise InvalidInput("not an email address", code="invalid_email")
    return email


def email_key(raw: str) -> str:
    """The case-insensitive identity of an email address (casefolded)."""
    return normalize_email(raw).casefold()


@dataclass(frozen=True, slots=True)
class User:
    """One account. Times are Unix seconds (see :mod:`tessera.clock`)."""

    id: str
    """Random and opaque (128 bits, hex); never derived from the username, never reused."""
    username: str
    email: str | None
    password_hash: str = field(repr=False)
    """argon2id PHC string. Kept out of ``repr`` so it never lands in a log or a traceback."""
    disabled: bool
    created_at: float
    updated_at: float
    password_changed_at: float


@runtime_checkable
class UserStore(Protocol):
    """What every user backend provides. Lookups by name or email are case-insensitive."""

    async def create(self, user: User) -> None:
        """Store a new user; :class:`Conflict` when the username or email is taken."""
        ...

    async def get_by_id(self, user_id: str) -> User | None: ...

    async def get_by_username(self, username: str) -> User | None:
        """The user whose username equals ``username`` ignoring case; None when invalid."""
        ...

    async def get_by_email(self, email: str) -> User | None:
        """The user with that email address ignoring case; None when invalid."""
        ...

    async def list(self, limit: int = 1000, offset: int = 0) -> builtins.list[User]:
        """Users ordered by username (case-insensitive)."""
        ...

    async def set_password_hash(
        self, user_id: str, password_hash: str, now: float, *, password_changed: bool = True
    ) -> User:
        """Replace the hash; ``password_changed=False`` for a rehash of the same password.

        Raises :class:`NotFound` for an unknown user.
        """
        ...

    async def set_disabled(self, user_id: str, disabled: bool, now: float) -> User:
        """Disable or re-enable; :class:`NotFound` for an unknown user."""
        ...

    async def set_email(self, user_id: str, email: str | None, now: float) -> User:
        """Change or clear the email; :class:`Conflict` when taken, :class:`NotFound`."""
        ...


def _or_none(normalise: Callable[[str], str], raw: str) -> str | None:
    try:
        return normalise(raw)
    except InvalidInput:
        return None


def username_lookup_key(raw: str) -> str | None:
    """:func:`username_key`, or None when ``raw`` cannot be anybody's username (lookups)."""
    return _or_none(username_key, raw)


def email_lookup_key(raw: str) -> str | None:
    """:func:`email_key`, or None when ``raw`` cannot be anybody's email address (lookups)."""
    return _or_none(email_key, raw)


class MemoryUserStore:
    """A dict-backed :class:`UserStore` for tests and examples; not shared across processes."""

    __slots__ = ("_by_email", "_by_id", "_by_name")

    def __init__(self) -> None:
        self._by_id: dict[str, User] = {}
        self._by_name: dict[str, str] = {}
        self._by_email: dict[str, str] = {}

    async def create(self, user: User) -> None:
        name = username_key(user.username)
        mail = email_key(user.email) if user.email is not None else None
        if user.id in self._by_id:
            raise Conflict("a user with this id exists", code="user_exists")
        if name in self._by_name:
            raise Conflict("this username is taken", code="username_taken")
        if mail is not None and mail in self._by_email:
            raise Conflict("this email address is taken", code="email_taken")
        self._by_id[user.id] = user
        self._by_name[name] = user.id
        if mail is not None:
            self._by_email[mail] = user.id

    async def get_by_id(self, user_id: str) -> User | None:
        return self._by_id.get(user_id)

    async def get_by_username(self, username: str) -> User | None:
        key = username_lookup_key(username)
        user_id = self._by_name.get(key) if key is not None else None
        return self._by_id.get(user_id) if user_id is not None else None

    async def get_by_email(self, email: str) -> User | None:
        key = email_lookup_key(email)
        user_id = self._by_email.get(key) if key is not None else None
        return self._by_id.get(user_id) if user_id is not None else None

    async def list(self, limit: int = 1000, offset: int = 0) -> builtins.list[User]:
        names = sorted(self._by_name)[offset : offset + limit]
        return [self._by_id[self._by_name[n]] for n in names]

    def _existing(self, user_id: str) -> User:
        user = self._by_id.get(user_id)
        if user is None:
            raise NotFound("no such user", code="user_not_found")
        return user

    async def set_password_hash(
        self, user_id: str, password_hash: str, now: float, *, password_changed: bool = True
    ) -> User:
        old = self._existing(user_id)
        changed_at = now if password_changed else old.password_changed_at
        new = replace(
            old, password_hash=password_hash, updated_at=now, password_changed_at=changed_at
        )
        self._by_id[user_id] = new
        return new

    async def set_disabled(self, user_id: str, disabled: bool, now: float) -> User:
        new = replace(self._existing(user_id), disabled=disabled, updated_at=now)
        self._by_id[user_id] = new
        return new

    async def set_email(self, user_id: str, email: str | None, now: float) -> User:
        old = self._existing(user_id)
        email = normalize_email(email) if email is not None else None
        new_key = email.casefold() if email is not None else None
        if new_key is not None and self._by_email.get(new_key, user_id) != user_id:
            raise Conflict("this email address is taken", code="email_taken")
        if old.email is not None:
            self._by_email.pop(email_key(old.email), None)
        if new_key is not None:
            self._by_email[new_key] = user_id
        new = replace(old, email=email, updated_at=now)
        self._by_id[user_id] = new
        return new
