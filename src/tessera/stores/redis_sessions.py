"""Sessions in Redis: one hash per session with a native TTL, one sorted set per user.

Key layout (Redis Cluster-ready, every key names its own hash tag):

- ``{prefix}:s:{<id_hash>}``: the session, a hash of three fields (see "Record layout").
  Tagged by its digest because :meth:`RedisSessionStore.load` knows nothing else; so sessions
  spread over the cluster.
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
Liveness is decided from the stored fields and the given ``now`` (by the scripts for writes, by
:meth:`RedisSessionStore.load` for reads), so a fake-clock test is exact; the native TTL only
reclaims memory. :meth:`create` has no ``now`` and uses the record's ``last_seen`` (the creation
instant) as the TTL's base.

**The per-request path is cheap for Redis too.** Redis runs on the same machines as the app, and
a Lua script costs it several times a plain command (on the reference machine 13-21 µs per
EVALSHA against 3 µs for an HGETALL). So :meth:`~RedisSessionStore.load` is a plain ``HGETALL``
whose liveness and renewal decision are made here; only a due renewal (once per renewal
interval) runs a script, which re-checks liveness so a session ended in between is never
renewed. :meth:`~RedisSessionStore.update` must stay conditional ("never resurrect") and so a
script, but a lean one: it overwrites the fields instead of deleting and rewriting the hash.

:meth:`replace` (ID rotation) runs as two steps, because the old and new keys live in different
slots. First one pipeline writes the new session, indexed (rule 1); then a script deletes the
old session only if it is live (``DEL`` wins for exactly one concurrent caller). If it was not,
the rotation lost (a concurrent rotation won, or the session ended) and the new session is
deleted again, as it is when the take fails. Writing the new one first is what lets "log out
everywhere" keep up with a rotation: by the time the old ID is gone, the new one is in the
index, so :meth:`delete_for_user`, which reads the index again whenever one of its deletes finds
a session already gone, finds it (taking the old one first left a moment in which neither was
indexed, and a concurrent ``delete_for_user`` missed the rotated session). Between the steps
both IDs load and are listed: the old one as it was, the new one known to nobody yet. Only a
process that dies between them leaves that orphan, listed until it expires idle; it can never
resurrect a session or carry a login over to the old ID.

**Record layout.** A session hash has ``d`` (the data), ``m`` (every other field but the user,
packed by :data:`_META`: the times as little-endian IEEE doubles first, then the flags, then
length-prefixed strings) and ``u`` (the user ID, absent for an anonymous session; a field of its
own because the scripts and the index upkeep need it). Doubles are exact, so no float is ever
formatted or parsed: ``repr`` and ``float()`` of the five times cost more than the rest of an
update on the Python side, and an update's 26 arguments (one per field) cost Redis as much as
the script itself. The scripts read the times with Lua's ``struct.unpack`` (Lua numbers are
doubles, so liveness is decided with the very arithmetic of :class:`SessionRecord`), and
``now`` travels packed the same way. Hashes written by earlier versions, one field per record
field (``data``, ``last_seen``...), are still read, renewed and deleted; an update rewrites them
in this layout. That support can go once no such session can be live (its absolute timeout).

The client must return bytes (``decode_responses=False``): session data is arbitrary bytes.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from tessera.errors import ConfigError, StoreUnavailable
from tessera.stores.redis_autopipeline import AutoPipeline, Command
from tessera.stores.sessions import SessionRecord

SCAN_BATCH = 500
"""Keys asked per SCAN step and hashes fetched per pipeline by :meth:`list_all`."""

_DELETE_ROUNDS = 8
"""Rounds of :meth:`RedisSessionStore.delete_for_user`, which reads the index again after
finding a session gone (rotated away under it): one more round catches a rotation, eight a
client rotating in a loop."""

# The stored state of KEYS[1]: last_seen, idle_timeout, absolute_expires_at, user (or false),
# legacy (written by an earlier version, one field per record field); nothing when absent.
# Liveness, as in SessionRecord.is_live: now < min(last_seen + idle_timeout, absolute).
_STATE = """
local function state(key)
  local f = redis.call('HMGET', key, 'm', 'u')
  if f[1] then
    local last_seen, idle, absolute = struct.unpack('<ddd', f[1])
    return last_seen, idle, absolute, f[2], false, f[1]
  end
  f = redis.call('HMGET', key, 'last_seen', 'idle_timeout', 'absolute_expires_at', 'user_id')
  if not f[1] then return nil end
  return tonumber(f[1]), tonumber(f[2]), tonumber(f[3]), f[4], true
end
local function live(last_seen, idle, absolute, now)
  return last_seen and now < math.min(last_seen + idle, absolute)
