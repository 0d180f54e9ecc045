"""The auto-pipeline's own connection: what happens when Redis drops, stalls or garbles a reply.

A scripted fake server plays the failures that a real one cannot be made to play on demand;
the real server checks the happy paths and the handover to redis-py's pool.
"""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import hiredis
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tessera.stores.redis_autopipeline import AutoPipeline
from tests.conftest import REDIS_URL

Policy = Callable[[int, list[bytes]], bytes | None]
"""(connection number, command) -> the reply's bytes; None: say nothing; b"": close."""


@dataclass
class FakeRedis:
    """A server that answers the redis-py handshake and then whatever ``policy`` says."""

    policy: Policy
    connections: int = 0
    commands: list[list[bytes]] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number, self.connections = self.connections, self.connections + 1
        parser = hiredis.Reader()
        while data := await reader.read(65536):
            parser.feed(data)
            while (command := parser.gets()) is not False:
                if command[0].upper() == b"CLIENT":  # the handshake
                    writer.write(b"+OK\r\n")
                    continue
                self.commands.append(command)
                reply = self.policy(number, command)
                if reply == b"":
                    writer.close()
                    return
                if reply is not None:
                    writer.write(reply)
        writer.close()

    def client(self, **options: object) -> aioredis.Redis:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        # RESP2: the handshake is then CLIENT SETINFO alone, which handle() answers.
        return aioredis.Redis(port=port, protocol=2, retry=Retry(NoBackoff(), 0), **options)  # type: ignore[arg-type]


