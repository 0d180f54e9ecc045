"""The SQL revocation poll of a server: marks stored by other processes reach it, an outage is
logged once and survived, and it stops with the server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from tessera.clock import FakeClock
from tessera.errors import StoreUnavailable
from tessera.server import services
from tessera.stores.revocations import RevocationMark
from tessera.stores.sql import create_engine, ensure_schema
from tessera.stores.sql_revocations import SqlRevocationStore
from tessera.tokens import RevocationView


class FlakyStore(SqlRevocationStore):
    """Fails the next ``failures`` polls with the given errors, then works."""

    failures: list[Exception]

    async def load_since(self, since: float, now: float) -> list[RevocationMark]:
        if self.failures:
            raise self.failures.pop(0)
        return await super().load_since(since, now)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FlakyStore]:
    engine = create_engine(f"sqlite:///{tmp_path}/r.db")
    await ensure_schema(engine)
    flaky = FlakyStore(engine)
    flaky.failures = []
    yield flaky
    await engine.dispose()


def token(sid: str, iat: float) -> SimpleNamespace:
    return SimpleNamespace(sid=sid, sub="someone", iat=iat)


async def until(condition: object, seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "never happened"
        await asyncio.sleep(0.01)


@dataclass
class Poll:
    """A server's poll running on ``here``; ``elsewhere`` is another process on the same DB."""

    clock: FakeClock
    here: RevocationView
    elsewhere: RevocationView
    task: asyncio.Task[None]
    stop: asyncio.Event

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, timeout=1)


@pytest.fixture
async def poll(store: FlakyStore, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Poll]:
    monkeypatch.setattr(services, "REVOCATION_RELOAD_INTERVAL", 0.01)
    # No full reload during the tests: the incremental polls alone must bring the marks.
    monkeypatch.setattr(services, "REVOCATION_FULL_RELOAD_EVERY", 10**9)
    clock = FakeClock()
    here = RevocationView(store, clock, max_token_lifetime=3600)
    elsewhere = RevocationView(SqlRevocationStore(store.engine), clock, max_token_lifetime=3600)
    stop = asyncio.Event()
    task = asyncio.create_task(services._reload(here, store, clock, stop))
    running = Poll(clock, here, elsewhere, task, stop)
    yield running
    if not task.done():
        await running.finish()


async def test_marks_made_elsewhere_arrive_and_an_outage_is_logged_once(
    poll: Poll, store: FlakyStore, caplog: pytest.LogCaptureFixture
) -> None:
    issued = poll.clock.now()
    await poll.elsewhere.revoke_session("phone", issued)
    await until(lambda: poll.here.is_revoked(token("phone", issued)))

    store.failures = [StoreUnavailable("sql", "OperationalError") for _ in range(5)]
    store.failures.append(RuntimeError("a bug in a poll"))
    with caplog.at_level(logging.INFO, logger="tessera.server"):
        await until(lambda: not store.failures)
        poll.clock.advance(1)
        await poll.elsewhere.revoke_session("laptop", poll.clock.now())
        await until(lambda: poll.here.is_revoked(token("laptop", issued)))
    messages = [r.getMessage() for r in caplog.records]
    assert sum("revocation reload failing" in m for m in messages) == 1  # once per outage
    assert sum("revocation reload failed" in m for m in messages) == 1  # the bug, with trace
    assert sum("works again" in m for m in messages) == 1
    assert not poll.task.done()  # no failure ends the poll
    await poll.finish()  # and it stops with the server


async def test_a_mark_stamped_in_the_future_does_not_stall_the_polls(poll: Poll) -> None:
    """A writer whose clock runs ten minutes ahead: later marks still arrive at the next poll."""
    issued = poll.clock.now()
    await poll.elsewhere.revoke_session("ahead", issued + 600)
    await until(lambda: poll.here.is_revoked(token("ahead", issued)))
    poll.clock.advance(5)
    await poll.elsewhere.revoke_session("now", poll.clock.now())
    await until(lambda: poll.here.is_revoked(token("now", issued)))


async def test_a_poll_reads_only_recent_marks(store: FlakyStore) -> None:
    clock = FakeClock()
    view = RevocationView(store, clock, max_token_lifetime=600)
    await view.revoke_session("old", clock.now())
    clock.advance(120)
    await view.revoke_session("new", clock.now())
    recent = await store.load_since(clock.now() - 60, clock.now())
    assert [m.subject for m in recent] == ["new"]
