"""The Revoker's order and its remember-me link, in process: a revocation that fails half-way can
be run again to the end, and a session only ever takes its own user's remember-me token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tessera.errors import StoreUnavailable
from tessera.identity.remember import SESSION_KEY, RememberMe
from tessera.server.revoker import Revoker
from tests.browser_helpers import Server, running_server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path) as srv:
        yield srv


async def remembered_session(server: Server, user_id: str, token_of: str | None = None) -> str:
    """A stored session of ``user_id`` linked to a fresh remember-me token of ``token_of``."""
    remember: RememberMe = server.services.remember
    value = await remember.issue(token_of or user_id)
    session = await server.services.sessions.create(
        {SESSION_KEY: value.split(":", 1)[0]}, user_id=user_id
    )
    assert session.id is not None
    return session.id


async def test_a_revocation_failing_half_way_can_be_finished(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await server.add_user("alice")
    revoker: Revoker = server.services.revoker
    session_id = await remembered_session(server, alice.id)
    store = server.services.remember.store
    delete = store.delete
    calls = 0

    async def down_once(selector: str) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StoreUnavailable("sql", "OperationalError")
        return await delete(selector)

    monkeypatch.setattr(store, "delete", down_once)
    with pytest.raises(StoreUnavailable):
        await revoker.revoke_session(alice.id, session_id)
    # Nothing that would bring the session back was left while the session itself went away.
    assert [i.id for i in await server.services.sessions.list_sessions(alice.id)] == [session_id]
    assert await revoker.revoke_session(alice.id, session_id)  # run again: it finishes
    assert await server.services.sessions.list_sessions(alice.id) == []
    assert await store.delete_for_user(alice.id) == 0  # the remember-me token is gone


async def test_a_session_never_takes_another_users_remember_me(server: Server) -> None:
    """Alice was remembered in this browser, then Bob logged in there (the data stays): Bob
    revoking that session must not log Alice's browser out of its remember-me."""
    alice = await server.add_user("alice")
    bob = await server.add_user("bob")
    session_id = await remembered_session(server, bob.id, token_of=alice.id)
    assert await server.services.revoker.revoke_session(bob.id, session_id)
    assert await server.services.remember.store.delete_for_user(alice.id) == 1  # still there
