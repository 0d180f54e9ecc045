"""Fail closed: when the session store goes away, requests that need it get a quick 503."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest

from tessera.server.services import Services
from tests.test_token_api_support import make_settings, running


async def _cut_redis(services: Services) -> None:
    """Point the server's Redis client at a closed port, as if Redis had just died."""
    store = services.sessions.store
    client = store._client  # type: ignore[attr-defined]
    client.connection_pool.connection_kwargs["port"] = 1
    await client.connection_pool.disconnect()
    client.connection_pool.reset()  # forget the pooled connections, which keep their own port


@pytest.mark.usefixtures("redis_client")
async def test_redis_going_down_gives_503_not_anonymous_access(
    tmp_path: Path, redis_prefix: str
) -> None:
    settings = make_settings(tmp_path, session_store="redis", redis_prefix=redis_prefix)
    async with running(settings) as server, server.client() as client:
        assert (await client.get("/healthz")).status_code == 200
        await _cut_redis(server.services)
        started = time.monotonic()
        health = await client.get("/healthz")
        cookie = {"cookie": f"session={secrets.token_urlsafe(32)}"}
        me = await client.get("/api/v1/me", headers=cookie)
        elapsed = time.monotonic() - started
    assert health.status_code == 503
    assert "sessions" in health.json()["failing"]
    assert me.status_code == 503
    assert me.json()["error"] == "store_unavailable"
    assert elapsed < 3, "a down Redis must fail fast, not hang each request"
