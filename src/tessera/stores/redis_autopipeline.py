"""Auto-pipelining for redis-py: commands of concurrent callers share one connection and write.

A server handling many requests at once issues, within one event-loop iteration, one or two
Redis commands per request. Sent one by one, each pays a full round trip and its own socket
``send``/``recv`` system calls, which on a busy or virtualised machine cost more than Redis takes
to run the command. :class:`AutoPipeline` collects the command groups submitted during an
iteration and writes them, at the start of the next one, as a single non-transactional pipeline
(a Cluster cannot run a cross-slot MULTI, and nothing here needs one); each caller awaits its own
future and gets back exactly its own replies. This is what ioredis calls
``enableAutoPipelining``; redis-py has nothing like it, hence this module.

What a caller can rely on:

- **Groups stay whole and in order.** The commands of one :meth:`AutoPipeline.execute` call are
  sent consecutively, in the order given, on the same connection; so "write the index, then the
  session" orderings survive batching. Batches themselves are written in submission order.
- **Raw replies.** Replies come back as the server sent them (an HGETALL is a flat list under
  RESP2, a dict under RESP3): redis-py's per-command reply callbacks are skipped.
- **Errors stay per caller.** A command that fails on the server (``ResponseError``, including
  ``NOSCRIPT`` as redis-py's ``NoScriptError``) fails only the group that sent it. A connection
  that fails (refused, lost, protocol error) fails every group waiting on it with redis-py's
  ``ConnectionError``; a server that answers nothing for ``socket_timeout`` seconds fails them
  with ``TimeoutError`` and the connection is dropped. No caller ever waits unbounded.
- **A kept connection the server closed** (idle timeout, restart, ``CLIENT KILL``) is noticed
  when the server closes it, so the next batch opens a new one; a batch written in the instant
  before the close is noticed, and answered by nothing, is sent once more on a new connection,
  as redis-py's retry would.
- **A lone caller pays one loop iteration**, not a timer: batching adds no fixed delay.

**Why a protocol of its own.** The hot path is one Redis connection driven by an
:class:`asyncio.Protocol` (:class:`_Link`): a batch is one ``transport.write`` of commands packed
by hiredis' C encoder, and ``data_received`` feeds a hiredis reader and resolves each caller's
future as its replies complete. No reader task, no ``StreamReader``, no ``wait_for`` or timer per
batch (one timer per connection checks the oldest unanswered batch's deadline), no pool
checkout per batch; batches are pipelined on the connection, so a batch never waits for the
previous one's replies. redis-py's own pipeline costs about ten times the system calls of the
round trip in CPU (a pool checkout, a task per write, a timer per reply, reply callbacks), and
for two commands per request that was most of a request's cost.

redis-py stays the client of record for everything else: it opens the connection (address, TLS,
AUTH, SELECT, HELLO, CLIENT SETNAME, its retry and connect timeout), the hot path then takes the
socket over (``transport.set_protocol``) and hands it back to the pool, disconnected, when done;
scripts loading and every admin command go through the client as usual.

:class:`HiredisPackingConnection` speeds up those other commands: redis-py's asyncio connection
encodes commands in Python (about 30 µs for 26 arguments, ten times hiredis' C encoder); the
factory's client uses it when hiredis is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, InvalidResponse, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from tessera.errors import ConfigError

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import Reader as _Reader
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis comes with the ``redis`` extra
    _hiredis_pack = None

# A RESP3 push message (hiredis >= 3.2 marks them; older ones cannot tell them from replies).
_PUSH: type | None
try:
    from hiredis import PushNotification as _PUSH
except ImportError:  # pragma: no cover - older hiredis: RESP2 only
    _PUSH = None

_parse_error: Callable[[str], ResponseError]
try:
    # redis-py's mapping of an error reply to its exception class (NOSCRIPT -> NoScriptError...).
    from redis._parsers.base import BaseParser

    _parse_error = BaseParser.parse_error
except ImportError:  # pragma: no cover - another redis-py layout: plain ResponseErrors
    _parse_error = ResponseError

DEFAULT_TIMEOUT = 10.0
"""Seconds a batch may wait for its replies when the client sets no ``socket_timeout``."""

Command = tuple[EncodableT, ...]
"""One command: its name and arguments, as ``Redis.execute_command`` takes them."""

_PLAIN_TYPES = frozenset({str, bytes, int, float})
"""Argument types hiredis encodes exactly as redis-py does (bool is refused by redis-py)."""

_MORE = object()
"""What the reader returns for an incomplete reply (``False`` is a valid RESP3 reply)."""

_Group = tuple["asyncio.Future[list[Any]]", int]
"""A caller's future and how many replies it waits for."""


