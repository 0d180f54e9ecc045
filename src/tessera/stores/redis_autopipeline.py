"""Auto-pipelining for redis-py: commands of concurrent callers share one round trip.

A server handling many requests at once issues, within one event-loop iteration, one or two
Redis commands per request. Sent one by one, each pays a full round trip and its own socket
``send``/``recv`` system calls, which on a busy or virtualised machine cost more than Redis takes
to run the command. :class:`AutoPipeline` collects the command groups submitted during an
iteration and sends them, at the start of the next one, as a single non-transactional pipeline
(a Cluster cannot run a cross-slot MULTI, and nothing here needs one); each caller awaits its own
future and gets back exactly its own replies. This is what ioredis calls
``enableAutoPipelining``.

What a caller can rely on:

- **Groups stay whole and in order.** The commands of one :meth:`AutoPipeline.execute` call are
  sent consecutively, in the order given, in the same pipeline; so "write the index, then the
  session" orderings survive batching.
- **Raw replies.** Commands are argument tuples and replies come back as the server sent them
  (an HGETALL is a flat list under RESP2): redis-py's per-command reply callbacks are skipped.
- **Errors stay per caller.** A command that fails on the server (``ResponseError``, including
  ``NOSCRIPT``) fails only the group that sent it. A pipeline that fails as a whole (connection
  refused or lost, timeout) fails every group in it with redis-py's ``ConnectionError`` or
  ``TimeoutError``.
- **A lone caller pays one loop iteration**, not a timer: batching adds no fixed delay.

Several pipelines may be in flight at once, each on its own connection: a batch never waits for
the previous one, so a slow reply does not hold back the next iteration's requests.

**The round trip itself is lean**, because its fixed costs are paid per batch and batches are
small on a lightly loaded server. redis-py's ``Pipeline.execute`` checks a connection out of the
pool (a lock and metrics), bounds the socket write with ``asyncio.wait_for`` (a task per call)
and every reply read with its own timeout (a timer per reply), then runs reply callbacks: about
ten times the CPU of the round trip's system calls. Here the connections a batch used are kept
for the next batch (checked out of the client's pool once, handed back by :meth:`close`), one
timeout (the connection's ``socket_timeout``) bounds the whole exchange, and replies are read
without per-reply timers.

:class:`HiredisPackingConnection` is the other half of the per-request cost: redis-py's asyncio
connection encodes commands in Python (about 30 µs for a session update's 26 arguments, ten
times what hiredis' C encoder takes); the factory's client uses it when hiredis is installed, and
its :meth:`~HiredisPackingConnection.send_packed_unbounded` is the write without ``wait_for``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis comes with the ``redis`` extra
    _hiredis_pack = None

# A RESP3 push message (hiredis >= 3.2 marks them; older ones cannot tell them from replies).
_PUSH: type | None
try:
    from hiredis import PushNotification as _PUSH
except ImportError:  # pragma: no cover - older hiredis: the fast reads serve RESP2 only
    _PUSH = None

_NOT_ENOUGH_DATA: object | None
try:
    # What redis-py's hiredis parser makes its Reader return for an incomplete reply.
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
    from redis._parsers.hiredis import _AsyncHiredisParser
except ImportError:  # pragma: no cover - another redis-py layout: the generic reads serve
    _NOT_ENOUGH_DATA = None

Command = tuple[EncodableT, ...]
"""One command: its name and arguments, as ``Redis.execute_command`` takes them."""


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

    __slots__ = ("_client", "_idle", "_idle_loop", "_in_flight", "_pending", "batches_sent")

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._pending: _Batch | None = None
        # Connections between batches, and the loop they were last used on.
        self._idle: list[AbstractConnection] = []
        self._idle_loop: asyncio.AbstractEventLoop | None = None
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
            # is not flushed by this loop: start a new one. Its task first runs in the next
            # loop iteration, after every caller of this one has added its commands.
            batch = self._pending = _Batch(loop)
            task = loop.create_task(self._send(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        future: asyncio.Future[list[Any]] = loop.create_future()
        start = len(batch.commands)
        batch.commands.extend(commands)
        batch.futures.append((start, len(batch.commands), future))
        return await future

    async def close(self) -> None:
        """Hand the connections kept between batches back to the client's pool."""
        idle, self._idle = self._idle, []
        for connection in idle:
            await self._client.connection_pool.release(connection)

    async def _send(self, batch: _Batch) -> None:
        if self._pending is batch:
            self._pending = None  # later callers start the next batch
        self.batches_sent += 1
        try:
            replies = await self._round_trip(batch.commands, batch.loop)
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

    async def _round_trip(
        self, commands: list[Command], loop: asyncio.AbstractEventLoop
    ) -> list[Any]:
        if self._idle_loop is not loop:
            # Connections of a stopped loop cannot be used on this one: the pool deals with
            # them, as with any of its connections.
            await self.close()
            self._idle_loop = loop
        reused = bool(self._idle)
        connection = (
            self._idle.pop() if reused else await self._client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        )
        try:
            try:
                replies = await _exchange(connection, commands)
            except RedisConnectionError as exc:
                # A kept connection the server has since closed (idle timeout, restart) fails
                # before any reply: one retry on a new connection, as redis-py's retry would.
                if not reused or isinstance(exc, _PartlyAnswered):
                    raise
                await connection.disconnect(nowait=True)
                replies = await _exchange(connection, commands)
        except BaseException:
            # Unknown state (unread replies, half-written command): never reuse the socket.
            await connection.disconnect(nowait=True)
            await self._client.connection_pool.release(connection)
            raise
        self._idle.append(connection)
        return replies


