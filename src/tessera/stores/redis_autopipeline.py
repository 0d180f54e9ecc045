"""Auto-pipelining for redis-py: commands of concurrent callers share one round trip.

A server handling many requests at once issues, within one event-loop iteration, one or two
Redis commands per request. Sent one by one, each pays a full round trip and its own socket
``send``/``recv`` system calls, which on a busy or virtualised machine cost more than Redis takes
to run the command. :class:`AutoPipeline` collects the command groups submitted during an
iteration and sends them, at the start of the next one, as a single non-transactional pipeline
(``transaction=False``: a Cluster cannot run a cross-slot MULTI, and nothing here needs one);
each caller awaits its own future and gets back exactly its own replies. This is what ioredis
calls ``enableAutoPipelining``.

What a caller can rely on:

- **Groups stay whole and in order.** The commands of one :meth:`AutoPipeline.execute` call are
  sent consecutively, in the order given, in the same pipeline; so "write the index, then the
  session" orderings survive batching.
- **Errors stay per caller.** A command that fails on the server (``ResponseError``, including
  ``NOSCRIPT``) fails only the group that sent it. A pipeline that fails as a whole (connection
  refused or lost, timeout) fails every group in it with that exception.
- **A lone caller pays one loop iteration**, not a timer: batching adds no fixed delay.

Several pipelines may be in flight at once (each on its own pooled connection): a batch never
waits for the previous one, so a slow reply does not hold back the next iteration's requests.

:class:`HiredisPackingConnection` is the other half of the per-request cost: redis-py's asyncio
connection encodes commands in Python (about 30 µs for a session update's 26 arguments, ten
times what hiredis' C encoder takes); the factory's client uses it when hiredis is installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.typing import EncodableT

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis comes with the ``redis`` extra
    _hiredis_pack = None

Command = tuple[tuple[Any, ...], Mapping[str, Any]]
"""One command as redis-py queues it in a pipeline: its arguments and its parse options."""


class _Batch:
    """The groups submitted during one loop iteration, and where their replies go."""

    __slots__ = ("commands", "futures", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.commands: list[Command] = []
        # (first command index, end index, the caller's future) per group
        self.futures: list[tuple[int, int, asyncio.Future[list[Any]]]] = []


class AutoPipeline:
    """Send what concurrent callers ask of ``client`` in one pipeline per loop iteration."""

    __slots__ = ("_client", "_in_flight", "_pending", "batches_sent")

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._pending: _Batch | None = None
        # Strong references: the loop keeps only weak ones to running tasks.
        self._in_flight: set[asyncio.Task[None]] = set()
        self.batches_sent = 0
        """Pipelines sent so far (tests and benchmarks read it)."""

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Run ``commands`` (one group) in the next batch; their replies, in order.

        Raises the first server error among the group's replies, or whatever failed the whole
        pipeline (redis-py's ``ConnectionError``, ``TimeoutError``, ...).
        """
        loop = asyncio.get_running_loop()
        batch = self._pending
        if batch is None or batch.loop is not loop:
            # A batch left behind by a loop that stopped (a CLI calling asyncio.run twice)
            # is not flushed by this loop: start a new one.
            batch = self._pending = _Batch(loop)
            loop.call_soon(self._flush, batch)
        future: asyncio.Future[list[Any]] = loop.create_future()
        start = len(batch.commands)
        batch.commands.extend(commands)
        batch.futures.append((start, len(batch.commands), future))
        return await future

    def _flush(self, batch: _Batch) -> None:
        if self._pending is batch:
            self._pending = None
        task = batch.loop.create_task(self._send(batch))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _send(self, batch: _Batch) -> None:
        pipe = self._client.pipeline(transaction=False)
        pipe.command_stack.extend(batch.commands)
        self.batches_sent += 1
        try:
            replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            for _, _, future in batch.futures:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:
            # Cancelled (the loop is shutting down): nobody may wait forever on a reply.
            for _, _, future in batch.futures:
                future.cancel()
            raise
        for start, end, future in batch.futures:
            if future.done():
                continue  # the caller was cancelled; its replies are dropped
            mine = replies[start:end]
            error = next((r for r in mine if isinstance(r, Exception)), None)
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(mine)


_PLAIN_TYPES = frozenset({str, bytes, int, float})
"""Argument types hiredis encodes exactly as redis-py does (bool is refused by redis-py)."""


class HiredisPackingConnection(Connection):
    """A TCP connection that encodes commands with hiredis' C encoder, byte for byte the same.

    Falls back to redis-py's encoder for anything hiredis would encode differently: a command
    name with a space (``"SCRIPT LOAD"``, split by redis-py), arguments that are not plain
    str/bytes/int/float (bool, memoryview), or a client encoding other than strict UTF-8.
    """

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        encoder, name = self.encoder, args[0]
        if (
            _hiredis_pack is None
            or encoder.encoding.lower().replace("-", "") != "utf8"
            or encoder.encoding_errors != "strict"
            or (isinstance(name, str) and " " in name)
            or (isinstance(name, bytes) and b" " in name)
            or any(type(arg) not in _PLAIN_TYPES for arg in args)
        ):
            return super().pack_command(*args)
        return [_hiredis_pack(args)]