end
"""

# KEYS[1] session; ARGV: now, renewal interval (packed doubles). Slides the idle timeout of a
# live session when the interval has passed since its last renewal; a concurrent load that
# renewed it first leaves nothing to do (one write per interval, however many requests see it
# due at once). -> false | last_seen as stored afterwards (packed double: ARGV[1] if renewed)
_RENEW = (
    _STATE
    + """
local now = struct.unpack('<d', ARGV[1])
local last_seen, idle, absolute, _, legacy, meta = state(KEYS[1])
if not live(last_seen, idle, absolute, now) then return false end
if now - last_seen < struct.unpack('<d', ARGV[2]) then return struct.pack('<d', last_seen) end
if legacy then
  redis.call('HSET', KEYS[1], 'last_seen', string.format('%.17g', now))
else
  redis.call('HSET', KEYS[1], 'm', ARGV[1] .. string.sub(meta, 9))
end
local ttl = math.ceil((math.min(now + idle, absolute) - now) * 1000)
redis.call('PEXPIRE', KEYS[1], string.format('%d', ttl))
return ARGV[1]
"""
)

# KEYS[1] session; ARGV: now (packed double), ttl ms, data, meta[, user_id].
# -> false (not live) | the previous user_id (a string) | 1 (none stored)
# Overwrites the fields in place; a hash of the earlier layout is deleted and rewritten whole.
_UPDATE = (
    _STATE
    + """
local last_seen, idle, absolute, user, legacy = state(KEYS[1])
if not live(last_seen, idle, absolute, struct.unpack('<d', ARGV[1])) then return false end
if legacy then redis.call('DEL', KEYS[1]) end
if ARGV[5] then
  redis.call('HSET', KEYS[1], 'd', ARGV[3], 'm', ARGV[4], 'u', ARGV[5])
else
  redis.call('HSET', KEYS[1], 'd', ARGV[3], 'm', ARGV[4])
  if user and not legacy then redis.call('HDEL', KEYS[1], 'u') end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return user or 1
"""
)

# KEYS[1] session; ARGV: now (packed double). Deletes a live session. -> false | {1, its user}
_TAKE = (
    _STATE
    + """
local last_seen, idle, absolute, user = state(KEYS[1])
if not live(last_seen, idle, absolute, struct.unpack('<d', ARGV[1])) then return false end
redis.call('DEL', KEYS[1])
return {1, user}
"""
)

# KEYS[1] session; ARGV: '1' and a user_id to delete only that user's session, or '0'.
# -> false | {1, its user_id}
_DELETE = """
local f = redis.call('HMGET', KEYS[1], 'u', 'user_id')
local owner = f[1] or f[2]
if ARGV[1] == '1' and owner ~= ARGV[2] then return false end
if redis.call('DEL', KEYS[1]) == 0 then return false end
return {1, owner}
"""

_DOUBLE = struct.Struct("<d")
"""``now`` as the scripts read it (``struct.unpack('<d', ...)``)."""

_META = struct.Struct("<dddd??iii")
"""The ``m`` field's head: last_seen, idle_timeout, absolute_expires_at (first: the scripts read
them), created_at, remembered, persistent, then the byte lengths of kind, ip and user_agent (-1
for None); the three strings follow, UTF-8."""

_DOWN = (RedisConnectionError, RedisTimeoutError, OSError, ResponseError)
"""What an unreachable, hung, dropped or refusing Redis raises. A refusal (OOM at maxmemory,
READONLY replica, WRONGTYPE from a foreign key under our prefix) is the store being unusable
as well: 503 and a log line naming the error type, not a 500."""


def _down(exc: BaseException) -> StoreUnavailable:
    """The :class:`StoreUnavailable` for ``exc``: its type name only, never the URL."""
    return StoreUnavailable("redis", type(exc).__name__)


@contextmanager
def _unavailable() -> Iterator[None]:
    """Turn connection failures into :class:`StoreUnavailable` (for the paths off the hot one,
    which catch :data:`_DOWN` themselves: a generator context manager costs a microsecond)."""
    try:
        yield
    except _DOWN as exc:
        raise _down(exc) from exc


def _ttl_ms(until: float, now: float) -> int:
    # Rounded up: a TTL that ends before the stored expiry would lose a live session.
    return math.ceil((until - now) * 1000)


def _meta(record: SessionRecord) -> bytes:
    """The record's ``m`` field (see :data:`_META`)."""
    kind = record.kind.encode()
    ip = b"" if record.ip is None else record.ip.encode()
    agent = b"" if record.user_agent is None else record.user_agent.encode()
    head = _META.pack(
        record.last_seen,
        record.idle_timeout,
        record.absolute_expires_at,
        record.created_at,
        record.remembered,
        record.persistent,
        len(kind),
        -1 if record.ip is None else len(ip),
        -1 if record.user_agent is None else len(agent),
    )
    return b"".join((head, kind, ip, agent))