class _PartlyAnswered(RedisConnectionError):
    """The connection failed after some replies came back: the batch was (partly) run."""


async def _exchange(connection: AbstractConnection, commands: list[Command]) -> list[Any]:
    """Send ``commands`` on ``connection`` and read every reply, server errors included."""
    packed = connection.pack_commands(commands)
    replies: list[Any] = []
    try:
        # One timeout for the whole exchange; reads below pass math.inf ("no timeout of
        # your own"), which saves redis-py's timer per reply.
        async with asyncio.timeout(connection.socket_timeout):
            if isinstance(connection, HiredisPackingConnection):
                await connection.send_packed_unbounded(packed)
                await connection.read_replies(len(commands), replies)
            else:
                await connection.send_packed_command(packed, check_health=False)
                await _read_replies(connection, len(commands), replies)
    except TimeoutError:
        raise RedisTimeoutError("Timeout in a Redis pipeline round trip") from None
    except RedisConnectionError as exc:
        if replies:
            raise _PartlyAnswered(*exc.args) from exc
        raise
    return replies


async def _read_replies(connection: AbstractConnection, count: int, replies: list[Any]) -> None:
    """Append ``count`` replies to ``replies``, a server error as its ResponseError."""
    for _ in range(count):
        try:
            # math.inf: no timeout of its own (the caller's bounds the exchange), which saves
            # redis-py's timer per reply.
            replies.append(await connection.read_response(timeout=math.inf))
        except ResponseError as error:
            replies.append(error)


_PLAIN_TYPES = frozenset({str, bytes, int, float})
"""Argument types hiredis encodes exactly as redis-py does (bool is refused by redis-py)."""


class HiredisPackingConnection(Connection):
    """A TCP connection that encodes commands with hiredis' C encoder, byte for byte the same.

    Falls back to redis-py's encoder for anything hiredis would encode differently: a command
    name with a space (``"SCRIPT LOAD"``, split by redis-py), arguments that are not plain
    str/bytes/int/float (bool, memoryview), or a client encoding other than strict UTF-8.
    """

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        if _hiredis_pack is None or not self._hiredis_encodes(args):
            return super().pack_command(*args)
        return [_hiredis_pack(args)]

    def pack_commands(self, commands: Iterable[Iterable[EncodableT]]) -> list[bytes]:
        """The whole pipeline in one buffer, one C call per command when hiredis may encode it."""
        if _hiredis_pack is None:
            return super().pack_commands(commands)
        return [b"".join(b"".join(self.pack_command(*command)) for command in commands)]

    def _hiredis_encodes(self, args: tuple[EncodableT, ...]) -> bool:
        encoder, name = self.encoder, args[0]
        return (
            encoder.encoding.lower().replace("-", "") == "utf8"
            and encoder.encoding_errors == "strict"
            and not (isinstance(name, str) and " " in name)
            and not (isinstance(name, bytes) and b" " in name)
            # In C: a generator here cost a microsecond per command.
            and _PLAIN_TYPES.issuperset(map(type, args))
        )

    async def send_packed_unbounded(self, command: list[bytes]) -> None:
        """``send_packed_command`` for a caller that bounds the whole exchange with a timeout.

        redis-py's version wraps every write in ``asyncio.wait_for``, a task per call; errors
        are reported and the connection dropped the same way.
        """
        if not self.is_connected:
            await self.connect()  # type: ignore[no-untyped-call]
        try:
            await self._send_packed_command(command)
        except OSError as exc:
            await self.disconnect(nowait=True)
            raise RedisConnectionError(f"Error while writing to socket: {exc.args}") from exc
        except BaseException:
            await self.disconnect(nowait=True)
            raise

    async def read_replies(self, count: int, replies: list[Any]) -> None:
        """Append ``count`` replies to ``replies``, a server error as its ResponseError.

        Straight from the hiredis reader of redis-py's parser: ``read_response`` costs three
        coroutine frames and a timeout check per reply, several times the parsing. A RESP3
        push message in between goes to the parser's handler, as ``read_response`` would send
        it. With a parser this module does not know, the generic reads serve.
        """
        parser = self._parser
        reader = getattr(parser, "_reader", None)
        if (
            _NOT_ENOUGH_DATA is None
            or not isinstance(parser, _AsyncHiredisParser)
            or reader is None
            or (_PUSH is None and str(self.protocol) not in ("2", "None"))
        ):
            await _read_replies(self, count, replies)
            return
        end = len(replies) + count
        try:
            while len(replies) < end:
                reply = reader.gets()
                if reply is _NOT_ENOUGH_DATA:
                    await parser.read_from_socket()  # type: ignore[no-untyped-call]  # EOF raises
                elif isinstance(reply, RedisConnectionError):
                    raise reply
                elif _PUSH is not None and isinstance(reply, _PUSH):
                    await parser.handle_push_response(reply)  # type: ignore[no-untyped-call]
                else:
                    replies.append(reply)
        except OSError as exc:
            await self.disconnect(nowait=True)
            raise RedisConnectionError(f"Error while reading from socket: {exc.args}") from exc
        except BaseException:
            await self.disconnect(nowait=True)
            raise
