"""Remember me: a persistent ``selector:validator`` cookie that logs a browser in again.

Written by hand (no maintained library implements this scheme for ASGI). It is the
"split token" design: the *selector* names a stored record (and stays the same for the life of
the login, so it also names the token's lineage), the *validator* is a 256-bit secret stored only
as its SHA-256 digest and replaced on every automatic login (single use).

A request that presents a known selector with a wrong validator is the signature of theft: the
thief and the victim both held the cookie, one of them used it first and rotated the validator,
the other now presents the old one. Then every remember-me token and session of that user is
revoked and a security event recorded (the caller does the last two; :class:`TheftDetected`
tells it to).

Two tabs of the same browser may race to use the same cookie when the session has just expired:
the loser would look like a thief. The previous validator's digest is therefore accepted for a
short grace window after rotation (default 10 s) without rotating again; the browser keeps the
cookie from the winner's response.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import MutableMapping
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from tessera.clock import Clock
from tessera.errors import VerificationFailed

DEFAULT_LIFETIME = 30 * 86400
DEFAULT_GRACE = 10.0

_TOKEN_RE = re.compile(r"^([A-Za-z0-9_-]{22}):([A-Za-z0-9_-]{43})$")
_SELECTOR_RE = re.compile(r"[A-Za-z0-9_-]{22}")

SESSION_KEY = "_remember"
"""Where a session keeps the selector of the remember-me token that logged it in (set at a
login with "remember me" and at every automatic login): revoking that one session then forgets
its token too, or the browser would log straight back in. A selector alone logs nobody in."""


def link_session(session: MutableMapping[str, Any], cookie_value: str) -> None:
    """Record in ``session`` the selector of the remember-me token (cookie ``selector:validator``)
    that logged it in (see :data:`SESSION_KEY`)."""
    session[SESSION_KEY] = cookie_value.split(":", 1)[0]


def remembered_selector(session_data: bytes) -> str | None:
    """The remember-me selector a stored session's data names (see :data:`SESSION_KEY`)."""
    if SESSION_KEY.encode() not in session_data:
        return None  # most sessions: no JSON decode
    try:
        data = json.loads(session_data)
    except ValueError:
        return None
    selector = data.get(SESSION_KEY) if isinstance(data, dict) else None
    return selector if isinstance(selector, str) and _SELECTOR_RE.fullmatch(selector) else None


def _digest(validator: str) -> str:
    return hashlib.sha256(validator.encode("ascii")).hexdigest()


class TheftDetected(VerificationFailed):
    """A known selector came with a wrong validator: the cookie was copied."""

    code = "remember_me_theft"

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        super().__init__("remember-me cookie reused after rotation")


@dataclass(frozen=True, slots=True)
class RememberToken:
    """A stored remember-me token. Only digests of validators are kept."""

    selector: str
    user_id: str
    validator_hash: str
    created_at: float
    expires_at: float
    last_used_at: float | None = None
    previous_hash: str | None = None
    """Digest of the validator replaced last, accepted until ``rotated_at + grace``."""
    rotated_at: float | None = None


@runtime_checkable
class RememberStore(Protocol):
    """Persistence of remember-me tokens (kept with the users: SQL in the server)."""

    async def add(self, token: RememberToken) -> None: ...

    async def get(self, selector: str) -> RememberToken | None: ...

    async def rotate(self, selector: str, expected_hash: str, new: RememberToken) -> bool:
        """Replace the token if its current digest is still ``expected_hash`` (compare-and-set)."""
        ...

    async def delete(self, selector: str) -> bool: ...

    async def delete_for_user(self, user_id: str) -> int: ...


class MemoryRememberStore:
    """Remember-me tokens in a dict: for tests and single-process library use."""

    def __init__(self) -> None:
        self._tokens: dict[str, RememberToken] = {}

    async def add(self, token: RememberToken) -> None:
        self._tokens[token.selector] = token

    async def get(self, selector: str) -> RememberToken | None:
        return self._tokens.get(selector)

    async def rotate(self, selector: str, expected_hash: str, new: RememberToken) -> bool:
        current = self._tokens.get(selector)
        if current is None or current.validator_hash != expected_hash:
            return False
        self._tokens[selector] = new
        return True

    async def delete(self, selector: str) -> bool:
        return self._tokens.pop(selector, None) is not None

    async def delete_for_user(self, user_id: str) -> int:
        doomed = [s for s, t in self._tokens.items() if t.user_id == user_id]
        for selector in doomed:
            del self._tokens[selector]
        return len(doomed)


