"""Refresh-token families in Redis; rotation is one Lua script, hence atomic.

Key layout (``<base>`` is ``<prefix>:{refresh}``)::

    <base>:f:<family_id>   hash  u (user), sid, c (client), ca, e (expires_at), rv (revoked_at)
    <base>:t:<token_hash>  hash  f (family), ca, r (rotated_at), s (successor hash), b (box)
    <base>:s:<sid>         set   family ids of a session
    <base>:u:<user_id>     set   family ids of a user

A rotation must read a token *and* its family and write both in one step, and the family is
only known after reading the token, so the script builds the family key itself. All keys share
the ``{refresh}`` hash tag, which keeps them in one slot: that is what makes the script legal on
Redis Cluster (refresh traffic is then served by one shard; families belong in PostgreSQL when
that matters). Every key expires with its family; TTLs are computed from the ``now`` passed in,
never from Redis' own clock, so a fake clock and the server agree.
"""

from __future__ import annotations

import math
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tessera.errors import StoreUnavailable
from tessera.stores.refresh_tokens import RefreshFamily, RotateOutcome, RotateResult

# ARGV: base, token_hash, client_id, successor_hash, successor_box, now, grace
# -> {outcome, family_id, u, sid, c, ca, e, rv, successor_hash, successor_box}
_ROTATE = """
local base = ARGV[1]
local tkey = base .. ':t:' .. ARGV[2]
local tok = redis.call('HMGET', tkey, 'f', 'r', 's', 'b')
if not tok[1] then return {'unknown'} end
local fkey = base .. ':f:' .. tok[1]
local fam = redis.call('HMGET', fkey, 'u', 'sid', 'c', 'ca', 'e', 'rv')
if not fam[1] then return {'unknown'} end
local now = tonumber(ARGV[6])
local function answer(outcome, rv, s, b)
  return {outcome, tok[1], fam[1], fam[2], fam[3], fam[4], fam[5], rv or '', s or '', b or ''}
end
if fam[3] ~= ARGV[3] then return answer('wrong_client', fam[6]) end
if fam[6] then return answer('revoked', fam[6]) end
if now >= tonumber(fam[5]) then return answer('expired') end
if not tok[2] then
  redis.call('HSET', tkey, 'r', ARGV[6], 's', ARGV[4], 'b', ARGV[5])
  local skey = base .. ':t:' .. ARGV[4]
  redis.call('HSET', skey, 'f', tok[1], 'ca', ARGV[6])
  -- The successor dies with its family; the TTL counts from the caller's now, not Redis' clock.
  redis.call('EXPIRE', skey, math.max(1, math.ceil(tonumber(fam[5]) - now)))
  return answer('rotated', nil, ARGV[4])
end
if now - tonumber(tok[2]) <= tonumber(ARGV[7]) then
  return answer('grace', nil, tok[3], tok[4])
end
redis.call('HSET', fkey, 'rv', ARGV[6])
return answer('reused', ARGV[6])
"""

# ARGV: base, now, family ids... -> count of families newly revoked
_REVOKE = """
local n = 0
for i = 3, #ARGV do
  local fkey = ARGV[1] .. ':f:' .. ARGV[i]
  if redis.call('EXISTS', fkey) == 1 and redis.call('HEXISTS', fkey, 'rv') == 0 then
    redis.call('HSET', fkey, 'rv', ARGV[2])
    n = n + 1
  end
end
return n
"""


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _ttl(expires_at: float, now: float) -> int:
    return max(1, math.ceil(expires_at - now))


