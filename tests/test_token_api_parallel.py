"""Parallel refreshes of one refresh token through the HTTP API, on every store kind: all get
the same successor and nobody is logged out (the grace window, decided atomically by the store).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tessera.config import Settings
from tests.conftest import REDIS_URL
from tests.test_token_api_support import WHOAMI, bearer, login, make_settings, running

PARALLEL = 8


async def refresh_in_parallel(settings: Settings) -> None:
    async with running(settings) as server:
        await server.add_user("alice")
        async with server.client() as client:
            pair = await login(client)

            async def refresh() -> Any:
                return await client.post(
                    "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
                )

            answers = await asyncio.gather(*(refresh() for _ in range(PARALLEL)))
            assert [a.status_code for a in answers] == [200] * PARALLEL, [a.text for a in answers]
            successors = {a.json()["refresh_token"] for a in answers}
            assert len(successors) == 1
            for answer in answers:  # every access token handed out works
                token = answer.json()["access_token"]
                assert (await client.get(WHOAMI, headers=bearer(token))).status_code == 200
            # The family did not fork and was not revoked: the successor refreshes once more.
            (successor,) = successors
            following = await client.post("/api/v1/auth/refresh", json={"refresh_token": successor})
            assert following.status_code == 200
            alice = await server.services.users.store.get_by_username("alice")
            assert alice is not None
            assert len(await server.services.sessions.list_sessions(alice.id)) == 1


@pytest.mark.parametrize("store", ["memory", "sql"])
async def test_parallel_refresh_memory_and_sqlite(tmp_path: Path, store: str) -> None:
    await refresh_in_parallel(make_settings(tmp_path, session_store=store))


async def test_parallel_refresh_postgresql(tmp_path: Path, postgres_database: str) -> None:
    settings = make_settings(tmp_path, session_store="sql", database_url=postgres_database)
    await refresh_in_parallel(settings)


async def test_parallel_refresh_redis(tmp_path: Path, redis_client: Any, redis_prefix: str) -> None:
    settings = make_settings(
        tmp_path, session_store="redis", redis_url=REDIS_URL, redis_prefix=redis_prefix
    )
    try:
        await refresh_in_parallel(settings)
        # Everything the server wrote is under the test's own prefix.
        assert [key async for key in redis_client.scan_iter(match=f"{redis_prefix}:*")]
    finally:
        keys = [key async for key in redis_client.scan_iter(match=f"{redis_prefix}:*")]
        if keys:
            await redis_client.delete(*keys)
