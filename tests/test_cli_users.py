"""``tessera user``: the admin CLI over a temporary SQLite database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tessera.cli import users as users_cli
from tessera.clock import SYSTEM_CLOCK
from tessera.config import load_settings
from tessera.identity.accounts import UserService
from tessera.identity.events import EventKind, EventLog
from tessera.identity.passwords import MAX_PASSWORD_BYTES, PasswordHasher
from tessera.identity.remember import RememberToken
from tessera.stores.sessions import SessionRecord
from tessera.stores.sql import create_engine, ensure_schema
from tessera.stores.sql_events import SqlEventStore
from tessera.stores.sql_remember import SqlRememberStore
from tessera.stores.sql_sessions import SqlSessionStore
from tessera.stores.sql_users import SqlUserStore

PASSWORD = "correct horse battery"


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A private SQLite database named by TESSERA_DATABASE_URL, sessions kept in SQL."""
    url = f"sqlite:///{tmp_path}/tessera.db"
    monkeypatch.chdir(tmp_path)  # no stray ./tessera.toml
    monkeypatch.delenv("TESSERA_CONFIG", raising=False)
    monkeypatch.setenv("TESSERA_DATABASE_URL", url)
    monkeypatch.setenv("TESSERA_SESSION_STORE", "sql")
    return url


def run(*args: str, stdin: str | None = None) -> Result:
    # Wide enough that rich never wraps a cell the assertions look for.
    return CliRunner(env={"COLUMNS": "250"}).invoke(users_cli.app, list(args), input=stdin)


def add(name: str, password: str = PASSWORD, *extra: str) -> Result:
    return run("add", name, *extra, "--password-stdin", stdin=password + "\n")


def test_add_then_list(db_url: str) -> None:
    result = add("alice", PASSWORD, "--email", "alice@example.com")
    assert result.exit_code == 0, result.output
    assert "Created user alice" in result.output
    assert add("bob").exit_code == 0
    listing = run("list")
    assert listing.exit_code == 0
    lines = listing.output.splitlines()
    assert any("alice" in line and "alice@example.com" in line and "no" in line for line in lines)
    assert any("bob" in line for line in lines)


def test_list_without_users_says_how_to_add_one(db_url: str) -> None:
    result = run("list")
    assert result.exit_code == 0
    assert "tessera user add" in result.output


def test_a_name_taken_in_another_case_is_refused(db_url: str) -> None:
    assert add("alice").exit_code == 0
    result = add("ALICE")
    assert result.exit_code == 1
    assert "username is taken" in result.stderr


@pytest.mark.parametrize(
    ("name", "password", "message"),
    [
        ("\u0430lice", PASSWORD, "a username has 1 to 64 characters"),
        ("-x", PASSWORD, "a username has"),
        ("alice", "short", "at least 8 characters"),
        ("alice", "x" * (MAX_PASSWORD_BYTES + 1), "too long"),
        ("alice", "x" * (3 * MAX_PASSWORD_BYTES), "too long"),
    ],
)
def test_bad_input_is_refused_with_a_message(
    db_url: str, name: str, password: str, message: str
) -> None:
    result = run("add", "--password-stdin", "--", name, stdin=password + "\n")
    assert result.exit_code == 1
    assert message in result.stderr
    assert "No users yet" in run("list").output


def test_empty_stdin_is_refused(db_url: str) -> None:
    for stdin in ("", "\n"):
        result = run("add", "alice", "--password-stdin", stdin=stdin)
        assert result.exit_code == 2
        assert "no password on stdin" in result.stderr


def test_without_a_terminal_the_password_must_come_from_stdin(db_url: str) -> None:
    result = run("add", "alice", stdin=PASSWORD + "\n")
    assert result.exit_code == 2
    assert "--password-stdin" in result.stderr


def test_only_the_first_line_is_the_password_and_crlf_is_stripped(db_url: str) -> None:
    assert run("add", "alice", "--password-stdin", stdin=PASSWORD + "\r\nignored\n").exit_code == 0
    assert asyncio.run(authenticate(db_url, "alice", PASSWORD)) is True


def test_markup_in_user_data_prints_literally(db_url: str) -> None:
    assert add("eve", PASSWORD, "--email", "[bold]eve@example.com").exit_code == 0
    assert "[bold]eve@example.com" in run("list").output


async def authenticate(url: str, name: str, password: str) -> bool:
    engine = create_engine(url)
    try:
        service = UserService(SqlUserStore(engine), PasswordHasher(), SYSTEM_CLOCK)
        return await service.authenticate(name, password) is not None
    finally:
        await engine.dispose()


