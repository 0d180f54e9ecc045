"""Sessions in Redis: one hash per session with a native TTL, one sorted set per user.

Key layout (Redis Cluster-ready, every key names its own hash tag):

- ``{prefix}:s:{<id_hash>}``: the session, a hash of the record's fields. Tagged by its digest
  because :meth:`RedisSessionStore.load` knows nothing else; so sessions spread over the cluster.
- ``{prefix}:u:{<user_id>}``: the user's index, a sorted set of digests scored by the session's
  ``absolute_expires_at`` (a score that renewal never changes).

Each Lua script touches exactly one key, so every script is legal on a Cluster. The price is that
the index is not updated atomically with the session; it is kept *safe* by ordering instead:

1. The index entry is written *before* the session (same pipeline, earlier command), so a live
   session is always in its user's index and ``delete_for_user`` ("log out everywhere") cannot
   miss one, even if a process dies in between (that only leaves a dangling entry).
2. Dangling entries are harmless: readers check that the session exists, is live at ``now`` and
   still names that user. They are removed when certainly dead: by :meth:`delete`, by
   ``delete_for_user``, and by score (absolute expiry passed) in :meth:`list_for_user`. The
   index key itself expires with its last member's absolute expiry, so nothing outlives that.
   Entries whose session is merely missing are *not* removed by readers: the session may be a
   create in flight, and dropping its entry would break rule 1.

Times come from the caller's ``now`` (an injected clock, often a fake one far from real time),
so Redis TTLs are always *relative*: ``PEXPIRE (expires_at - now) * 1000``, never ``PEXPIREAT``.
Liveness is decided in the scripts from the stored fields and the given ``now``, so a fake-clock
test is exact; the native TTL only reclaims memory. :meth:`create` has no ``now`` and uses the
record's ``last_seen`` (the creation instant) as the TTL's base.

:meth:`replace` (ID rotation) runs as two steps, because the old and new keys live in different
slots: a script deletes the old session only if it is live (``DEL`` wins for exactly one
concurrent caller, which alone goes on), then one pipeline writes the new session. Between the
steps neither ID loads; that is unobservable to clients, since the old ID is dead either way and
the new ID has not been sent to anyone yet. A crash between the steps logs the user out (fail
closed); it can never leave both IDs live or resurrect the old one.

Floats are written with ``repr`` and read with ``float``, an exact round trip; the scripts format
with ``%.17g`` for the same reason. The client must return bytes (``decode_responses=False``):
session data is arbitrary bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from tessera.errors import ConfigError, StoreUnavailable
from tessera.stores.redis_autopipeline import AutoPipeline, Command
from tessera.stores.sessions import SessionRecord

SCAN_BATCH = 500
"""Keys asked per SCAN step and hashes fetched per pipeline by :meth:`list_all`."""

# Liveness, as in SessionRecord.is_live: now < min(last_seen + idle_timeout, absolute).
_LIVE = """
local function live(last_seen, idle, absolute, now)
  if not last_seen then return false end
  return now < math.min(tonumber(last_seen) + tonumber(idle), tonumber(absolute))
end
"""

# KEYS[1] session; ARGV: now, renewal interval. -> false | {renewed 0/1, HGETALL list}
_LOAD = (
    _LIVE
    + """
local flat = redis.call('HGETALL', KEYS[1])
if #flat == 0 then return false end
local f = {}
for i = 1, #flat, 2 do f[flat[i]] = flat[i + 1] end
local now = tonumber(ARGV[1])
if not live(f['last_seen'], f['idle_timeout'], f['absolute_expires_at'], now) then
  return false
end
local last_seen = tonumber(f['last_seen'])
if now - last_seen < tonumber(ARGV[2]) then return {0, flat} end
local expires = math.min(now + tonumber(f['idle_timeout']), tonumber(f['absolute_expires_at']))
redis.call('HSET', KEYS[1], 'last_seen', ARGV[1])
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.ceil((expires - now) * 1000)))
return {1, flat}
"""
)

# KEYS[1] session; ARGV: now, ttl ms, field/value pairs. -> false | {1, previous user_id}
_UPDATE = (
    _LIVE
    + """
local f = redis.call('HMGET', KEYS[1], 'last_seen', 'idle_timeout', 'absolute_expires_at',
                     'user_id')