def _session_fields(record: SessionRecord) -> tuple[EncodableT, ...]:
    """The record as HSET's field/value arguments."""
    if record.user_id is None:
        return ("d", record.data, "m", _meta(record))
    return ("d", record.data, "m", _meta(record), "u", record.user_id)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _hash(reply: Sequence[bytes] | Mapping[bytes, bytes]) -> Mapping[bytes, bytes]:
    """An HGETALL reply as a mapping: a flat list under RESP2, already a map under RESP3."""
    if isinstance(reply, Mapping):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


_UNREADABLE = (struct.error, ValueError, KeyError, TypeError)
"""What decoding a hash nobody here wrote raises: a field too short or missing, a string not
UTF-8 (``UnicodeDecodeError`` is a ``ValueError``), a time that is no number."""


def _record(id_hash: str, f: Mapping[bytes, bytes]) -> SessionRecord | None:
    """The record from its hash; None when there is no such hash, or one that cannot be read.

    An unreadable hash (a bug, a manual edit, a partial restore: never a client's doing) is no
    session: the request gets a new one and its cookie is cleared, instead of a 500 on every
    request that presents the ID until the hash expires; listings skip it. The scripts still
    delete it.
    """
    meta, data = f.get(b"m"), f.get(b"d")
    if meta is None or data is None:
        return _legacy_record(id_hash, f)
    try:  # free in CPython >= 3.11 when nothing is raised: this runs on every request
        (last_seen, idle, absolute, created, remembered, persistent, n_kind, n_ip, n_agent) = (
            _META.unpack_from(meta)
        )
        start = _META.size
        end = start + n_kind
        kind = meta[start:end].decode()
        ip = None
        if n_ip >= 0:
            start, end = end, end + n_ip
            ip = meta[start:end].decode()
        agent = None if n_agent < 0 else meta[end : end + n_agent].decode()
        user = f.get(b"u")
        user_id = None if user is None else user.decode()
    except _UNREADABLE:
        return None
    return SessionRecord(
        id_hash,
        data,
        created,
        last_seen,
        idle,
        absolute,
        user_id,
        kind,
        ip,
        agent,
        remembered,
        persistent,
    )


