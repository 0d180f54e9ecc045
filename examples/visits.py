"""A visit counter kept in a server-side session: ``uvicorn visits:app --app-dir examples``.

Store: TESSERA_SESSION_STORE=memory|sql|redis, TESSERA_DATABASE_URL, TESSERA_REDIS_URL (redis
and postgresql:// need the ``redis``/``postgres`` extra). Chromium, Firefox and curl send the Secure
cookie over plain http to localhost and 127.0.0.1 only: elsewhere, or for httpx, set TESSERA_DEV=1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from tessera.asgi.sessions import SessionMiddleware
from tessera.config import load_settings
from tessera.sessions import SessionManager
from tessera.stores.factory import open_session_store
from tessera.stores.memory_sessions import MemorySessionStore

settings = load_settings()
# The configured store needs async setup (schema, connections): it takes over at startup.
manager = SessionManager.from_settings(settings, MemorySessionStore())


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    manager.store = await open_session_store(settings)
    yield
    await manager.store.close()


app = FastAPI(lifespan=lifespan)
app.add_middleware(SessionMiddleware.from_settings, settings=settings, manager=manager)


@app.get("/visits")
async def visits(request: Request) -> dict[str, int]:
    request.session["visits"] = request.session.get("visits", 0) + 1
    return {"visits": request.session["visits"]}