if not live(f[1], f[2], f[3], tonumber(ARGV[1])) then return false end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, f[4]}
"""
)

# KEYS[1] session; ARGV: now. Deletes a live session. -> false | {1, its user_id}
_TAKE = (
    _LIVE
    + """
local f = redis.call('HMGET', KEYS[1], 'last_seen', 'idle_timeout', 'absolute_expires_at',
                     'user_id')
if not live(f[1], f[2], f[3], tonumber(ARGV[1])) then return false end
redis.call('DEL', KEYS[1])
return {1, f[4]}
"""
)

# KEYS[1] session; ARGV: '1' and a user_id to delete only that user's session, or '0'.
# -> false | {1, its user_id}
_DELETE = """
local owner = redis.call('HGET', KEYS[1], 'user_id')
if ARGV[1] == '1' and owner ~= ARGV[2] then return false end
if redis.call('DEL', KEYS[1]) == 0 then return false end
return {1, owner}
"""


@contextmanager
def _unavailable() -> Iterator[None]:
    """Turn connection failures into :class:`StoreUnavailable` (type name only, no URL)."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise StoreUnavailable("redis", type(exc).__name__) from exc


def _ttl_ms(until: float, now: float) -> int:
    # Rounded up: a TTL that ends before the stored expiry would lose a live session.
    return math.ceil((until - now) * 1000)


def _fields(record: SessionRecord) -> dict[EncodableT, EncodableT]:
    fields: dict[EncodableT, EncodableT] = {
        "data": record.data,
        "created_at": repr(float(record.created_at)),
        "last_seen": repr(float(record.last_seen)),
        "idle_timeout": repr(float(record.idle_timeout)),
        "absolute_expires_at": repr(float(record.absolute_expires_at)),
        "kind": record.kind,
        "remembered": "1" if record.remembered else "0",
        "persistent": "1" if record.persistent else "0",
    }
    # None is stored as an absent field: Redis has no null.
    for name, value in (
        ("user_id", record.user_id),
        ("ip", record.ip),
        ("user_agent", record.user_agent),
    ):
        if value is not None:
            fields[name] = value
    return fields


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _record(id_hash: str, f: Mapping[bytes, bytes]) -> SessionRecord:
    return SessionRecord(
        id_hash=id_hash,
        data=f[b"data"],
        created_at=float(f[b"created_at"]),
        last_seen=float(f[b"last_seen"]),
        idle_timeout=float(f[b"idle_timeout"]),
        absolute_expires_at=float(f[b"absolute_expires_at"]),
        user_id=_text(f.get(b"user_id")),
        kind=f[b"kind"].decode(),
        ip=_text(f.get(b"ip")),
        user_agent=_text(f.get(b"user_agent")),
        remembered=f[b"remembered"] == b"1",
        # Absent from hashes written before the field existed: those were never persistent.
        persistent=f.get(b"persistent") == b"1",
    )


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "\\*?[]" else ch for ch in text)


