"""Server-rendered pages (Jinja2): usable without JavaScript, no external assets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.templating import Jinja2Templates

from tessera import __version__
from tessera.asgi.auth import current_principal
from tessera.server.deps import consent_of, services_of, session_of

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)


def page_context(request: Request, **extra: Any) -> dict[str, Any]:
    """What every page needs: the caller, a CSRF token for its forms, the consent banner."""
    services = services_of(request)
    session = session_of(request)
    consent = consent_of(request)
    return {
        "principal": current_principal(request),
        # A callable, so only pages that render a form create a session to bind the token to.
        "csrf_token": lambda: services.csrf.token(session),
        "show_consent_banner": consent is None or not consent.decided,
        "version": __version__,
        **extra,
    }


def render(request: Request, template: str, status_code: int = 200, **extra: Any) -> Response:
    response = templates.TemplateResponse(
        request, template, page_context(request, **extra), status_code=status_code
    )
    response.headers["cache-control"] = "no-store"
    return response


def error_page(request: Request, status: int, code: str, message: str) -> Response:
    """A readable error page for browsers (the JSON API answers JSON instead)."""
    try:
        return render(request, "error.html", status, code=code, message=message, status=status)
    except Exception:  # no session (middleware refused earlier): a plain page still helps
        return HTMLResponse(f"<h1>{status}</h1><p>{code}</p>", status_code=status)


@router.get("/")
async def home(request: Request) -> Response:
    return render(request, "home.html")
