"""Assembly of the Tessera server: settings in, an ASGI app out.

The server is a FastAPI app (Starlette underneath) so that the JSON API is described by the
OpenAPI schema at ``/openapi.json`` without a second source of truth; pages are ordinary routes
kept out of the schema. Stores open in the lifespan, so importing or building the app costs
nothing and touches no database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.staticfiles import StaticFiles

from tessera import __version__
from tessera.asgi.auth import AuthError
from tessera.asgi.body_limit import BodyLimit
from tessera.clock import SYSTEM_CLOCK, Clock
from tessera.config import Settings
from tessera.errors import TesseraError
from tessera.identity.passwords import PasswordHasher
from tessera.server import api, pages, pages_account, pages_consent, pages_login, token_api
from tessera.server.health import healthz
from tessera.server.services import open_services
from tessera.server.stack import ServicesStack

HERE = Path(__file__).parent


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "") and not request.url.path.startswith(
        ("/api/", "/oauth/")
    )


async def tessera_error(request: Request, exc: Exception) -> Response:
    """Every Tessera error as ``{"error": code, ...}`` with the status the error names."""
    assert isinstance(exc, TesseraError)
    headers = {"cache-control": "no-store"}
    if exc.http_status == 401:
        headers["www-authenticate"] = 'Bearer realm="tessera"'
    if _wants_html(request):
        return pages.error_page(request, exc.http_status, exc.code, exc.message)
    return JSONResponse(exc.to_dict(), status_code=exc.http_status, headers=headers)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette/FastAPI HTTP errors in the same shape, with a code for each status."""
    assert isinstance(exc, StarletteHTTPException)
    code = getattr(exc, "code", None) or {
        400: "invalid_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        413: "body_too_large",
        415: "unsupported_media_type",
        429: "too_many_requests",
    }.get(exc.status_code, "http_error")
    if _wants_html(request) and exc.status_code != 401:
        return pages.error_page(request, exc.status_code, code, str(exc.detail))
    return JSONResponse(
        {"error": code, "error_description": str(exc.detail)},
        status_code=exc.status_code,
        headers=dict(exc.headers or {}),
    )


async def validation_error(request: Request, exc: Exception) -> Response:
    """Malformed JSON, forms or query strings: 400 ``invalid_request`` naming the fields."""
    assert isinstance(exc, RequestValidationError)
    fields = [
        {
            "field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"),
            "problem": str(err.get("msg", "")),
        }
        for err in exc.errors()
    ]
    description = "; ".join(f"{f['field']}: {f['problem']}" for f in fields) or "invalid request"
    if _wants_html(request):
        return pages.error_page(request, 400, "invalid_request", description)
    return JSONResponse(
        {"error": "invalid_request", "error_description": description, "fields": fields},
        status_code=400,
    )


def create_app(
    settings: Settings,
    *,
    clock: Clock = SYSTEM_CLOCK,
    hasher: PasswordHasher | None = None,
) -> FastAPI:
    """The server app. ``hasher`` lets tests use a cheaper argon2 profile (never the network)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await open_services(settings, clock, hasher=hasher)
        app.state.services = services
        try:
            yield
        finally:
            await services.close()

    app = FastAPI(
        title="Tessera",
        version=__version__,
        description="Login service: cookie sessions for browsers, tokens for apps.",
        lifespan=lifespan,
        # BodyLimit outermost: nothing reads a body past the cap (FastAPI reads them whole).
        middleware=[Middleware(BodyLimit), Middleware(ServicesStack)],
        # FastAPI's docs pages load their scripts from a CDN; the server serves nothing external.
        docs_url=None,
        redoc_url=None,
    )
    app.add_exception_handler(TesseraError, tessera_error)
    app.add_exception_handler(AuthError, http_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_api_route("/healthz", healthz, methods=["GET", "HEAD"], include_in_schema=False)
    app.include_router(pages.router)
    app.include_router(pages_login.router)
    app.include_router(pages_account.router)
    app.include_router(pages_consent.router)
    app.include_router(api.router)
    app.include_router(token_api.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return app