class RedisSessionStore:
    """:class:`tessera.stores.sessions.SessionStore` on Redis (single server or Cluster layout).

    ``sweep`` removes nothing and returns 0: Redis expires session keys itself, and index entries
    are cleaned as described in the module docstring. ``list_all`` SCANs every session key
    (O(all)); it serves the admin CLI, not requests. ``close()`` closes the client only when
    ``owns_client`` is set.
    """

    def __init__(
        self, client: aioredis.Redis, prefix: str = "tessera", *, owns_client: bool = False
    ) -> None:
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ConfigError("the Redis session store needs a client with decode_responses=False")
        self._client = client
        self._prefix = prefix
        self._owns_client = owns_client
        self._batch = AutoPipeline(client)
        self._load_script = client.register_script(_LOAD)
        self._update_script = client.register_script(_UPDATE)
        self._take_script = client.register_script(_TAKE)
        self._delete_script = client.register_script(_DELETE)
        self._scripts = (
            self._load_script,
            self._update_script,
            self._take_script,
            self._delete_script,
        )

    def __repr__(self) -> str:
        return f"RedisSessionStore(prefix={self._prefix!r})"

    def _session_key(self, id_hash: str) -> str:
        return f"{self._prefix}:s:{{{id_hash}}}"

    def _user_key(self, user_id: str) -> str:
        return f"{self._prefix}:u:{{{user_id}}}"

    # --- commands -----------------------------------------------------------------------------

    async def _pipeline(self, build: Callable[[Pipeline], object]) -> list[Any]:
        """Run the commands ``build`` queues, in order, as one group of the auto-pipeline.

        Scripts are queued as bare EVALSHA (redis-py's Script objects would add a SCRIPT EXISTS
        round trip to every pipeline); after a server restart emptied the script cache the
        scripts are loaded and the group replayed once, which is safe because a NOSCRIPT error
        means no script ran and every other command of a group is idempotent. ``build`` runs
        again for the replay, so the commands carry the reloaded digests.
        """
        try:
            return await self._batch.execute(self._stack(build))
        except NoScriptError:
            for script in self._scripts:
                script.sha = await self._client.script_load(script.script)
            return await self._batch.execute(self._stack(build))

    def _stack(self, build: Callable[[Pipeline], object]) -> Sequence[Command]:
        # A pipeline object used only to record commands as redis-py encodes them (arguments
        # and reply-parsing options); the auto-pipeline sends them.
        recorder = self._client.pipeline(transaction=False)
        build(recorder)
        return recorder.command_stack

    async def _eval(self, script: AsyncScript, key: str, *args: EncodableT) -> Any:
        """One script call, batched with whatever else concurrent callers send."""

        def build(pipe: Pipeline) -> None:
            pipe.evalsha(script.sha, 1, key, *args)

        return (await self._pipeline(build))[0]

    def _queue_index(self, pipe: Pipeline, record: SessionRecord, now: float) -> None:
        """Add the record to its user's index; the index lives until its last member dies."""
        if record.user_id is None:
            return
        ttl = _ttl_ms(record.absolute_expires_at, now)
        if ttl <= 0:
            # PEXPIRE with a non-positive TTL would delete the whole index, live entries too.
            return
        key = self._user_key(record.user_id)
        pipe.zadd(key, {record.id_hash: record.absolute_expires_at})
        # NX gives a new index a TTL; GT extends an older one (Redis >= 7.0).
        pipe.pexpire(key, ttl, nx=True)
        pipe.pexpire(key, ttl, gt=True)

    def _queue_session(self, pipe: Pipeline, record: SessionRecord, now: float) -> None:
        key = self._session_key(record.id_hash)
        pipe.hset(key, mapping=_fields(record))
        # A record already dead at ``now`` gets TTL <= 0, which deletes it: nothing stored.
        pipe.pexpire(key, _ttl_ms(record.expires_at, now))

    # --- the SessionStore protocol -----------------------------------------------------------

    async def create(self, record: SessionRecord) -> None:
        def build(pipe: Pipeline) -> None:
            self._queue_index(pipe, record, record.last_seen)  # index first: rule 1
            self._queue_session(pipe, record, record.last_seen)

        with _unavailable():
            await self._pipeline(build)

    async def load(
        self, id_hash: str, now: float, renewal_interval: float
    ) -> tuple[SessionRecord, bool] | None:
        with _unavailable():
            reply = await self._eval(
                self._load_script,
                self._session_key(id_hash),
                repr(float(now)),
                repr(float(renewal_interval)),
            )
        if not reply:
            return None
        renewed = bool(reply[0])
        record = _record(id_hash, _pairs(reply[1]))
        if renewed:
            record = record.touched(now)
        return record, renewed

    async def update(self, record: SessionRecord, now: float) -> bool:
        args: list[EncodableT] = [repr(float(now)), str(_ttl_ms(record.expires_at, now))]
        for name, value in _fields(record).items():
            args += [name, value]

        def build(pipe: Pipeline) -> None:
            # Indexed before the conditional write (rule 1); if the write is refused, the
            # entry dangles harmlessly.
            self._queue_index(pipe, record, now)
            pipe.evalsha(self._update_script.sha, 1, self._session_key(record.id_hash), *args)

        with _unavailable():
            reply = (await self._pipeline(build))[-1]
            if not reply:
                return False
            await self._unindex_if_moved(reply[1], record)
        return True

    async def _unindex_if_moved(self, previous: bytes | None, record: SessionRecord) -> None:
        old_user = _text(previous)
        if old_user is not None and old_user != record.user_id:
            await self._pipeline(lambda pipe: pipe.zrem(self._user_key(old_user), record.id_hash))

    async def replace(self, old_id_hash: str, record: SessionRecord, now: float) -> bool:
        with _unavailable():
            taken = await self._eval(
                self._take_script, self._session_key(old_id_hash), repr(float(now))
            )
            if not taken:
                return False
            old_user = _text(taken[1])

            def build(pipe: Pipeline) -> None:
                self._queue_index(pipe, record, now)
                self._queue_session(pipe, record, now)
                if old_user is not None:
                    pipe.zrem(self._user_key(old_user), old_id_hash)

            await self._pipeline(build)
        return True

    async def delete(self, id_hash: str) -> bool:
        with _unavailable():
            reply = await self._eval(self._delete_script, self._session_key(id_hash), "0")
            if not reply:
                return False
            owner = _text(reply[1])
            if owner is not None:
                await self._pipeline(lambda pipe: pipe.zrem(self._user_key(owner), id_hash))
        return True

    async def list_for_user(self, user_id: str, now: float) -> list[SessionRecord]:
        index = self._user_key(user_id)

        def read_index(pipe: Pipeline) -> None:
            # Entries past their absolute expiry can never be live again: safe to drop.
            pipe.zremrangebyscore(index, "-inf", repr(float(now)))
            pipe.zrange(index, 0, -1)

        with _unavailable():
            members: list[bytes] = (await self._pipeline(read_index))[-1]
            digests = [m.decode() for m in members]

            def read_sessions(pipe: Pipeline) -> None:
                for digest in digests:
                    pipe.hgetall(self._session_key(digest))

            hashes = await self._pipeline(read_sessions) if digests else []
        records = [
            _record(digest, fields)
            for digest, fields in zip(digests, hashes, strict=True)
            if fields and fields.get(b"user_id") == user_id.encode()
        ]
        live = [r for r in records if r.is_live(now)]
        return sorted(live, key=lambda r: (r.created_at, r.id_hash))

    async def delete_for_user(self, user_id: str, *, keep: str | None = None) -> int:
        index = self._user_key(user_id)
        with _unavailable():
            members = cast(
                list[bytes], (await self._pipeline(lambda pipe: pipe.zrange(index, 0, -1)))[0]
            )
            digests = [d for d in (m.decode() for m in members) if d != keep]
            if not digests:
                return 0

            def delete_owned(pipe: Pipeline) -> None:
                for digest in digests:
                    # Only if it still belongs to this user: update() may have moved it.
                    pipe.evalsha(
                        self._delete_script.sha, 1, self._session_key(digest), "1", user_id
                    )

            replies = await self._pipeline(delete_owned)
            deleted = [d for d, reply in zip(digests, replies, strict=True) if reply]
            if deleted:
                # Only entries whose session we deleted: a missing one may be a create in flight.
                await self._pipeline(lambda pipe: pipe.zrem(index, *deleted))
        return len(deleted)

    async def list_all(self, now: float, limit: int = 1000) -> list[SessionRecord]:
        pattern = _glob_escape(f"{self._prefix}:s:{{") + "*}"
        start = len(self._prefix) + 4  # len(f"{prefix}:s:{{")
        with _unavailable():
            keys: set[bytes] = set()  # SCAN may return a key twice
            async for key in self._client.scan_iter(match=pattern, count=SCAN_BATCH):
                keys.add(key)
            digests = sorted(k.decode()[start:-1] for k in keys)
            records: list[SessionRecord] = []
            for offset in range(0, len(digests), SCAN_BATCH):
                chunk = digests[offset : offset + SCAN_BATCH]

                def read(pipe: Pipeline, chunk: list[str] = chunk) -> None:
                    for digest in chunk:
                        pipe.hgetall(self._session_key(digest))

                hashes = await self._pipeline(read)
                records += [
                    _record(digest, fields)
                    for digest, fields in zip(chunk, hashes, strict=True)
                    if fields
                ]
        live = [r for r in records if r.is_live(now)]
        live.sort(key=lambda r: (r.created_at, r.id_hash), reverse=True)
        return live[:limit]

    async def sweep(self, now: float) -> int:
        """Nothing to do: Redis expires sessions and indexes itself (see the module docs)."""
        return 0

    async def ping(self) -> None:
        with _unavailable():
            await self._client.ping()

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()