class RedisRefreshTokenStore:
    """:class:`~tessera.stores.refresh_tokens.RefreshTokenStore` on Redis."""

    __slots__ = ("_base", "_client", "_owns_client", "_revoke_script", "_rotate_script")

    def __init__(
        self, client: Redis, prefix: str = "tessera", *, owns_client: bool = False
    ) -> None:
        self._client = client
        self._base = f"{prefix}:{{refresh}}"
        self._owns_client = owns_client
        self._rotate_script = client.register_script(_ROTATE)
        self._revoke_script = client.register_script(_REVOKE)

    def __repr__(self) -> str:
        return f"RedisRefreshTokenStore(base={self._base!r})"

    async def create(self, family: RefreshFamily, token_hash: str) -> None:
        base, now = self._base, family.created_at
        ttl = _ttl(family.expires_at, now)
        fkey, tkey = f"{base}:f:{family.family_id}", f"{base}:t:{token_hash}"
        skey, ukey = f"{base}:s:{family.sid}", f"{base}:u:{family.user_id}"
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(
                    fkey,
                    mapping={
                        "u": family.user_id,
                        "sid": family.sid,
                        "c": family.client_id,
                        "ca": repr(family.created_at),
                        "e": repr(family.expires_at),
                    },
                )
                pipe.hset(tkey, mapping={"f": family.family_id, "ca": repr(now)})
                pipe.sadd(skey, family.family_id)
                pipe.sadd(ukey, family.family_id)
                # Every family has the same lifetime, so the newest one bounds the indexes.
                for key in (fkey, tkey, skey, ukey):
                    pipe.expire(key, ttl)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable("redis", type(exc).__name__) from exc

    async def rotate(
        self,
        token_hash: str,
        client_id: str,
        successor_hash: str,
        successor_box: bytes,
        now: float,
        grace: float,
    ) -> RotateResult:
        try:
            reply = await self._rotate_script(
                keys=[f"{self._base}:t:{token_hash}"],
                args=[
                    self._base,
                    token_hash,
                    client_id,
                    successor_hash,
                    successor_box,
                    repr(now),
                    repr(float(grace)),
                ],
            )
        except (RedisError, OSError) as exc:
            raise StoreUnavailable("redis", type(exc).__name__) from exc
        return self._result(reply)

    def _result(self, reply: list[Any]) -> RotateResult:
        outcome = RotateOutcome(_text(reply[0]))
        if outcome is RotateOutcome.UNKNOWN:
            return RotateResult(outcome)
        family_id, user, sid, client, created, expires, revoked = (_text(v) for v in reply[1:8])
        family = RefreshFamily(
            family_id=family_id,
            user_id=user,
            sid=sid,
            client_id=client,
            created_at=float(created),
            expires_at=float(expires),
            revoked_at=float(revoked) if revoked else None,
        )
        successor_hash = _text(reply[8]) or None
        box = reply[9] if isinstance(reply[9], bytes) and reply[9] else None
        return RotateResult(outcome, family, successor_hash, box)

    async def get_family(self, family_id: str) -> RefreshFamily | None:
        try:
            values = await self._client.hmget(
                f"{self._base}:f:{family_id}", ["u", "sid", "c", "ca", "e", "rv"]
            )
        except (RedisError, OSError) as exc:
            raise StoreUnavailable("redis", type(exc).__name__) from exc
        if values[0] is None:
            return None
        user, sid, client, created, expires = (_text(v) for v in values[:5])
        return RefreshFamily(
            family_id,
            user,
            sid,
            client,
            float(created),
            float(expires),
            None if values[5] is None else float(_text(values[5])),
        )

    async def _revoke(self, family_ids: list[str], now: float) -> int:
        if not family_ids:
            return 0
        try:
            count = await self._revoke_script(args=[self._base, repr(now), *family_ids])
        except (RedisError, OSError) as exc:
            raise StoreUnavailable("redis", type(exc).__name__) from exc
        return int(count)

    async def _members(self, key: str) -> list[str]:
        try:
            members = await self._client.smembers(key)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable("redis", type(exc).__name__) from exc
        return sorted(_text(m) for m in members)

    async def revoke_family(self, family_id: str, now: float) -> bool:
        return await self._revoke([family_id], now) == 1

    async def revoke_for_session(self, sid: str, now: float) -> int:
        return await self._revoke(await self._members(f"{self._base}:s:{sid}"), now)

    async def revoke_for_user(self, user_id: str, now: float) -> int:
        return await self._revoke(await self._members(f"{self._base}:u:{user_id}"), now)

    async def sweep(self, now: float) -> int:
        """Nothing to do: every key carries the TTL of its family."""
        return 0

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable("redis", type(exc).__name__) from exc

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()
