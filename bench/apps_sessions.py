"""The app every session benchmark variant serves: one endpoint that reads and writes a value.

``BENCH_VARIANT`` picks what keeps the value: ``bare`` (a module-level dict, no sessions at all),
``empty`` (the same dict behind a pure-ASGI middleware that does nothing else: what any
middleware layer costs, the floor under every session variant), ``starlette`` (Starlette's
signed-cookie SessionMiddleware), ``memory`` / ``sqlite`` / ``postgres`` / ``redis``
(Tessera's SessionMiddleware with that store), or ``ideal-memory`` / ``ideal-redis``
(calibration, not sessions: ``ideal_sessions.py``, only the irreducible work of a server-side
session in a dict or in Redis, the ceiling any session layer can reach). The endpoint code is
the same for all, so the difference measured is the session machinery alone. Every variant freezes
its start-up heap out of the garbage collector, as ``tessera serve`` does (``BENCH_GC_FREEZE=0``
turns that off).
"""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

VARIANT = os.environ.get("BENCH_VARIANT", "bare")
_bare: dict[str, Any] = {}


async def hit(request: Request) -> JSONResponse:
    state = _bare if VARIANT in ("bare", "empty") else request.session
    state["n"] = state.get("n", 0) + 1
    return JSONResponse({"n": state["n"]})


async def ready(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def _tessera() -> tuple[list[Middleware], Any]:
    from tessera.asgi.sessions import SessionMiddleware
    from tessera.config import Settings
    from tessera.sessions import SessionManager
    from tessera.stores.factory import open_session_store
    from tessera.stores.memory_sessions import MemorySessionStore

    kind = {"memory": "memory", "sqlite": "sql", "postgres": "sql", "redis": "redis"}[VARIANT]
    settings = Settings(
        dev=True,
        session_store=kind,
        database_url=os.environ.get("BENCH_DATABASE_URL", "sqlite:///bench-sessions.db"),
        redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        session_memory_max=2_000_000,
    )
    manager = SessionManager.from_settings(settings, MemorySessionStore())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        manager.store = await open_session_store(settings)
        yield
        await manager.store.close()

    return [Middleware(SessionMiddleware, manager=manager, dev=True)], lifespan


def _ideal() -> tuple[list[Middleware], Any]:
    from ideal_sessions import IdealMemorySessions, IdealRedisSessions

    if VARIANT == "ideal-memory":
        return [Middleware(IdealMemorySessions)], None
    import redis.asyncio as aioredis

    from tessera.stores.redis_autopipeline import AutoPipeline

    client = aioredis.Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    batch = AutoPipeline(client)  # binds to the server's loop on its first command

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await batch.close()
        await client.aclose()

    return [Middleware(IdealRedisSessions, batch=batch)], lifespan


middleware: list[Middleware] = []
lifespan: Any = None
if VARIANT == "starlette":
    from starlette.middleware.sessions import SessionMiddleware as StarletteSessions

    middleware = [Middleware(StarletteSessions, secret_key="bench-" * 8, https_only=False)]
elif VARIANT == "empty":

    class _Empty:
        """A middleware that only passes the request on, as the thinnest pure-ASGI one does."""

        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await self.app(scope, receive, send)

    middleware = [Middleware(_Empty)]
elif VARIANT in ("ideal-memory", "ideal-redis"):
    middleware, lifespan = _ideal()
elif VARIANT != "bare":
    middleware, lifespan = _tessera()

app = Starlette(
    routes=[Route("/hit", hit), Route("/ready", ready)],
    middleware=middleware,
    lifespan=lifespan,
)

if os.environ.get("BENCH_GC_FREEZE", "1") == "1":
    # As `tessera serve` does, for every variant alike: what is alive after start-up lives as
    # long as the process, so the collector's full passes skip it (BENCH_GC_FREEZE=0: not).
    gc.freeze()
