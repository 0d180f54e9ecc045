"""Assembly of the Tessera server: settings in, a Starlette app out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from tessera import __version__
from tessera.clock import SYSTEM_CLOCK, Clock
from tessera.config import Settings
from tessera.server.health import healthz
from tessera.server.services import Services
from tessera.stores import sql

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


async def open_services(settings: Settings, clock: Clock) -> Services:
    """Open the database (creating or migrating its schema) and everything built on it."""
    engine = sql.create_engine(settings.database_url)
    await sql.ensure_schema(engine)
    services = Services(settings=settings, clock=clock, engine=engine)
    services.health_checks["database"] = lambda: sql.ping(engine)
    return services


async def home(request: Request) -> Response:
    return templates.TemplateResponse(request, "home.html", {"version": __version__})


def create_app(settings: Settings, *, clock: Clock = SYSTEM_CLOCK) -> Starlette:
    """The server app. Stores open in the lifespan, so importing this costs nothing."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = await open_services(settings, clock)
        app.state.services = services
        try:
            yield
        finally:
            await services.close()

    routes = [
        Route("/", home, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
