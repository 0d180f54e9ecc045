"""The revocation view: an in-memory answer to "is this access token revoked?", in O(1).

Access tokens are self-contained, so revoking one means remembering, until it would have
expired anyway, that it must be refused. Two kinds of mark cover every case Tessera needs:

- *session revoked at T*: logout, a session revoked from the account page or the admin CLI;
- *user revoked at T*: password change, account disabled, "log out everywhere".

A token is revoked when its ``iat`` is at or before the mark of its ``sid`` or of its ``sub``.
``iat`` has whole-second precision, so a token minted in the same second as a revocation is
refused too: failing closed for at most a second beats letting a token issued a moment before
the revocation through.

Every verification consults two dicts; nothing touches the network. The dicts are fed by the
:class:`~tessera.stores.revocations.RevocationStore` (at start: :meth:`RevocationView.load`),
by this instance's own revocations, and by other instances through the store's feed
(:meth:`RevocationView.listen`, Redis pub/sub). A mark is dropped once every token it could
concern has expired (``at`` + the longest access-token lifetime + leeway), so memory stays
bounded by the revocations of one token lifetime.
"""

from __future__ import annotations

import asyncio
import heapq
from typing import Protocol

from tessera.clock import Clock
from tessera.errors import ConfigError
from tessera.stores.revocations import (
    MarkKind,
    RevocationFeed,
    RevocationMark,
    RevocationStore,
)
from tessera.tokens.claims import DEFAULT_LEEWAY


class _Claims(Protocol):
    """The three claims a revocation decision reads (AccessClaims has them)."""

    @property
    def sid(self) -> str: ...
    @property
    def sub(self) -> str: ...
    @property
    def iat(self) -> float: ...


class RevocationView:
    """Session and user revocation marks, in memory, kept in step with a store and a feed."""

    __slots__ = ("_clock", "_expiry", "_feed", "_lifetime", "_sessions", "_store", "_users")

    def __init__(
        self,
        store: RevocationStore,
        clock: Clock,
        *,
        max_token_lifetime: float,
        leeway: float = DEFAULT_LEEWAY,
        feed: RevocationFeed | None = None,
    ) -> None:
        """``max_token_lifetime`` is the longest access-token ttl in use (Settings)."""
        self._store = store
        self._clock = clock
        self._feed = feed
        self._lifetime = max_token_lifetime + leeway
        self._sessions: dict[str, float] = {}
        self._users: dict[str, float] = {}
        self._expiry: list[tuple[float, MarkKind, str, float]] = []

    def __repr__(self) -> str:
        return f"<RevocationView {len(self._sessions)} sessions, {len(self._users)} users>"

    def __len__(self) -> int:
        return len(self._sessions) + len(self._users)

    def is_revoked(self, claims: _Claims) -> bool:
        """True when the token's session or user was revoked at or after its ``iat``."""
        at = self._sessions.get(claims.sid)
        if at is not None and claims.iat <= at:
            return True
        at = self._users.get(claims.sub)
        return at is not None and claims.iat <= at

    def apply(self, mark: RevocationMark) -> None:
        """Take a mark into memory (idempotent; the later instant wins)."""
        now = self._clock.now()
        self._prune(now)
        if mark.expires_at <= now:
            return
        table = self._sessions if mark.kind is MarkKind.SESSION else self._users
        known = table.get(mark.subject)
        if known is None or known < mark.at:
            table[mark.subject] = mark.at
            heapq.heappush(self._expiry, (mark.expires_at, mark.kind, mark.subject, mark.at))

    def _prune(self, now: float) -> None:
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            _, kind, subject, at = heapq.heappop(expiry)
            table = self._sessions if kind is MarkKind.SESSION else self._users
            # Drop the entry only if this heap item is its current mark: a later mark for the
            # same subject replaced it and has its own, later heap item.
            if table.get(subject) == at:
                del table[subject]

    async def revoke_session(self, sid: str, at: float | None = None) -> None:
        """Refuse every token of session ``sid`` issued at or before ``at`` (default: now)."""
        await self._revoke(MarkKind.SESSION, sid, at)

    async def revoke_user(self, user_id: str, at: float | None = None) -> None:
        """Refuse every token of user ``user_id`` issued at or before ``at`` (default: now)."""
        await self._revoke(MarkKind.USER, user_id, at)

    async def _revoke(self, kind: MarkKind, subject: str, at: float | None) -> None:
        when = self._clock.now() if at is None else at
        mark = RevocationMark(kind, subject, when, when + self._lifetime)
        # Apply before storing: this instance refuses the tokens even if the store is down
        # (the store error still reaches the caller, who must not report success).
        self.apply(mark)
        await self._store.add(mark)

    async def load(self) -> int:
        """Take every live mark from the store (at start, or after the feed was down)."""
        marks = await self._store.load_live(self._clock.now())
        for mark in marks:
            self.apply(mark)
        return len(marks)

    async def listen(self, ready: asyncio.Event | None = None) -> None:
        """Apply marks published by other instances until cancelled; run it as a task.

        Subscribes first, then loads the store, then sets ``ready``: a mark published in
        between is seen twice, never missed. Raises :class:`~tessera.errors.StoreUnavailable`
        when the feed breaks; the caller restarts it (and should treat the view as stale).
        """
        if self._feed is None:
            raise ConfigError("this revocation view has no feed to listen to")

        async def subscribed() -> None:
            await self.load()
            if ready is not None:
                ready.set()

        async for mark in self._feed.listen(subscribed):
            self.apply(mark)