@dataclass(frozen=True, slots=True)
class RememberResult:
    """A successful automatic login: who, and the cookie value to send back (None: keep)."""

    user_id: str
    cookie_value: str | None
    expires_at: float = float("inf")
    """When the token ends: the cookie's Max-Age counts down to it."""


class RememberMe:
    """Issues, checks and rotates remember-me tokens."""

    def __init__(
        self,
        store: RememberStore,
        clock: Clock,
        *,
        lifetime: float = DEFAULT_LIFETIME,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        self.store = store
        self.clock = clock
        self.lifetime = lifetime
        self.grace = grace

    async def issue(self, user_id: str, *, expires_at: float | None = None) -> str:
        """A new token for ``user_id``; returns the cookie value ``selector:validator``.

        ``expires_at`` keeps the end of a token this one replaces: a new token that no password
        login backs must not make the remembered login last longer.
        """
        now = self.clock.now()
        selector = secrets.token_urlsafe(16)
        validator = secrets.token_urlsafe(32)
        await self.store.add(
            RememberToken(
                selector=selector,
                user_id=user_id,
                validator_hash=_digest(validator),
                created_at=now,
                expires_at=now + self.lifetime if expires_at is None else expires_at,
            )
        )
        return f"{selector}:{validator}"

    @staticmethod
    def parse(cookie_value: str) -> tuple[str, str] | None:
        """``(selector, validator)`` of a well-formed cookie value, else None (no store call)."""
        match = _TOKEN_RE.match(cookie_value)
        return (match.group(1), match.group(2)) if match else None

    async def consume(self, cookie_value: str) -> RememberResult | None:
        """Log in with the cookie: the user and the rotated cookie value, or None.

        Raises :class:`TheftDetected` when the selector is known but the validator is not its
        current (nor, within the grace window, its previous) one.
        """
        found = await self._presented(cookie_value)
        if found is None:
            return None
        token, presented, now = found
        selector = token.selector
        if now >= token.expires_at:
            await self.store.delete(selector)
            return None
        if hmac.compare_digest(presented, token.validator_hash):
            new_validator = secrets.token_urlsafe(32)
            rotated = replace(
                token,
                validator_hash=_digest(new_validator),
                previous_hash=token.validator_hash,
                rotated_at=now,
                last_used_at=now,
            )
            if await self.store.rotate(selector, token.validator_hash, rotated):
                return RememberResult(
                    token.user_id, f"{selector}:{new_validator}", token.expires_at
                )
            # A parallel request rotated it first: judge this one against the new state.
            token = await self.store.get(selector) or token
        if self._previous_matches(token, presented, now):
            return RememberResult(token.user_id, None, token.expires_at)
        raise TheftDetected(token.user_id)

    async def check(self, cookie_value: str) -> RememberToken | None:
        """The live token the cookie names, if its validator is the current one (or within the
        grace window the previous one), without using it up; None when there is none.

        Raises :class:`TheftDetected` as :meth:`consume` does: the selector is known, the
        validator is not (a copy of the cookie was used elsewhere since).
        """
        found = await self._presented(cookie_value)
        if found is None:
            return None
        token, presented, now = found
        if now >= token.expires_at:
            return None
        if hmac.compare_digest(presented, token.validator_hash) or self._previous_matches(
            token, presented, now
        ):
            return token
        raise TheftDetected(token.user_id)

    async def _presented(self, cookie_value: str) -> tuple[RememberToken, str, float] | None:
        """The stored token a well-formed cookie names, the digest of the validator it
        presents, and the time; None for a malformed cookie or an unknown selector."""
        parsed = self.parse(cookie_value)
        if parsed is None:
            return None
        token = await self.store.get(parsed[0])
        if token is None:
            return None
        return token, _digest(parsed[1]), self.clock.now()

    def _previous_matches(self, token: RememberToken, presented: str, now: float) -> bool:
        """The validator replaced last, presented within the grace window (racing tabs)."""
        return (
            token.previous_hash is not None
            and token.rotated_at is not None
            and now - token.rotated_at <= self.grace
            and hmac.compare_digest(presented, token.previous_hash)
        )

    async def forget(self, cookie_value: str) -> None:
        """Delete the token a cookie names (at logout)."""
        parsed = self.parse(cookie_value)
        if parsed is not None:
            await self.store.delete(parsed[0])

    async def forget_user(self, user_id: str) -> int:
        """Delete every token of a user (theft, password change, disable)."""
        return await self.store.delete_for_user(user_id)
