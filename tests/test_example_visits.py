"""examples/visits.py counts 1, 2, 3 with each session store, through its own lifespan."""

from __future__ import annotations

import importlib.util
import secrets
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tessera.sessions import hash_session_id
from tests.conftest import REDIS_URL

EXAMPLE = Path(__file__).parent.parent / "examples" / "visits.py"


def load_example() -> ModuleType:
    """A fresh import of the example, reading the environment the test set up."""
    spec = importlib.util.spec_from_file_location(f"visits_{secrets.token_hex(4)}", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray ./tessera.toml
    monkeypatch.delenv("TESSERA_CONFIG", raising=False)
    monkeypatch.setenv("TESSERA_DEV", "1")


async def count_three(example: ModuleType) -> list[int]:
    app = example.app
    counts = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            for _ in range(3):
                response = await c.get("/visits")
                assert response.status_code == 200
                counts.append(response.json()["visits"])
            cookie = c.cookies["session"]  # dev mode: no __Host- prefix, no Secure
        await example.manager.store.delete(hash_session_id(cookie))  # leave nothing behind
    return counts


@pytest.mark.usefixtures("environment")
async def test_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_SESSION_STORE", "memory")
    assert await count_three(load_example()) == [1, 2, 3]


@pytest.mark.usefixtures("environment")
async def test_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_SESSION_STORE", "sql")
    monkeypatch.setenv("TESSERA_DATABASE_URL", f"sqlite:///{tmp_path}/visits.db")
    assert await count_three(load_example()) == [1, 2, 3]


@pytest.mark.usefixtures("environment")
async def test_postgres(postgres_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_SESSION_STORE", "sql")
    monkeypatch.setenv("TESSERA_DATABASE_URL", postgres_database)
    assert await count_three(load_example()) == [1, 2, 3]


@pytest.mark.usefixtures("environment")
async def test_redis(redis_client: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """The redis_client fixture fails the test when Redis is down."""
    monkeypatch.setenv("TESSERA_SESSION_STORE", "redis")
    monkeypatch.setenv("TESSERA_REDIS_URL", REDIS_URL)
    assert await count_three(load_example()) == [1, 2, 3]


@pytest.mark.usefixtures("environment")
async def test_without_dev_the_cookie_is_secure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_SESSION_STORE", "memory")
    monkeypatch.setenv("TESSERA_DEV", "0")
    example = load_example()
    async with example.app.router.lifespan_context(example.app):
        transport = httpx.ASGITransport(app=example.app)
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as c:
            response = await c.get("/visits")
    assert response.headers["set-cookie"].startswith("__Host-session=")
    assert "Secure" in response.headers["set-cookie"]


def test_the_readme_shows_the_example_as_it_is() -> None:
    """The README's library snippet is the example's code, so copying it gives the tested app
    (with the store the settings name), not a sketch that silently keeps memory sessions."""
    readme = (EXAMPLE.parent.parent / "README.md").read_text()
    library = readme.split("## Using the library", 1)[1]
    snippet = library.split("```python\n", 1)[1].split("```", 1)[0]
    code = (
        EXAMPLE.read_text()
        .split('"""\n', 1)[1]
        .replace("from __future__ import annotations\n\n", "")
    )
    assert snippet.strip() == code.strip()


def test_the_example_stays_short() -> None:
    """The README's project layout calls it a visit counter in 40 lines."""
    assert len(EXAMPLE.read_text().splitlines()) <= 40
