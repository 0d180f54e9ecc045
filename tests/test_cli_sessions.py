"""``tessera sessions list|revoke|sweep`` against a temporary SQLite session store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tessera.cli.sessions import app
from tessera.config import load_settings
from tessera.sessions import SessionManager
from tessera.stores.factory import open_session_store


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """TESSERA_SESSION_STORE=sql on a fresh SQLite file; no stray ./tessera.toml."""
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("TESSERA_SESSION_STORE", "sql")
    monkeypatch.setenv("TESSERA_DATABASE_URL", url)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.chdir(tmp_path)
    return url


def seed(
    *users: str | None, idle_timeout: float = 1800, user_agent: str = "UA/1"
) -> list[tuple[str, str]]:
    """Sessions for ``users`` (None: anonymous); (public id, secret id) of each."""

    async def main() -> list[tuple[str, str]]:
        store = await open_session_store(load_settings())
        manager = SessionManager(store, idle_timeout=idle_timeout)
        try:
            made = []
            for user in users:
                s = await manager.create(
                    {"k": 1}, user_id=user, ip="10.1.2.3", user_agent=user_agent
                )
                assert s.id is not None
                assert s.secret_id is not None
                made.append((s.id, s.secret_id))
            return made
        finally:
            await store.close()

    return asyncio.run(main())


def live_ids() -> set[str]:
    async def main() -> set[str]:
        store = await open_session_store(load_settings())
        try:
            return {r.id_hash for r in await store.list_all(time.time())}
        finally:
            await store.close()

    return asyncio.run(main())


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_list_shows_handles_never_secrets(database: str) -> None:
    sessions = seed("alice", "bob", None)
    code, output = invoke("list")
    assert code == 0, output
    for public, secret in sessions:
        assert public[:16] in output
        assert secret not in output
    assert "alice" in output
    assert "10.1.2.3" in output


def test_list_filters_by_user_and_limits(database: str) -> None:
    (alice,), (bob,) = seed("alice"), seed("bob")
    code, output = invoke("list", "--user", "alice")
    assert code == 0
    assert alice[0][:16] in output
    assert bob[0][:16] not in output
    code, output = invoke("list", "--limit", "1")
    assert code == 0
    assert (alice[0][:16] in output) != (bob[0][:16] in output)


def test_empty_store_says_so(database: str) -> None:
    code, output = invoke("list")
    assert code == 0
    assert output.startswith("No live sessions in ")
    assert "cli.db" in output  # says where it looked


def test_revoke_by_unique_prefix(database: str) -> None:
    (target, _), (other, _) = seed("alice", "bob")
    code, output = invoke("revoke", target[:10])
    assert code == 0, output
    assert live_ids() == {other}


def test_revoke_by_full_id(database: str) -> None:
    ((target, _),) = seed("alice")
    assert invoke("revoke", target)[0] == 0
    assert live_ids() == set()


def test_revoke_refuses_short_or_unknown_ids(database: str) -> None:
    ((target, _),) = seed("alice")
    assert invoke("revoke", target[:7])[0] == 2
    assert invoke("revoke", "zz" * 8)[0] == 2
    unknown = "0" * 12 if not target.startswith("0" * 12) else "1" * 12
    code, output = invoke("revoke", unknown)
    assert code == 1
    assert "no live session" in output
    assert live_ids() == {target}


def test_revoke_all_of_a_user(database: str) -> None:
    seed("alice", "alice")
    ((bob, _),) = seed("bob")
    code, output = invoke("revoke", "--user", "alice")
    assert code == 0
    assert "Revoked 2 session(s), 0 remember-me token(s) and 0 refresh token families of alice" in (
        output
    )
    assert live_ids() == {bob}


def test_revoke_needs_exactly_one_target(database: str) -> None:
    assert invoke("revoke")[0] == 2
    assert invoke("revoke", "a" * 8, "--user", "x")[0] == 2


def test_sweep_removes_expired(database: str) -> None:
    seed(None, idle_timeout=0.001)
    ((live, _),) = seed("alice")
    time.sleep(0.01)
    code, output = invoke("sweep")
    assert code == 0
    assert "Removed 1 expired session(s)." in output
    assert live_ids() == {live}


def test_memory_store_is_refused_with_a_reason(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESSERA_SESSION_STORE", "memory")
    code, output = invoke("list")
    assert code == 2
    assert "inside the server process" in output


def test_list_prints_what_clients_sent_as_inert_text(database: str) -> None:
    """A User-Agent is anyone's to choose: its escape sequences must not reach the terminal,
    and brackets in names are text, not rich markup."""
    seed("[red]mallory[/red]", user_agent="Anon\x1b]0;owned\x07\x1b[2J\x9b")
    code, output = invoke("list")
    assert code == 0, output
    assert "\x1b" not in output
    assert "\x9b" not in output
    assert "\x07" not in output
    assert "[red]mallory[/red]" in output
    assert "Anon]0;owned[2J" in output


def test_a_database_path_with_brackets_is_shown_as_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "[b]x"
    folder.mkdir()
    monkeypatch.setenv("TESSERA_SESSION_STORE", "sql")
    monkeypatch.setenv("TESSERA_DATABASE_URL", f"sqlite:///{folder}/t.db")
    monkeypatch.setenv("COLUMNS", "400")
    code, output = invoke("list")
    assert code == 0, output
    assert "[b]x/t.db" in output
    seed("alice")
    code, output = invoke("list")
    assert code == 0, output
    assert "[b]x/t.db" in output
