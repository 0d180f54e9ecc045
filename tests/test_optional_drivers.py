"""Without the ``redis`` / ``postgres`` extras, asking for them is a ConfigError naming the extra.

The README's plain ``pip install -e .`` has neither driver: setting TESSERA_SESSION_STORE=redis
or a ``postgresql://`` TESSERA_DATABASE_URL must then say which extra to install, not end in a
``ModuleNotFoundError`` traceback. A ``None`` in ``sys.modules`` makes ``import`` raise
ImportError, as if the package were not installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tessera.cli import app as cli
from tessera.config import load_settings
from tessera.errors import ConfigError
from tessera.server.app import create_app
from tessera.stores import sql
from tessera.stores.factory import REDIS_MISSING, open_session_store, redis_client, require_drivers
from tests.test_example_visits import load_example

POSTGRES_URL = "postgresql://tessera@127.0.0.1:1/never"
"""Never connected to: the missing driver must stop everything before any connection."""


def hide(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    """Make ``package`` and every submodule already imported unimportable for this test."""
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, package, None)


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh SQLite database and no stray ./tessera.toml."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TESSERA_CONFIG", raising=False)
    monkeypatch.setenv("TESSERA_DATABASE_URL", f"sqlite:///{tmp_path}/tessera.db")


@pytest.fixture
def no_redis(environment: None, monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "redis")
    monkeypatch.setenv("TESSERA_SESSION_STORE", "redis")


@pytest.fixture
def no_asyncpg(environment: None, monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "asyncpg")
    monkeypatch.setenv("TESSERA_SESSION_STORE", "sql")
    monkeypatch.setenv("TESSERA_DATABASE_URL", POSTGRES_URL)


def test_the_messages_name_the_extras() -> None:
    assert REDIS_MISSING == (
        "TESSERA_SESSION_STORE=redis needs the Redis driver: pip install 'tessera[redis]'"
    )
    assert sql.POSTGRES_MISSING == (
        "postgresql:// URLs need asyncpg: pip install 'tessera[postgres]'"
    )


@pytest.mark.usefixtures("no_redis")
def test_redis_client() -> None:
    with pytest.raises(ConfigError) as caught:
        redis_client("redis://127.0.0.1:6379/0")
    assert str(caught.value) == REDIS_MISSING


@pytest.mark.usefixtures("no_redis")
async def test_redis_session_store() -> None:
    with pytest.raises(ConfigError, match=r"pip install 'tessera\[redis\]'"):
        await open_session_store(load_settings())


@pytest.mark.usefixtures("no_asyncpg")
def test_postgres_engine() -> None:
    with pytest.raises(ConfigError) as caught:
        sql.create_engine(POSTGRES_URL)
    assert str(caught.value) == sql.POSTGRES_MISSING


@pytest.mark.usefixtures("no_asyncpg")
async def test_postgres_session_store() -> None:
    with pytest.raises(ConfigError, match=r"pip install 'tessera\[postgres\]'"):
        await open_session_store(load_settings())


@pytest.mark.usefixtures("environment")
def test_sqlite_needs_no_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "asyncpg")
    hide(monkeypatch, "redis")
    engine = sql.create_engine("sqlite:///:memory:")
    assert engine.dialect.name == "sqlite"


@pytest.mark.parametrize("store", ["no_redis", "no_asyncpg"])
async def test_server_startup(store: str, request: pytest.FixtureRequest) -> None:
    """The server's lifespan (what ``tessera serve`` runs under uvicorn) stops on the error."""
    request.getfixturevalue(store)
    app = create_app(load_settings())
    with pytest.raises(ConfigError, match=r"pip install 'tessera\["):
        async with app.router.lifespan_context(app):
            pass


@pytest.mark.parametrize("store", ["no_redis", "no_asyncpg"])
async def test_example_startup(store: str, request: pytest.FixtureRequest) -> None:
    """``uvicorn visits:app --app-dir examples`` opens its store in the lifespan."""
    request.getfixturevalue(store)
    example = load_example()
    with pytest.raises(ConfigError, match=r"pip install 'tessera\["):
        async with example.app.router.lifespan_context(example.app):
            pass


def cli_output(store: str, request: pytest.FixtureRequest, *args: str) -> str:
    """What ``tessera ARGS`` prints (stdout and stderr) when it fails for want of a driver."""
    request.getfixturevalue(store)
    request.getfixturevalue("monkeypatch").setenv("COLUMNS", "250")  # rich must not wrap
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 2, result.output  # a setting this installation cannot serve
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return str(result.output)


@pytest.mark.parametrize("command", [("sessions", "list"), ("serve", "--port", "1")])
@pytest.mark.parametrize("store", ["no_redis", "no_asyncpg"])
def test_the_cli_says_it_in_one_line(
    store: str, command: tuple[str, ...], request: pytest.FixtureRequest
) -> None:
    """``tessera serve`` checks before uvicorn starts: no traceback, nothing bound."""
    lines = cli_output(store, request, *command).strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert "pip install 'tessera" in lines[0]


@pytest.mark.parametrize(
    ("store", "extra"), [("no_redis", "tessera[redis]"), ("no_asyncpg", "tessera[postgres]")]
)
def test_sessions_list_names_the_extra(
    store: str, extra: str, request: pytest.FixtureRequest
) -> None:
    assert f"pip install '{extra}'" in cli_output(store, request, "sessions", "list")


@pytest.mark.usefixtures("environment")
def test_require_drivers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check a program can run before it starts serving: imports only, no connection."""
    require_drivers(load_settings(session_store="redis", database_url=POSTGRES_URL))
    hide(monkeypatch, "redis")
    with pytest.raises(ConfigError, match=r"tessera\[redis\]"):
        require_drivers(load_settings(session_store="redis"))
    require_drivers(load_settings(session_store="sql", database_url=POSTGRES_URL))
    hide(monkeypatch, "asyncpg")
    with pytest.raises(ConfigError, match=r"tessera\[postgres\]"):
        require_drivers(load_settings(session_store="sql", database_url=POSTGRES_URL))
    require_drivers(load_settings(session_store="memory"))