async def seed_sessions(url: str, name: str, other: str) -> None:
    """Two sessions and a remember-me token for ``name``, one session for ``other``."""
    engine = create_engine(url)
    try:
        await ensure_schema(engine)
        users = SqlUserStore(engine)
        user, someone = await users.get_by_username(name), await users.get_by_username(other)
        assert user is not None
        assert someone is not None
        sessions = SqlSessionStore(engine)
        now = SYSTEM_CLOCK.now()
        for i, owner in enumerate([user.id, user.id, someone.id]):
            await sessions.create(
                SessionRecord(f"{i:064x}", b"{}", now, now, 3600, now + 7200, user_id=owner)
            )
        await SqlRememberStore(engine).add(
            RememberToken("s" * 32, user.id, "v" * 64, now, now + 86400)
        )
    finally:
        await engine.dispose()


async def live_sessions(url: str, name: str) -> int:
    engine = create_engine(url)
    try:
        user = await SqlUserStore(engine).get_by_username(name)
        assert user is not None
        return len(await SqlSessionStore(engine).list_for_user(user.id, SYSTEM_CLOCK.now()))
    finally:
        await engine.dispose()


def test_set_password_revokes_sessions_and_remember_me_and_logs_an_event(db_url: str) -> None:
    assert add("alice").exit_code == 0
    assert add("bob").exit_code == 0
    asyncio.run(seed_sessions(db_url, "alice", "bob"))
    result = run("set-password", "alice", "--password-stdin", stdin="a new long password\n")
    assert result.exit_code == 0, result.output
    assert "Revoked 2 session(s), 1 remember-me token(s) and 0 refresh token families" in (
        result.output
    )
    assert asyncio.run(live_sessions(db_url, "alice")) == 0
    assert asyncio.run(live_sessions(db_url, "bob")) == 1
    assert asyncio.run(authenticate(db_url, "alice", "a new long password")) is True
    assert asyncio.run(authenticate(db_url, "alice", PASSWORD)) is False
    events = run("events", "alice")
    assert events.exit_code == 0
    assert "password_changed" in events.output


def test_set_password_refuses_a_short_password(db_url: str) -> None:
    assert add("alice").exit_code == 0
    result = run("set-password", "alice", "--password-stdin", stdin="short\n")
    assert result.exit_code == 1
    assert asyncio.run(authenticate(db_url, "alice", PASSWORD)) is True


def test_disable_blocks_login_and_revokes_sessions(db_url: str) -> None:
    assert add("alice").exit_code == 0
    assert add("bob").exit_code == 0
    asyncio.run(seed_sessions(db_url, "alice", "bob"))
    result = run("disable", "Alice")
    assert result.exit_code == 0, result.output
    assert "Disabled alice" in result.output
    assert "Revoked 2 session(s)" in result.output
    assert asyncio.run(authenticate(db_url, "alice", PASSWORD)) is False
    assert any("alice" in line and "yes" in line for line in run("list").output.splitlines())
    assert "user_disabled" in run("events", "alice").output
    assert run("enable", "alice").exit_code == 0
    assert asyncio.run(authenticate(db_url, "alice", PASSWORD)) is True


@pytest.mark.parametrize("command", [["disable"], ["enable"], ["events"]])
def test_unknown_users_are_reported(db_url: str, command: list[str]) -> None:
    result = run(*command, "ghost")
    assert result.exit_code == 1
    assert "no user named 'ghost'" in result.stderr


def test_unknown_user_set_password_is_reported(db_url: str) -> None:
    result = run("set-password", "ghost", "--password-stdin", stdin=PASSWORD + "\n")
    assert result.exit_code == 1
    assert "no user named" in result.stderr


async def record_hostile_event(url: str, name: str) -> None:
    engine = create_engine(url)
    try:
        user = await SqlUserStore(engine).get_by_username(name)
        assert user is not None
        await EventLog(SqlEventStore(engine)).record(
            EventKind.LOGIN_FAILED,
            user_id=user.id,
            ip="203.0.113.5",
            user_agent="[red]fake[/red]\x1b[2J",
            detail={"reason": "bad_password"},
        )
    finally:
        await engine.dispose()


def test_events_print_network_text_literally(db_url: str) -> None:
    assert add("alice").exit_code == 0
    assert "No security events for alice" in run("events", "alice").output
    asyncio.run(record_hostile_event(db_url, "alice"))
    result = run("events", "alice")
    assert result.exit_code == 0
    assert "[red]fake[/red]" in result.output
    assert "\x1b" not in result.output
    assert "login_failed" in result.output
    assert "bad_password" in result.output


def test_revoke_user_sessions_is_usable_on_its_own(db_url: str) -> None:
    assert add("alice").exit_code == 0
    assert add("bob").exit_code == 0
    asyncio.run(seed_sessions(db_url, "alice", "bob"))

    async def revoke() -> users_cli.Revoked:
        engine = create_engine(db_url)
        try:
            user = await SqlUserStore(engine).get_by_username("alice")
            assert user is not None
        finally:
            await engine.dispose()
        return await users_cli.revoke_user_sessions(load_settings(), user.id)

    assert asyncio.run(revoke()) == users_cli.Revoked(2, 1, 0)
    assert asyncio.run(live_sessions(db_url, "bob")) == 1