def _legacy_record(id_hash: str, f: Mapping[bytes, bytes]) -> SessionRecord | None:
    """A record written by an earlier version, one hash field per record field."""
    data = f.get(b"data")
    if data is None:
        return None  # written with every other field, so a missing one means no session
    user, ip, agent = f.get(b"user_id"), f.get(b"ip"), f.get(b"user_agent")
    try:  # unreadable: no session, as in _record
        return SessionRecord(
            id_hash,
            data,
            float(f[b"created_at"]),
            float(f[b"last_seen"]),
            float(f[b"idle_timeout"]),
            float(f[b"absolute_expires_at"]),
            None if user is None else user.decode(),
            f[b"kind"].decode(),
            None if ip is None else ip.decode(),
            None if agent is None else agent.decode(),
            f[b"remembered"] == b"1",
            # Absent from hashes written before the field existed: those were never persistent.
            f.get(b"persistent") == b"1",
        )
    except _UNREADABLE:
        return None


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
        self._pack = self._batch.pack
        self._session_prefix = f"{prefix}:s:{{"  # + digest + "}": see _session_key
        self._renew_script = client.register_script(_RENEW)
        self._update_script = client.register_script(_UPDATE)
        self._take_script = client.register_script(_TAKE)
        self._delete_script = client.register_script(_DELETE)
        self._scripts = (
            self._renew_script,
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

    async def _pipeline(self, build: Callable[[], list[Command]]) -> list[Any]:
        """Run the commands ``build`` returns, in order, as one group of the auto-pipeline.

        Scripts are sent as bare EVALSHA (redis-py's Script objects would add a SCRIPT EXISTS
        round trip to every pipeline); after a server restart emptied the script cache the
        scripts are loaded and the group replayed once, which is safe because a NOSCRIPT error
        means no script ran and every other command of a group is idempotent. ``build`` runs
        again for the replay, so the commands carry the reloaded digests.
        """
        try:
            return await self._batch.execute(build())
        except NoScriptError:
            await self._load_scripts()
            return await self._batch.execute(build())

    async def _load_scripts(self) -> None:
        for script in self._scripts:
            script.sha = await self._client.script_load(script.script)

    async def _run(self, commands: list[Command]) -> list[Any]:
        """Run ``commands`` (no scripts among them) as one group of the auto-pipeline."""
        return await self._batch.execute(commands)

    async def _eval(self, script: AsyncScript, key: str, *args: EncodableT) -> Any:
        """One script call, batched with whatever else concurrent callers send."""
        return (await self._pipeline(lambda: [("EVALSHA", script.sha, 1, key, *args)]))[0]

    def _index_commands(self, record: SessionRecord, now: float) -> list[Command]:
        """Add the record to its user's index; the index lives until its last member dies."""
        if record.user_id is None:
            return []
        ttl = _ttl_ms(record.absolute_expires_at, now)
        if ttl <= 0:
            # PEXPIRE with a non-positive TTL would delete the whole index, live entries too.
            return []
        key = self._user_key(record.user_id)
        return [
            ("ZADD", key, record.absolute_expires_at, record.id_hash),
            # NX gives a new index a TTL; GT extends an older one (Redis >= 7.0).
            ("PEXPIRE", key, ttl, "NX"),
            ("PEXPIRE", key, ttl, "GT"),
        ]

    def _session_commands(self, record: SessionRecord, now: float) -> list[Command]:
        key = self._session_key(record.id_hash)
        return [
            ("HSET", key, *_session_fields(record)),
            # A record already dead at ``now`` gets TTL <= 0, which deletes it: nothing stored.
            ("PEXPIRE", key, _ttl_ms(record.expires_at, now)),
        ]

    # --- the SessionStore protocol -----------------------------------------------------------

    async def create(self, record: SessionRecord) -> None:
        now = record.last_seen
        with _unavailable():
            # Index first: rule 1.
            await self._run(self._index_commands(record, now) + self._session_commands(record, now))

    async def load(
        self, id_hash: str, now: float, renewal_interval: float
    ) -> tuple[SessionRecord, bool] | None:
        # A plain HGETALL, liveness decided here: a script would cost Redis several times the
        # CPU on every request. Only a due renewal (once per interval) runs one. This method and
        # update() are the per-request path: commands packed here, the pipeline's future awaited
        # directly, failures mapped by a plain except (see _unavailable).
        key = self._session_prefix + id_hash + "}"
        try:
            reply = (await self._batch.execute_packed(self._pack(("HGETALL", key)), 1))[0]
        except _DOWN as exc:
            raise _down(exc) from exc
        record = _record(id_hash, _hash(reply))
        if record is None or not now < record.expires_at:  # is_live, as the scripts decide
            return None
        if now - record.last_seen < renewal_interval:
            return record, False
        with _unavailable():
            packed_now = _DOUBLE.pack(now)
            last_seen = await self._eval(
                self._renew_script, key, packed_now, _DOUBLE.pack(renewal_interval)
            )
        if last_seen is None:
            return None  # ended (deleted, rotated) since the read
        # Renewed by this load, or already by a concurrent one (which reports it).
        return record._replace(last_seen=_DOUBLE.unpack(last_seen)[0]), last_seen == packed_now

    def _update_commands(
        self, record: SessionRecord, now: float, previous: SessionRecord | None
    ) -> tuple[bytes, int]:
        """update()'s commands, packed, and how many there are."""
        user_id = record.user_id
        update: Command = (
            "EVALSHA",
            self._update_script.sha,
            1,
            self._session_prefix + record.id_hash + "}",
            _DOUBLE.pack(now),
            _ttl_ms(record.expires_at, now),
            record.data,
            _meta(record),
        )
        if user_id is None:
            return self._pack(update), 1
        # Indexed before the conditional write (rule 1); if the write is refused, the entry
        # dangles harmlessly. Re-adding it on every write also repairs an index key that was
        # lost (evicted at maxmemory, a failover, an operator) or moved by a concurrent update.
        index = self._index_commands(record, now)
        if (
            previous is not None
            and previous.user_id == user_id
            and previous.absolute_expires_at == record.absolute_expires_at
        ):
            # The manager's usual save: the absolute expiry, hence the entry's score and the
            # TTL the index key needs, did not move, so the TTL-extending PEXPIRE GT is not
            # needed (the NX one still gives a re-created key its TTL).
            index = index[:2]
        pack = self._pack
        return b"".join([*map(pack, index), pack((*update, user_id))]), len(index) + 1

    async def update(
        self, record: SessionRecord, now: float, previous: SessionRecord | None = None
    ) -> bool:
        execute = self._batch.execute_packed
        try:
            try:
                reply = (await execute(*self._update_commands(record, now, previous)))[-1]
            except NoScriptError:
                # A restarted server forgot the scripts: nothing of the group ran (see _pipeline).
                await self._load_scripts()
                reply = (await execute(*self._update_commands(record, now, previous)))[-1]
            if reply is None:
                return False
            if type(reply) is bytes:  # it had a user, maybe another one
                await self._unindex_if_moved(reply, record)
        except _DOWN as exc:
            raise _down(exc) from exc
        return True

    async def _unindex_if_moved(self, previous: bytes | None, record: SessionRecord) -> None:
        old_user = _text(previous)
        if old_user is not None and old_user != record.user_id:
            await self._run([("ZREM", self._user_key(old_user), record.id_hash)])

    async def replace(self, old_id_hash: str, record: SessionRecord, now: float) -> bool:
        with _unavailable():
            undo: list[Command] = [("DEL", self._session_key(record.id_hash))]
            if record.user_id is not None:
                undo.append(("ZREM", self._user_key(record.user_id), record.id_hash))
            try:
                # The new session first, then the old one taken: see the module docstring.
                await self._run(
                    self._index_commands(record, now) + self._session_commands(record, now)
                )
                taken = await self._eval(
                    self._take_script, self._session_key(old_id_hash), _DOUBLE.pack(now)
                )
            except BaseException:
                # A failure, a lost reply or a cancellation: what ran is unknown (commands are
                # queued at once and sent even if the caller stops waiting). The new session is
                # undone: if the take ran, the old one is gone too and the browser logs in
                # again; if not, the old one is as it was. No session nobody holds stays listed.
                with suppress(*_DOWN):
                    await self._run(undo)
                raise
            if not taken:
                await self._run(undo)
                return False
            old_user = _text(taken[1])
            if old_user is not None:
                await self._run([("ZREM", self._user_key(old_user), old_id_hash)])
        return True

    async def delete(self, id_hash: str) -> bool:
        with _unavailable():
            reply = await self._eval(self._delete_script, self._session_key(id_hash), "0")
            if not reply:
                return False
            owner = _text(reply[1])
            if owner is not None:
                await self._run([("ZREM", self._user_key(owner), id_hash)])
        return True

    async def list_for_user(self, user_id: str, now: float) -> list[SessionRecord]:
        index = self._user_key(user_id)
        with _unavailable():
            # Entries past their absolute expiry can never be live again: safe to drop.
            read_index: list[Command] = [
                ("ZREMRANGEBYSCORE", index, "-inf", repr(float(now))),
                ("ZRANGE", index, 0, -1),
            ]
            members: list[bytes] = (await self._run(read_index))[-1]
            digests = [m.decode() for m in members]
            read_sessions: list[Command] = [("HGETALL", self._session_key(d)) for d in digests]
            replies = await self._run(read_sessions) if digests else []
        found = (_record(d, f) for d, f in zip(digests, map(_hash, replies), strict=True))
        live = [r for r in found if r is not None and r.user_id == user_id and r.is_live(now)]
        return sorted(live, key=lambda r: (r.created_at, r.id_hash))

    async def delete_for_user(self, user_id: str, *, keep: str | None = None) -> int:
        index = self._user_key(user_id)
        seen = set() if keep is None else {keep}
        total = 0
        with _unavailable():
            for _ in range(_DELETE_ROUNDS):
                members: list[bytes] = (await self._run([("ZRANGE", index, 0, -1)]))[0]
                digests = [d for d in (m.decode() for m in members) if d not in seen]
                if not digests:
                    break
                seen.update(digests)

                def delete_owned(digests: list[str] = digests) -> list[Command]:
                    # Only if it still belongs to this user: update() may have moved it.
                    sha = self._delete_script.sha
                    return [
                        ("EVALSHA", sha, 1, self._session_key(d), "1", user_id) for d in digests
                    ]

                replies = await self._pipeline(delete_owned)
                deleted = [d for d, reply in zip(digests, replies, strict=True) if reply]
                if deleted:
                    # Only entries whose session we deleted: a missing one may be a create in
                    # flight.
                    await self._run([("ZREM", index, *deleted)])
                total += len(deleted)
                if len(deleted) == len(digests):
                    break
                # A session already gone may have been rotated meanwhile; its successor was
                # indexed before it went (see replace), so it is in the index now: read again.
        return total

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
                read: list[Command] = [("HGETALL", self._session_key(d)) for d in chunk]
                replies = await self._run(read)
                found = (_record(d, f) for d, f in zip(chunk, map(_hash, replies), strict=True))
                records += [r for r in found if r is not None]
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
        await self._batch.close()
        if self._owns_client:
            await self._client.aclose()
