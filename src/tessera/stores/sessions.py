"""The session store contract: what the session manager needs from any backend.

Stores are deliberately dumb: they keep :class:`SessionRecord` values keyed by the SHA-256 hex
digest of the session ID (never the ID itself), honour ``expires_at``, keep a per-user index, and
never resurrect a record that is gone. Policy (timeouts, size budget, rotation, caps) lives in
:mod:`tessera.sessions`, so it is written once for every backend.

One exception to "dumb": :meth:`SessionStore.load` performs the sliding renewal itself when it is
due, so that backends with a network hop (Redis, SQL) load and touch in one round trip.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable


class SessionRecord(NamedTuple):
    """One stored session. Times are Unix seconds (see :mod:`tessera.clock`).

    A named tuple rather than a frozen dataclass: it is as immutable and as small, but it is
    built in C (a frozen dataclass pays one ``object.__setattr__`` per field), and a record is
    built on every session write. ``_replace`` and ``_make`` copy it; ``_fields`` names the
    fields in constructor order.
    """

    id_hash: str
    """SHA-256 hex digest of the session ID; the ID itself is never stored."""
    data: bytes
    """Serialized session data (JSON, UTF-8), already checked against the size budget."""
    created_at: float
    last_seen: float
    """Last *written* access: updated at most once per renewal interval."""
    idle_timeout: float
    """Seconds of inactivity that end this session (per session: remember-me may differ)."""
    absolute_expires_at: float
    """Hard end of life, whatever the activity."""
    user_id: str | None = None
    kind: str = "browser"
    """``browser`` (cookie) or ``token`` (an app holding access and refresh tokens)."""
    ip: str | None = None
    user_agent: str | None = None
    remembered: bool = False
    """Restored by a remember-me cookie rather than a password (re-auth for sensitive changes)."""
    persistent: bool = False
    """The cookie outlives the browser (Max-Age = remaining absolute lifetime), as asked at login
    or create; stores keep it like ``remembered`` so a rotated session's cookie stays persistent."""

    @property
    def expires_at(self) -> float:
        """When the session ends if nothing touches it again."""
        idle_end = self.last_seen + self.idle_timeout
        absolute = self.absolute_expires_at
        # min(idle_end, absolute) without the builtin call (this runs several times per request),
        # choosing exactly as min() does.
        return absolute if absolute < idle_end else idle_end

    def is_live(self, now: float) -> bool:
        return now < self.expires_at

    def touched(self, now: float) -> SessionRecord:
        """This record with its last access moved to ``now``."""
        return self._replace(last_seen=now)


@runtime_checkable
class SessionStore(Protocol):
    """What every session backend provides. All methods are async (a store in this process's
    memory may also offer the synchronous twins of :class:`InstantSessionStore`)."""

    async def create(self, record: SessionRecord) -> None:
        """Store a new session. The ID is fresh (256 random bits), so no collision check."""
        ...

    async def load(
        self, id_hash: str, now: float, renewal_interval: float
    ) -> tuple[SessionRecord, bool] | None:
        """The live session with that digest, or None if absent or expired at ``now``.

        When ``now - last_seen >= renewal_interval`` the store also moves ``last_seen`` to
        ``now`` (extending ``expires_at``) in the same operation and returns ``True`` as the
        second item (the renewal, reported once however many loads see it due).
        """
        ...

    async def update(
        self, record: SessionRecord, now: float, previous: SessionRecord | None = None
    ) -> bool:
        """Replace data and metadata of an existing live session.

        Returns False, writing nothing, when the session is gone or expired at ``now``: a
        session destroyed elsewhere is never resurrected by a late save.

        ``previous`` is the stored record ``record`` was copied from, when the caller knows it
        (the manager's usual save). A store may then skip work that depends only on fields
        unchanged since, such as the per-user index when the user and the absolute expiry are
        the same; without it, anything may have changed.
        """
        ...

    async def replace(self, old_id_hash: str, record: SessionRecord, now: float) -> bool:
        """Atomically delete ``old_id_hash`` and create ``record`` (ID rotation).

        Returns False, writing nothing, when the old session is gone or expired at ``now``.
        """
        ...

    async def delete(self, id_hash: str) -> bool:
        """Remove one session; True if it existed."""
        ...

    async def list_for_user(self, user_id: str, now: float) -> list[SessionRecord]:
        """The user's live sessions, oldest first (by ``created_at``)."""
        ...

    async def delete_for_user(self, user_id: str, *, keep: str | None = None) -> int:
        """Remove every session of the user except the one with digest ``keep``; the count."""
        ...

    async def list_all(self, now: float, limit: int = 1000) -> list[SessionRecord]:
        """Live sessions, newest first, at most ``limit`` (for the admin CLI)."""
        ...

    async def sweep(self, now: float) -> int:
        """Remove what has expired at ``now``; the count. Costs O(expired), not O(all)."""
        ...

    async def ping(self) -> None:
        """Raise :class:`tessera.errors.StoreUnavailable` when the backend cannot be reached."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class InstantSessionStore(Protocol):
    """Optional synchronous twins of the two per-request operations, for stores without I/O.

    The in-memory store answers without ever waiting, so awaiting it only adds a coroutine per
    call; on the request path (load before the app, update after) the manager calls these
    instead when the store has them. Same contracts as ``load`` and ``update``.
    """

    def load_now(
        self, id_hash: str, now: float, renewal_interval: float
    ) -> tuple[SessionRecord, bool] | None: ...

    def update_now(
        self, record: SessionRecord, now: float, previous: SessionRecord | None = None
    ) -> bool:
        """``update``; ``previous`` may name the record ``record`` was copied from with only
        ``data`` and a later ``last_seen``, so a store still holding it can skip re-indexing."""
        ...