class AutoPipeline:
    """Send what concurrent callers ask of ``client`` in one write per loop iteration.

    Needs hiredis (the ``redis`` extra installs it). With RESP3 (redis-py's default since 8.0)
    it needs hiredis >= 3.2, which tells push messages from replies.

    Used from a new event loop (a CLI calling ``asyncio.run`` twice), it starts over with a new
    connection. Close it before its loop ends: the socket of a closed loop cannot be closed
    through that loop any more, and is left to the garbage collector (a ResourceWarning).
    """

    __slots__ = (
        "_client",
        "_connecting",
        "_encoder",
        "_flush_scheduled",
        "_groups",
        "_link",
        "_loop",
        "_packed",
        "_reader_options",
        "_tasks",
        "_timeout",
        "batches_sent",
        "pack",
    )

    def __init__(self, client: aioredis.Redis) -> None:
        if _hiredis_pack is None:
            raise ConfigError("Redis auto-pipelining needs hiredis: install tessera[redis]")
        kwargs = client.connection_pool.connection_kwargs
        self._client = client
        timeout = kwargs.get("socket_timeout")
        # A client built without socket_timeout still gets a deadline: callers never wait on
        # a hung server for ever (the factory's client sets its own, shorter one).
        self._timeout: float = DEFAULT_TIMEOUT if timeout is None else float(timeout)
        encoder = self._encoder = client.connection_pool.get_encoder()  # type: ignore[no-untyped-call]
        utf8 = encoder.encoding.lower().replace("-", "") == "utf8"
        self.pack: Callable[[Command], bytes] = (
            _hiredis_pack if utf8 and encoder.encoding_errors == "strict" else self._pack_encoded
        )
        """One command as RESP bytes, for :meth:`execute_packed`; str arguments are encoded as
        the client encodes them. Arguments must be str, bytes, int or float (a float as
        ``repr``), which :meth:`execute` checks and this does not."""
        self._reader_options: dict[str, Any] = {
            "protocolError": InvalidResponse,
            "replyError": _parse_error,
            "notEnoughData": _MORE,
        }
        if encoder.decode_responses:
            self._reader_options["encoding"] = encoder.encoding
            self._reader_options["errors"] = encoder.encoding_errors
        self._loop: asyncio.AbstractEventLoop | None = None
        self._link: _Link | None = None
        self._connecting: asyncio.Task[None] | None = None
        # Submitted and not yet written: packed commands, and the groups waiting on them.
        self._packed: list[bytes] = []
        self._groups: list[_Group] = []
        self._flush_scheduled = False
        # Strong references: the loop keeps only weak ones to running tasks.
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches_sent = 0
        """Batches so far: written, or failed together for want of a connection (tests and
        benchmarks read it)."""

    def execute(self, commands: Sequence[Command]) -> asyncio.Future[list[Any]]:
        """Run ``commands`` (one group) in the next batch; a future of their replies, in order.

        The future fails with the first server error among the group's replies, or with what
        failed the connection (redis-py's ``ConnectionError``, ``TimeoutError``). Arguments must
        be str, bytes, int or float (``DataError`` otherwise, as redis-py refuses bool).
        """
        pack, packed = self.pack, []
        for command in commands:
            if not _PLAIN_TYPES.issuperset(map(type, command)):
                raise DataError(f"{command[0]!r}: arguments must be str, bytes, int or float")
            name = command[0]
            if isinstance(name, str) and " " in name:  # "SCRIPT LOAD", as redis-py splits it
                command = (*name.split(), *command[1:])
            packed.append(pack(command))
        return self.execute_packed(b"".join(packed), len(commands))

    def execute_packed(self, packed: bytes, count: int) -> asyncio.Future[list[Any]]:
        """:meth:`execute` for ``count`` commands already packed with :attr:`pack`."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._rebind(loop)
        future: asyncio.Future[list[Any]] = loop.create_future()
        if not count:
            future.set_result([])
            return future
        self._packed.append(packed)
        self._groups.append((future, count))
        if not self._flush_scheduled:
            # Runs in the next iteration, after every caller of this one has added its commands.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    async def close(self) -> None:
        """Fail what is still waiting and hand the connection back to the client's pool."""
        if self._connecting is not None:
            self._connecting.cancel()
        link, self._link = self._link, None
        self._fail_pending(RedisConnectionError("The session store was closed"))
        if link is not None:
            link.detach(RedisConnectionError("The session store was closed"))
            await self._release(link.connection)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- internals ----------------------------------------------------------------------------

    def _pack_encoded(self, command: Command) -> bytes:
        """:attr:`pack` for a client whose encoding is not strict UTF-8 (hiredis' own)."""
        encode = self._encoder.encode
        assert _hiredis_pack is not None  # checked in __init__
        return _hiredis_pack(tuple(encode(a) if isinstance(a, str) else a for a in command))

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._groups:
            return
        link = self._link
        if link is None:
            if self._connecting is None:
                self._connecting = self._spawn(self._connect())
            return  # _connect flushes (or fails) everything submitted meanwhile
        packed, groups = self._packed, self._groups
        self._packed, self._groups = [], []
        self.batches_sent += 1
        link.send(packed[0] if len(packed) == 1 else b"".join(packed), groups)

    async def _connect(self) -> None:
        pool = self._client.connection_pool
        try:
            try:
                # redis-py connects, authenticates and selects the database (with its retry
                # and connect timeout); then the socket is ours.
                connection = await pool.get_connection()  # type: ignore[no-untyped-call]
                try:
                    link = _Link(self, connection, _Reader(**self._reader_options))
                except BaseException:
                    await self._release(connection)
                    raise
            except asyncio.CancelledError:
                self._fail_pending(None)
                raise
            except Exception as exc:
                self._fail_pending(exc)
                return
        finally:
            self._connecting = None
        self._link = link
        self._flush()

    def _fail_pending(self, error: BaseException | None) -> None:
        """Fail (or, without an error, cancel) what was submitted and never written."""
        groups = self._groups
        self._packed, self._groups = [], []
        if groups:
            self.batches_sent += 1
        _fail(groups, error)

    def _lost(self, link: _Link) -> None:
        """``link`` is closed: forget it and give its connection back to the pool."""
        if self._link is link:
            self._link = None
        self._spawn(self._release(link.connection))

    def _resend(self, packed: list[bytes], groups: Iterable[_Group]) -> None:
        """Submit again, ahead of anything newer, batches a dropped connection never answered."""
        self._packed[:0] = packed
        self._groups[:0] = groups
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    async def _release(self, connection: AbstractConnection) -> None:
        # Failing only for a socket of a stopped loop: nothing more to close then.
        with contextlib.suppress(Exception):
            await connection.disconnect(nowait=True)
        await self._client.connection_pool.release(connection)

    def _rebind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start over on ``loop``: what belonged to a loop that stopped cannot be used here."""
        if self._loop is not None:
            # A CLI calling asyncio.run twice: the old loop's futures are unreachable and its
            # socket unusable; the connection goes back to the pool, which reconnects it.
            link, self._link = self._link, None
            self._packed, self._groups = [], []
            self._connecting = None
            self._flush_scheduled = False
            self._tasks = set()
            self._loop = loop
            if link is not None:
                link.detach(None)
                self._spawn(self._release(link.connection))
        self._loop = loop

    def _spawn(self, coroutine: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _fail(groups: Iterable[_Group], error: BaseException | None) -> None:
    for future, _ in groups:
        if not future.done():
            if error is None:
                future.cancel()
            else:
                future.set_exception(error)


class _Link(asyncio.Protocol):
    """One connection taken over from redis-py: writes batches, hands replies to their callers."""

    def __init__(self, owner: AutoPipeline, connection: AbstractConnection, reader: Any) -> None:
        writer = getattr(connection, "_writer", None)
        if not isinstance(writer, asyncio.StreamWriter):
            raise RedisConnectionError(f"{type(connection).__name__}: not an asyncio stream")
        # What the handshake settled (redis-py >= 8 asks for RESP3 unless told otherwise).
        self.resp3 = str(getattr(connection, "protocol", 2)) == "3"
        if self.resp3 and _PUSH is None:
            raise ConfigError("RESP3 auto-pipelining needs hiredis >= 3.2")
        self.owner = owner
        self.connection = connection
        self.reader = reader
        self.loop = asyncio.get_running_loop()
        self.timeout = owner._timeout
        # Groups written and not yet answered, oldest first; replies so far of the oldest one.
        self.waiting: deque[_Group] = deque()
        self.partial: list[Any] | None = None
        self.sent = 0
        """Groups written so far: ``sent - len(waiting)`` have been answered."""
        # Unanswered batches, oldest first: (``sent`` once written, deadline, bytes).
        self.batches: deque[tuple[int, float, bytes]] = deque()
        self.timer: asyncio.TimerHandle | None = None
        # Written while the connection was idle after earlier answers, and no byte came back
        # since: if it drops now, the server most likely closed it before reading the batch.
        self.may_resend = False
        self.open = True
        self.transport: asyncio.Transport = writer.transport  # type: ignore[assignment]
        # redis-py's protocol hears of the close too, so its ``disconnect()`` (say from a
        # client's aclose() that closes every connection, ours included) does not wait forever.
        self.stream_protocol = self.transport.get_protocol()
        self.transport.set_protocol(self)

    def send(self, packed: bytes, groups: list[_Group]) -> None:
        if not self.waiting and self.sent:
            self.may_resend = True
        self.waiting.extend(groups)
        self.sent += len(groups)
        self.transport.write(packed)
        timeout = self.timeout
        deadline = self.loop.time() + timeout if timeout is not None else float("inf")
        self.batches.append((self.sent, deadline, packed))
        if self.timer is None and timeout is not None:
            self.timer = self.loop.call_at(deadline, self._check_deadline)

    def data_received(self, data: bytes) -> None:
        self.may_resend = False
        reader = self.reader
        reader.feed(data)
        waiting = self.waiting
        partial = self.partial
        try:
            while (reply := reader.gets()) is not _MORE:
                if self.resp3 and isinstance(reply, _PUSH):  # type: ignore[arg-type]
                    continue  # never subscribed to anything: nothing to hand a push to
                future, count = waiting[0]  # IndexError: a reply nobody asked for
                if partial is None:
                    if count == 1:
                        waiting.popleft()
                        if not future.done():  # done: the caller was cancelled
                            if isinstance(reply, ResponseError):
                                future.set_exception(reply)
                            else:
                                future.set_result([reply])
                        continue
                    partial = []
                partial.append(reply)
                if len(partial) == count:
                    waiting.popleft()
                    if not future.done():
                        error = next((r for r in partial if isinstance(r, ResponseError)), None)
                        if error is None:
                            future.set_result(partial)
                        else:
                            future.set_exception(error)
                    partial = None
        except Exception as exc:  # a protocol error or a stray reply: the stream is unusable
            self.partial = None
            self._abort(RedisConnectionError(f"Unreadable reply from Redis: {exc!r}"))
            return
        self.partial = partial
        batches, answered = self.batches, self.sent - len(waiting)
        while batches and batches[0][0] <= answered:
            batches.popleft()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stream_protocol.connection_lost(exc)
        if not self.open:
            return
        self.open = False
        if self.timer is not None:
            self.timer.cancel()
        self.owner._lost(self)
        if self.may_resend and self.waiting:
            # Nothing of these batches came back: resend them once on a new connection (that
            # one starts without answers, so it never resends a second time).
            waiting, self.waiting = self.waiting, deque()
            self.owner._resend([packed for _, _, packed in self.batches], waiting)
            return
        reason = f": {exc}" if exc is not None else ""
        self._fail(RedisConnectionError(f"Connection to Redis lost{reason}"))

    def detach(self, error: BaseException | None) -> None:
        """Close without telling the owner, failing (or, without an error, cancelling) waiters."""
        self.open = False
        if self.timer is not None:
            self.timer.cancel()
        self._fail(error)
        with contextlib.suppress(RuntimeError):  # its loop is closed: the socket went with it
            self.transport.close()

    def _check_deadline(self) -> None:
        self.timer = None
        batches, answered = self.batches, self.sent - len(self.waiting)
        while batches and batches[0][0] <= answered:
            batches.popleft()
        if not batches:
            return
        deadline = batches[0][1]
        if deadline <= self.loop.time():
            self._abort(RedisTimeoutError("Timeout waiting for a Redis reply"))
        else:
            self.timer = self.loop.call_at(deadline, self._check_deadline)

    def _abort(self, error: BaseException) -> None:
        """Drop the connection now, failing every waiting caller with ``error``."""
        self.open = False
        if self.timer is not None:
            self.timer.cancel()
        self._fail(error)
        self.transport.abort()
        self.owner._lost(self)

    def _fail(self, error: BaseException | None) -> None:
        waiting, self.waiting = self.waiting, deque()
        self.partial = None
        self.batches.clear()
        _fail(waiting, error)


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
