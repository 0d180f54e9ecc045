"""Revocation marks in Redis, pushed to every instance by pub/sub.

``<prefix>:revocations`` is a sorted set of marks (as JSON) scored by their expiry, so loading
the live ones and dropping the dead ones are single range commands; ``add`` stores and
publishes on the ``<prefix>:revocations`` channel in one MULTI. Pub/sub is fire-and-forget, so
a listener subscribes *first* and then loads the set: a mark published in between arrives
twice, which is harmless (marks are idempotent), and none is lost.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tessera.errors import StoreUnavailable
from tessera.stores.revocations import RevocationMark

log = logging.getLogger(__name__)


class RedisRevocationStore:
    """:class:`~tessera.stores.revocations.RevocationStore` and ``RevocationFeed`` on Redis."""

    __slots__ = ("_channel", "_client", "_key")

    def __init__(self, client: Redis, prefix: str = "tessera") -> None:
        self._client = client
        self._key = f"{prefix}:revocations"
        self._channel = f"{prefix}:revocations"

    def __repr__(self) -> str:
        return f"RedisRevocationStore(key={self._key!r})"

    async def add(self, mark: RevocationMark) -> None:
        text = mark.to_json()
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zadd(self._key, {text: mark.expires_at})
                # The mark's instant stands in for "now": drop what died before it.
                pipe.zremrangebyscore(self._key, "-inf", mark.at)
                # Every mark has the same lifetime, so the newest one bounds the whole set; the
                # TTL counts from the mark's instant, not from Redis' clock.
                pipe.expire(self._key, max(1, math.ceil(mark.expires_at - mark.at)))
                pipe.publish(self._channel, text)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable("redis", type(exc).__name__) from exc

    async def load_live(self, now: float) -> list[RevocationMark]:
        try:
            members = await self._client.zrangebyscore(self._key, f"({now!r}", "+inf")
        except (RedisError, OSError) as exc:
            raise StoreUnavailable("redis", type(exc).__name__) from exc
        marks = []
        for member in members:
            try:
                if not isinstance(member, (bytes, str)):
                    raise ValueError("not a string")
                marks.append(RevocationMark.from_json(member))
            except ValueError:
                log.warning("ignoring a malformed revocation mark in %s", self._key)
        return marks

    async def sweep(self, now: float) -> int:
        try:
            return int(await self._client.zremrangebyscore(self._key, "-inf", now))
        except (RedisError, OSError) as exc:
            raise StoreUnavailable("redis", type(exc).__name__) from exc

    async def listen(
        self, on_subscribed: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[RevocationMark]:
        """Marks published by any instance (this one included), until cancelled."""
        try:
            async with self._client.pubsub() as pubsub:
                await pubsub.subscribe(self._channel)
                if on_subscribed is not None:
                    await on_subscribed()
                async for message in pubsub.listen():
                    data = message.get("data")
                    if message.get("type") != "message" or not isinstance(data, (bytes, str)):
                        continue
                    try:
                        yield RevocationMark.from_json(data)
                    except ValueError:
                        # Someone else's garbage on our channel must not stop revocations.
                        log.warning("ignoring a malformed message on %s", self._channel)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable("redis", type(exc).__name__) from exc
