"""Refresh-token families in process memory: the library default and the reference semantics.

Atomicity comes from asyncio itself: :meth:`MemoryRefreshTokenStore.rotate` contains no
``await``, so no other coroutine can run between reading a token's state and writing the new
one. Memory is bounded by the families' absolute lifetime: every ``create`` sweeps what has
expired (cheaply, from a heap ordered by expiry).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, replace

from tessera.stores.refresh_tokens import RefreshFamily, RotateOutcome, RotateResult


@dataclass(slots=True)
class _Token:
    family_id: str
    created_at: float
    rotated_at: float | None = None
    successor_hash: str | None = None
    successor_box: bytes | None = None


class MemoryRefreshTokenStore:
    """A :class:`~tessera.stores.refresh_tokens.RefreshTokenStore` in dicts."""

    __slots__ = ("_expiry", "_families", "_family_tokens", "_tokens")

    def __init__(self) -> None:
        self._families: dict[str, RefreshFamily] = {}
        self._tokens: dict[str, _Token] = {}
        self._family_tokens: dict[str, list[str]] = {}
        self._expiry: list[tuple[float, str]] = []

    def __repr__(self) -> str:
        return f"<MemoryRefreshTokenStore {len(self._families)} families>"

    async def create(self, family: RefreshFamily, token_hash: str) -> None:
        self._sweep(family.created_at)
        self._families[family.family_id] = family
        self._tokens[token_hash] = _Token(family.family_id, family.created_at)
        self._family_tokens[family.family_id] = [token_hash]
        heapq.heappush(self._expiry, (family.expires_at, family.family_id))

    async def rotate(
        self,
        token_hash: str,
        client_id: str,
        successor_hash: str,
        successor_box: bytes,
        now: float,
        grace: float,
    ) -> RotateResult:
        # No await from here to the end: this is the critical section.
        token = self._tokens.get(token_hash)
        family = None if token is None else self._families.get(token.family_id)
        if token is None or family is None:
            return RotateResult(RotateOutcome.UNKNOWN)
        if family.client_id != client_id:
            return RotateResult(RotateOutcome.WRONG_CLIENT, family)
        if family.revoked_at is not None:
            return RotateResult(RotateOutcome.REVOKED, family)
        if now >= family.expires_at:
            return RotateResult(RotateOutcome.EXPIRED, family)
        if token.rotated_at is None:
            token.rotated_at = now
            token.successor_hash = successor_hash
            token.successor_box = successor_box
            self._tokens[successor_hash] = _Token(family.family_id, now)
            self._family_tokens[family.family_id].append(successor_hash)
            return RotateResult(RotateOutcome.ROTATED, family, successor_hash)
        if now - token.rotated_at <= grace:
            return RotateResult(
                RotateOutcome.GRACE, family, token.successor_hash, token.successor_box
            )
        revoked = replace(family, revoked_at=now)
        self._families[family.family_id] = revoked
        return RotateResult(RotateOutcome.REUSED, revoked)

    async def get_family(self, family_id: str) -> RefreshFamily | None:
        return self._families.get(family_id)

    async def revoke_family(self, family_id: str, now: float) -> bool:
        family = self._families.get(family_id)
        if family is None or family.revoked_at is not None:
            return False
        self._families[family_id] = replace(family, revoked_at=now)
        return True

    def _revoke_where(self, now: float, *, sid: str | None = None, user: str | None = None) -> int:
        count = 0
        for family in list(self._families.values()):
            if family.revoked_at is None and (family.sid == sid or family.user_id == user):
                self._families[family.family_id] = replace(family, revoked_at=now)
                count += 1
        return count

    async def revoke_for_session(self, sid: str, now: float) -> int:
        return self._revoke_where(now, sid=sid)

    async def revoke_for_user(self, user_id: str, now: float) -> int:
        return self._revoke_where(now, user=user_id)

    def _sweep(self, now: float) -> int:
        count = 0
        while self._expiry and self._expiry[0][0] <= now:
            _, family_id = heapq.heappop(self._expiry)
            if self._families.pop(family_id, None) is not None:
                count += 1
            for token_hash in self._family_tokens.pop(family_id, ()):
                self._tokens.pop(token_hash, None)
        return count

    async def sweep(self, now: float) -> int:
        return self._sweep(now)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
