"""The in-memory session store: the library default, bounded, and lean enough for a million.

Why it looks the way it does:

- **Bounded.** At ``max_sessions`` the least recently used session is evicted (and counted as
  ``sessions.evicted``): a flood of anonymous visitors degrades the oldest idle sessions
  instead of exhausting memory.
- **Expiry costs O(expired).** Sessions are filed by the whole second they expire in: a min-heap
  of those seconds and, per second, a list of the digests due then. Renewals and saves, which
  only ever move an expiry *later*, file nothing; when a second comes due, each digest is checked
  against its record: removed if expired, filed again under its current expiry if it moved on
  (lazy invalidation). So a busy session costs one filing per idle timeout, not one per request.
  Only a write that moves an expiry *earlier* files the session at once. Every write also expires
  a few due sessions, so stale entries cannot pile up when nobody calls :meth:`sweep`.
  A bucket list costs 8 bytes per entry, where a heap of ``(expires_at, id_hash)`` tuples would
  cost about 90.
- **Lean records.** The :class:`SessionRecord` itself is kept (a named tuple, its digest doubling as
  the key, data as bytes), the strings repeated across sessions (user agent, IP, kind, user id)
  are shared through a small intern table, and a user with one session costs one dict entry, not
  a set. ``bench/memory_store_rss.py`` measures the result.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict

from tessera.errors import ConfigError
from tessera.metrics import Metrics
from tessera.stores.sessions import SessionRecord

_INTERN_MAX = 65_536
"""Distinct shared strings remembered; past that the table restarts (sharing is best effort)."""

_EXPIRE_PER_WRITE = 16
"""Due entries examined on each write: more than one write adds, so the backlog shrinks."""


class MemorySessionStore:
    """A :class:`~tessera.stores.sessions.SessionStore` in this process's memory.

    Sessions vanish with the process and are not shared between processes: use the SQL or Redis
    store for more than one worker. The manager calls :meth:`load_now` and :meth:`update_now`
    on the request path (see :class:`~tessera.stores.sessions.InstantSessionStore`): a subclass
    that changes ``load`` or ``update`` must change those too.
    """

    __slots__ = ("_by_user", "_due", "_due_heap", "_records", "_strings", "max_sessions", "metrics")

    def __init__(self, max_sessions: int = 100_000, metrics: Metrics | None = None) -> None:
        if max_sessions < 1:
            raise ConfigError("max_sessions must be at least 1")
        self.max_sessions = max_sessions
        self.metrics = metrics if metrics is not None else Metrics()
        self._records: OrderedDict[str, SessionRecord] = OrderedDict()
        # user id -> the digest of their only session, or a set when they have several.
        self._by_user: dict[str, str | set[str]] = {}
        self._due: dict[int, list[str]] = {}
        self._due_heap: list[int] = []
        self._strings: dict[str, str] = {}

    def __len__(self) -> int:
        """Sessions held, including expired ones not yet removed."""
        return len(self._records)

    # --- the SessionStore protocol ---------------------------------------------------------

    async def create(self, record: SessionRecord) -> None:
        self._expire(record.last_seen, _EXPIRE_PER_WRITE)
        if record.id_hash in self._records:
            self._remove(record.id_hash)
        while len(self._records) >= self.max_sessions:
            oldest, evicted = self._records.popitem(last=False)
            self._unindex(evicted.user_id, oldest)
            self.metrics.incr("sessions.evicted")
        self._insert(self._shared(record))

    async def load(
        self, id_hash: str, now: float, renewal_interval: float
    ) -> tuple[SessionRecord, bool] | None:
        return self.load_now(id_hash, now, renewal_interval)

    async def update(
        self, record: SessionRecord, now: float, previous: SessionRecord | None = None
    ) -> bool:
        return self.update_now(record, now, previous)

    # The synchronous twins (InstantSessionStore) the manager calls on every request. Expiry
    # times are computed inline here, as SessionRecord.expires_at does, to spare its call.

    def load_now(
        self, id_hash: str, now: float, renewal_interval: float
    ) -> tuple[SessionRecord, bool] | None:
        records = self._records
        record = records.get(id_hash)
        if record is None:
            return None
        last_seen = record.last_seen
        idle_end = last_seen + record.idle_timeout
        absolute = record.absolute_expires_at
        if not now < (absolute if absolute < idle_end else idle_end):
            self._remove(id_hash)  # expired: removed on sight
            return None
        records.move_to_end(id_hash)
        if now - last_seen < renewal_interval:
            return record, False
        # The expiry moves later: the existing filing comes due first and re-files it.
        record = record.touched(now)
        records[id_hash] = record
        return record, True

    def update_now(
        self, record: SessionRecord, now: float, previous: SessionRecord | None = None
    ) -> bool:
        heap = self._due_heap
        if heap and heap[0] <= now:  # the check _expire starts with, without its call
            self._expire(now, _EXPIRE_PER_WRITE)
        records = self._records
        id_hash = record.id_hash
        old = records.get(id_hash)
        if old is None:
            return False
        idle_end = old.last_seen + old.idle_timeout
        absolute = old.absolute_expires_at
        old_expires_at = absolute if absolute < idle_end else idle_end
        if not now < old_expires_at:
            self._remove(id_hash)
            return False
        if old is previous and record.last_seen >= old.last_seen:
            # The manager's usual save, and nobody changed the session meanwhile: same user,
            # same shared strings, an expiry no earlier. Nothing to re-index or re-file, and
            # no LRU move: the load that ``previous`` came from made this session the newest.
            records[id_hash] = record
            return True
        if old.user_id != record.user_id:
            self._unindex(old.user_id, id_hash)
            if record.user_id is not None:
                self._index(record.user_id, id_hash)
        if not (
            # The usual save: the manager copied the stored record, whose strings are shared.
            record.user_agent is old.user_agent
            and record.ip is old.ip
            and record.kind is old.kind
            and record.user_id is old.user_id
        ):
            record = self._shared(record)
        records[id_hash] = record
        records.move_to_end(id_hash)
        idle_end = record.last_seen + record.idle_timeout
        absolute = record.absolute_expires_at
        expires_at = absolute if absolute < idle_end else idle_end
        if expires_at < old_expires_at and math.ceil(expires_at) < math.ceil(old_expires_at):
            self._schedule(record)  # earlier than its filing: file it where it now falls due
        return True

    async def replace(self, old_id_hash: str, record: SessionRecord, now: float) -> bool:
        self._expire(now, _EXPIRE_PER_WRITE)
        if self._live(old_id_hash, now) is None:
            return False
        self._remove(old_id_hash)
        if record.id_hash in self._records:
            self._remove(record.id_hash)
        self._insert(self._shared(record))
        return True

    async def delete(self, id_hash: str) -> bool:
        return self._remove(id_hash)

    async def list_for_user(self, user_id: str, now: float) -> list[SessionRecord]:
        live = []
        for id_hash in self._user_ids(user_id):
            record = self._records.get(id_hash)
            if record is not None and record.is_live(now):
                live.append(record)
        live.sort(key=lambda r: r.created_at)
        return live

    async def delete_for_user(self, user_id: str, *, keep: str | None = None) -> int:
        doomed = [h for h in self._user_ids(user_id) if h != keep]
        return sum(self._remove(h) for h in doomed)

    async def list_all(self, now: float, limit: int = 1000) -> list[SessionRecord]:
        # An admin listing: reading every record is acceptable here, unlike on expiry.
        live = (r for r in self._records.values() if r.is_live(now))
        return heapq.nlargest(max(0, limit), live, key=lambda r: r.created_at)

    async def sweep(self, now: float) -> int:
        return self._expire(now, None)

    async def ping(self) -> None:
        """Memory is always reachable."""

    async def close(self) -> None:
        """Nothing to release; the sessions stay until the store is dropped."""

    # --- internals -------------------------------------------------------------------------

    def _live(self, id_hash: str, now: float) -> SessionRecord | None:
        """The record if live; an expired one is removed on sight."""
        record = self._records.get(id_hash)
        if record is None:
            return None
        if not now < record.expires_at:  # record.is_live(now), one call fewer on every request
            self._remove(id_hash)
            return None
        return record

    def _insert(self, record: SessionRecord) -> None:
        self._records[record.id_hash] = record
        if record.user_id is not None:
            self._index(record.user_id, record.id_hash)
        self._schedule(record)

    def _remove(self, id_hash: str) -> bool:
        record = self._records.pop(id_hash, None)
        if record is None:
            return False
        self._unindex(record.user_id, id_hash)
        return True

    def _schedule(self, record: SessionRecord) -> None:
        """File the session under the second it expires in (older filings become stale)."""
        second = math.ceil(record.expires_at)
        bucket = self._due.get(second)
        if bucket is None:
            self._due[second] = bucket = []
            heapq.heappush(self._due_heap, second)
        bucket.append(record.id_hash)

    def _expire(self, now: float, limit: int | None) -> int:
        """Remove sessions due at ``now``, examining at most ``limit`` filings (None: all)."""
        removed = 0
        examined = 0
        heap, due, records = self._due_heap, self._due, self._records
        # A bucket's second is >= the expiry of everything filed in it, so a bucket at or
        # before ``now`` holds only sessions that are due (or stale filings of renewed ones).
        while heap and heap[0] <= now:
            bucket = due[heap[0]]
            while bucket:
                if limit is not None and examined >= limit:
                    return removed
                examined += 1
                id_hash = bucket.pop()
                record = records.get(id_hash)
                if record is None:
                    continue
                if not record.is_live(now):
                    self._remove(id_hash)
                    removed += 1
                else:
                    # Renewed or saved since it was filed: live past ``now``, so it goes to a
                    # later second than this one.
                    self._schedule(record)
            del due[heapq.heappop(heap)]
        return removed

    def _index(self, user_id: str, id_hash: str) -> None:
        current = self._by_user.get(user_id)
        if current is None:
            self._by_user[user_id] = id_hash
        elif isinstance(current, str):
            if current != id_hash:
                self._by_user[user_id] = {current, id_hash}
        else:
            current.add(id_hash)

    def _unindex(self, user_id: str | None, id_hash: str) -> None:
        if user_id is None:
            return
        current = self._by_user.get(user_id)
        if current is None:
            return
        if isinstance(current, str):
            if current == id_hash:
                del self._by_user[user_id]
            return
        current.discard(id_hash)
        if len(current) == 1:
            self._by_user[user_id] = next(iter(current))
        elif not current:
            del self._by_user[user_id]

    def _user_ids(self, user_id: str) -> list[str]:
        current = self._by_user.get(user_id)
        if current is None:
            return []
        return [current] if isinstance(current, str) else list(current)

    def _shared(self, record: SessionRecord) -> SessionRecord:
        """``record`` with its repeated strings replaced by one shared copy each."""
        ua, ip, kind, user = (
            self._intern(record.user_agent),
            self._intern(record.ip),
            self._intern(record.kind),
            self._intern(record.user_id),
        )
        if (
            ua is record.user_agent
            and ip is record.ip
            and kind is record.kind
            and user is record.user_id
        ):
            return record
        return record._replace(user_id=user, kind=kind or record.kind, ip=ip, user_agent=ua)

    def _intern(self, value: str | None) -> str | None:
        if value is None:
            return None
        shared = self._strings.get(value)
        if shared is not None:
            return shared
        if len(self._strings) >= _INTERN_MAX:
            self._strings.clear()
        self._strings[value] = value
        return value