Serve = Callable[[Policy], Awaitable[FakeRedis]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start fake servers on free ports; they are closed after the test."""
    fakes: list[FakeRedis] = []

    async def start(policy: Policy) -> FakeRedis:
        fake = FakeRedis(policy)
        fake.server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
        fakes.append(fake)
        return fake

    yield start
    for fake in fakes:
        assert fake.server is not None
        fake.server.close()


def echo(_: int, command: list[bytes]) -> bytes:
    """Answer every command with its first argument, as a bulk string."""
    value = command[1] if len(command) > 1 else b""
    return b"$%d\r\n%s\r\n" % (len(value), value)


async def test_a_batch_a_kept_connection_dropped_unanswered_is_sent_once_more(serve: Serve) -> None:
    """The server closing a kept connection as a batch arrives costs the callers nothing."""

    def drop_second_batch(connection: int, command: list[bytes]) -> bytes | None:
        if connection == 0 and command[1] == b"second":
            return b""  # closed without answering: as a server restarting would
        return echo(connection, command)

    fake = await serve(drop_second_batch)
    batch = AutoPipeline(fake.client())
    assert await batch.execute([("GET", "first")]) == [b"first"]
    replies = await asyncio.gather(
        batch.execute([("GET", "second")]), batch.execute([("GET", "third")])
    )
    assert replies == [[b"second"], [b"third"]]
    assert fake.connections == 2
    await batch.close()


async def test_a_new_connection_dropped_unanswered_fails_its_callers_at_once(serve: Serve) -> None:
    """Nothing is resent on a connection that never answered: the server may be refusing us."""
    fake = await serve(lambda connection, command: b"")
    batch = AutoPipeline(fake.client())
    results = await asyncio.gather(
        batch.execute([("GET", "a")]), batch.execute([("GET", "b")]), return_exceptions=True
    )
    assert all(isinstance(r, RedisConnectionError) for r in results)
    assert fake.connections == 1
    await batch.close()


async def test_a_connection_lost_mid_batch_fails_every_unanswered_caller(serve: Serve) -> None:
    """Callers answered before the loss keep their replies; the others fail, none hangs."""

    def answer_one(connection: int, command: list[bytes]) -> bytes | None:
        if command[1] == b"answered":
            return echo(connection, command)
        return b""

    fake = await serve(answer_one)
    batch = AutoPipeline(fake.client())
    await batch.execute([("GET", "answered")])  # the connection has answered before
    results = await asyncio.gather(
        batch.execute([("GET", "answered")]),
        batch.execute([("GET", "answered"), ("GET", "lost")]),
        batch.execute([("GET", "never")]),
        return_exceptions=True,
    )
    assert results[0] == [b"answered"]
    assert all(isinstance(r, RedisConnectionError) for r in results[1:])
    await batch.close()


async def test_a_silent_server_fails_the_waiting_callers_after_the_socket_timeout(
    serve: Serve,
) -> None:
    """No reply within socket_timeout: every waiting caller fails, the connection is dropped."""
    fake = await serve(lambda connection, command: None)
    batch = AutoPipeline(fake.client(socket_timeout=0.2))
    started_at = time.monotonic()
    results = await asyncio.gather(
        batch.execute([("GET", "a")]), batch.execute([("GET", "b")]), return_exceptions=True
    )
    assert 0.2 <= time.monotonic() - started_at < 1.0
    assert all(isinstance(r, RedisTimeoutError) for r in results)
    assert batch._link is None
    await batch.close()


async def test_a_reply_that_is_not_resp_fails_the_callers(serve: Serve) -> None:
    """A garbled stream cannot be resynchronised: its callers fail and the socket is dropped."""
    fake = await serve(lambda connection, command: b"?garbage\r\n")
    batch = AutoPipeline(fake.client())
    with pytest.raises(RedisConnectionError):
        await batch.execute([("GET", "a")])
    assert batch._link is None
    await batch.close()


async def test_a_group_larger_than_one_read_is_answered_whole(serve: Serve) -> None:
    """Replies split across many reads are gathered until the group is complete."""
    big = b"x" * 300_000
    fake = await serve(lambda connection, command: echo(connection, [b"GET", big]))
    batch = AutoPipeline(fake.client())
    assert await batch.execute([("GET", "a"), ("GET", "b")]) == [big, big]
    await batch.close()


async def test_arguments_redis_py_refuses_are_refused() -> None:
    """bool and the like raise DataError before anything is sent, as redis-py would."""
    batch = AutoPipeline(aioredis.Redis.from_url(REDIS_URL))
    with pytest.raises(DataError):
        batch.execute([("SET", "k", True)])  # type: ignore[list-item]
    assert batch.batches_sent == 0


async def test_closing_the_client_under_the_pipeline_does_not_hang(redis_prefix: str) -> None:
    """client.aclose() closes the taken-over socket too, promptly, and waiters fail."""
    client = aioredis.Redis.from_url(REDIS_URL)
    batch = AutoPipeline(client)
    assert await batch.execute([("EXISTS", f"{redis_prefix}:none")]) == [0]
    started_at = time.monotonic()
    await client.aclose()
    assert time.monotonic() - started_at < 1.0
    await asyncio.sleep(0)
    assert batch._link is None


async def test_script_load_and_errors_keep_redis_py_semantics(redis_prefix: str) -> None:
    """Spaced command names are split like redis-py does; NOSCRIPT maps to NoScriptError."""
    from redis.exceptions import NoScriptError

    client = aioredis.Redis.from_url(REDIS_URL)
    batch = AutoPipeline(client)
    [sha] = await batch.execute([("SCRIPT LOAD", "return 7")])
    assert await batch.execute([("EVALSHA", sha, 0)]) == [7]
    with pytest.raises(NoScriptError):
        await batch.execute([("EVALSHA", "0" * 40, 0)])
    await batch.close()
    await client.aclose()


def test_a_pipeline_serves_one_event_loop_after_another(redis_prefix: str) -> None:
    """A CLI calling asyncio.run twice: the second loop gets a fresh connection that works."""
    client = aioredis.Redis.from_url(REDIS_URL)
    batch = AutoPipeline(client)
    key = f"{redis_prefix}:n"

    async def incr() -> list[object]:
        return await batch.execute([("INCR", key)])

    async def cleanup() -> None:
        await batch.close()
        await client.delete(key)
        await client.aclose()

    with warnings.catch_warnings():
        # The first loop's socket cannot be closed once that loop is: the garbage collector
        # closes it, with a ResourceWarning (documented in AutoPipeline's docstring).
        warnings.simplefilter("ignore", ResourceWarning)
        assert asyncio.run(incr()) == [1]
        assert asyncio.run(incr()) == [2]
        asyncio.run(cleanup())
        gc.collect()


def test_the_pipeline_runs_on_uvloop(redis_prefix: str) -> None:
    """uvloop's transports (what uvicorn runs on) take the protocol over just the same."""
    import uvloop  # a test dependency: this must run, not skip

    key = f"{redis_prefix}:n"

    async def main() -> list[list[object]]:
        client = aioredis.Redis.from_url(REDIS_URL)
        batch = AutoPipeline(client)
        try:
            return await asyncio.gather(*(batch.execute([("INCR", key)]) for _ in range(5)))
        finally:
            await batch.close()
            await client.delete(key)
            await client.aclose()

    assert sorted(uvloop.run(main())) == [[1], [2], [3], [4], [5]]
