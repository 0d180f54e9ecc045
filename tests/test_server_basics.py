"""The server's skeleton: home page, health check, and the serve command's banner."""

from __future__ import annotations

import httpx
import pytest
from typer.testing import CliRunner

from tessera.cli import app as cli_app
from tessera.config import Settings
from tessera.errors import StoreUnavailable
from tessera.server.app import create_app
from tessera.server.services import Services


@pytest.fixture
def settings(tmp_path: object) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path}/t.db", session_store="sql")


async def test_healthz_ok_and_home_page(settings: Settings) -> None:
    """A fresh server on SQLite is healthy and serves a home page."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
            health = await client.get("/healthz")
            assert health.status_code == 200
            assert health.json() == {"status": "ok"}
            home = await client.get("/")
            assert home.status_code == 200
            assert "Tessera" in home.text


async def test_healthz_names_the_failing_part(settings: Settings) -> None:
    """When a store does not answer, /healthz is 503 and says which one."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        services: Services = app.state.services

        async def down() -> None:
            raise StoreUnavailable("redis", "connection refused")

        services.health_checks["sessions"] = down
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
            health = await client.get("/healthz")
    assert health.status_code == 503
    assert health.json() == {
        "status": "unavailable",
        "failing": {"sessions": "redis store unavailable: connection refused"},
    }


def test_serve_rejects_bad_settings_with_the_field_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo in the environment is a one-line error naming the variable, not a traceback."""
    monkeypatch.setenv("TESSERA_SESSION_STORE", "mongodb")
    result = CliRunner().invoke(cli_app, ["serve"])
    assert result.exit_code == 2
    assert "TESSERA_SESSION_STORE" in result.output


def test_tessera_serve_starts_and_answers(tmp_path: object) -> None:
    """The README's server command really starts uvicorn, prints its URL and database path."""
    import os
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "TESSERA_PORT": str(port)}
    env.pop("TESSERA_DATABASE_URL", None)
    exe = os.path.join(os.path.dirname(sys.executable), "tessera")
    proc = subprocess.Popen(  # noqa: S603 - our own entry point
        [exe, "serve"],
        cwd=str(tmp_path),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        assert response.json() == {"status": "ok"}
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=10)
    assert f"http://127.0.0.1:{port}/" in output
    assert f"{tmp_path}/tessera.db" in output


async def test_cookie_budget_warns_when_a_site_would_hold_too_many(
    tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    """TESSERA_COOKIE_BUDGET reaches the response layer: over it, a warning and a counter."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/t.db", session_store="memory", cookie_budget=2
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        transport = httpx.ASGITransport(app=app)
        cookies = "; ".join(f"c{i}=v" for i in range(5))
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
            # The login page starts a session: one more cookie on a site already holding five.
            response = await client.get("/login", headers={"cookie": cookies})
        assert response.status_code == 200
        assert services.metrics.get("cookies.budget_exceeded") >= 1
    assert any("cookie" in record.getMessage().lower() for record in caplog.records)
