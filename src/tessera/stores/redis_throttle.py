"""Login-throttle counters in Redis: one hash per key with a native TTL.

Each failure runs a small Lua script on its key (read the last failure, restart or increment
the count, stamp, set the TTL) so concurrent instances never lose an increment. Several keys
(account and IP) go in one non-transactional pipeline: one round trip, and each script touches
a single key, so the layout works on Redis Cluster without forcing keys into one slot.

Times come from the caller's clock: the script compares the ``now`` it is given with the stored
last failure, and the TTL is relative (``PEXPIRE window``), never an absolute instant computed
from a clock Redis does not share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tessera.errors import StoreUnavailable
from tessera.identity.throttle import ThrottleState

__all__ = ["RedisThrottleStore"]

_ADD_FAILURE = """
local now = tonumber(ARGV[1])
local last = redis.call('HGET', KEYS[1], 'l')
local count
if last and now - tonumber(last) < tonumber(ARGV[2]) then
  count = redis.call('HINCRBY', KEYS[1], 'f', 1)
else
  count = 1
  redis.call('HSET', KEYS[1], 'f', 1)
end
redis.call('HSET', KEYS[1], 'l', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return count
"""


class RedisThrottleStore:
    """A :class:`tessera.identity.throttle.ThrottleStore` on Redis."""

    __slots__ = ("_prefix", "_redis", "_script")

    def __init__(self, client: Redis, prefix: str = "tessera") -> None:
        self._redis = client
        self._prefix = prefix
        self._script: Any = client.register_script(_ADD_FAILURE)

    def _key(self, key: str) -> str:
        return f"{self._prefix}:throttle:{key}"

    async def get(self, keys: Sequence[str]) -> list[ThrottleState | None]:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hmget(self._key(key), "f", "l")
                replies: list[list[bytes | None]] = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable("redis", type(exc).__name__) from exc
        states: list[ThrottleState | None] = []
        for failures, last in replies:
            if failures is None or last is None:
                states.append(None)
            else:
                states.append(ThrottleState(int(failures), float(last)))
        return states

    async def add_failure(self, keys: Sequence[str], now: float, window: float) -> list[int]:
        # repr() keeps every bit of the float, so the stored stamp equals `now` exactly.
        args = [repr(float(now)), repr(float(window)), max(1, math.ceil(window * 1000))]
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    await self._script(keys=[self._key(key)], args=args, client=pipe)
                replies: list[int] = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable("redis", type(exc).__name__) from exc
        return [int(r) for r in replies]

    async def reset(self, key: str) -> None:
        try:
            await self._redis.delete(self._key(key))
        except RedisError as exc:
            raise StoreUnavailable("redis", type(exc).__name__) from exc

    async def sweep(self, now: float) -> int:
        """Nothing to do: Redis expires the keys itself."""
        return 0
