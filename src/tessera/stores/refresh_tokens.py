"""The refresh-token store contract: families of rotating tokens, kept as SHA-256 digests only.

A *family* is the chain of refresh tokens that descends from one login; it is bound to a user,
a session (``sid``) and a client, and dies at an absolute ``expires_at`` whatever the rotations.
Each token row remembers whether it was rotated, when, and into which successor.

The one operation that matters is :meth:`RefreshTokenStore.rotate`, a single atomic state
transition that every backend implements the same way (memory: no ``await`` inside the critical
section; SQL: a conditional ``UPDATE ... WHERE rotated_at IS NULL`` whose row count decides;
Redis: one Lua script). Policy (token format, encryption of the successor, errors) lives in
:mod:`tessera.tokens.refresh`, written once.

The successor box: to let a duplicate refresh within the grace window receive *the same*
successor, the store keeps the successor's raw token encrypted under a key only the holder of
the presented (old) token can derive. The store therefore holds digests and ciphertexts, never
a usable token.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class RefreshFamily:
    """One login's chain of refresh tokens. Times are Unix seconds."""

    family_id: str
    user_id: str
    sid: str
    client_id: str
    created_at: float
    expires_at: float
    """Absolute end of the family (Settings.refresh_token_ttl after login); rotation never
    extends it."""
    revoked_at: float | None = None

    def is_live(self, now: float) -> bool:
        return self.revoked_at is None and now < self.expires_at


class RotateOutcome(enum.StrEnum):
    """What :meth:`RefreshTokenStore.rotate` did, decided atomically, in this order of checks."""

    UNKNOWN = "unknown"
    """No such token (never issued, or its family was swept)."""
    WRONG_CLIENT = "wrong_client"
    """The family belongs to another client; nothing changed."""
    REVOKED = "revoked"
    """The family was revoked before; nothing changed."""
    EXPIRED = "expired"
    """The family's absolute lifetime is over; nothing changed."""
    ROTATED = "rotated"
    """The token was live: it is now rotated and the successor is stored, live."""
    GRACE = "grace"
    """The token was rotated less than ``grace`` seconds ago: the existing successor's box is
    returned and nothing changed (a concurrent duplicate refresh)."""
    REUSED = "reused"
    """The token was rotated longer ago: the whole family is now revoked."""


@dataclass(frozen=True, slots=True)
class RotateResult:
    outcome: RotateOutcome
    family: RefreshFamily | None = None
    """The family (as it is after the operation); None only for UNKNOWN."""
    successor_hash: str | None = None
    """For ROTATED, the new token's digest; for GRACE, the existing successor's."""
    successor_box: bytes | None = field(default=None, repr=False)
    """For GRACE: the encrypted successor stored at rotation, for the caller to open."""


@runtime_checkable
class RefreshTokenStore(Protocol):
    """What every refresh-token backend provides. All methods are async."""

    async def create(self, family: RefreshFamily, token_hash: str) -> None:
        """Store a new family with its first token (fresh random values: no collision check)."""
        ...

    async def rotate(
        self,
        token_hash: str,
        client_id: str,
        successor_hash: str,
        successor_box: bytes,
        now: float,
        grace: float,
    ) -> RotateResult:
        """Atomically apply the first matching rule of :class:`RotateOutcome` to the token.

        Exactly one of any number of concurrent calls for one live token gets ROTATED; the
        others, within ``grace`` seconds, get GRACE with the winner's successor, so a family
        never forks into two live tokens.
        """
        ...

    async def get_family(self, family_id: str) -> RefreshFamily | None:
        """The family, revoked or not; None when absent (never created, or swept)."""
        ...

    async def revoke_family(self, family_id: str, now: float) -> bool:
        """Revoke one family; True if it existed and was not revoked yet."""
        ...

    async def revoke_for_session(self, sid: str, now: float) -> int:
        """Revoke every live family of a session (logout); the count."""
        ...

    async def revoke_for_user(self, user_id: str, now: float) -> int:
        """Revoke every live family of a user (password change, disable); the count."""
        ...

    async def sweep(self, now: float) -> int:
        """Delete families (and their tokens) whose lifetime is over; the count of families."""
        ...

    async def ping(self) -> None:
        """Raise :class:`tessera.errors.StoreUnavailable` when the backend cannot be reached."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
