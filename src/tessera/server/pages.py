"""Server-rendered pages (Jinja2): usable without JavaScript, no external assets.

This module holds what every page shares — rendering with the common context, reading forms
with limits, the redirect-target check, the device label of a User-Agent — and the home page.
The pages themselves live in :mod:`~tessera.server.pages_login`,
:mod:`~tessera.server.pages_account` and :mod:`~tessera.server.pages_consent`.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.templating import Jinja2Templates

from tessera import __version__
from tessera.asgi.auth import current_principal
from tessera.asgi.body_limit import BodyTooLarge
from tessera.asgi.consent import request_cookies
from tessera.clock import to_datetime
from tessera.csrf import PRESESSION_COOKIE, PreSession, binding_for
from tessera.errors import InvalidInput
from tessera.server.deps import consent_of, services_of, session_of
from tessera.server.services import THEME_COOKIE

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)

PAGE_METHODS: Final = ["GET", "HEAD"]
"""What a page answers: HEAD as GET without the body (RFC 9110 §9.3.2), for link checkers and
uptime probes; FastAPI, unlike Starlette's Route, does not add it to a GET route."""

THEMES: Final = ("light", "dark")
MAX_FIELD_CHARS: Final = 4096
"""Default cap on one form field; pages name tighter caps for the fields they read."""
MAX_FORM_FIELDS: Final = 32
MAX_NEXT_CHARS: Final = 2048


class UnsupportedForm(InvalidInput):
    """The request body is not an HTML form (urlencoded or multipart)."""

    code = "unsupported_media_type"
    http_status = 415


def when(ts: float | None) -> str:
    """A clock reading as shown on pages: minutes, UTC (no JavaScript to localise it)."""
    return "—" if ts is None else to_datetime(ts).strftime("%Y-%m-%d %H:%M UTC")


templates.env.filters["when"] = when


def request_cookie(request: Request, name: str) -> str | None:
    """One request cookie through Tessera's parser (total and capped, unlike ad-hoc splits)."""
    return request_cookies(request.scope).get(name)


def theme_of(request: Request) -> str:
    """The visitor's colour theme from the theme cookie; light when absent or garbled."""
    value = request_cookie(request, services_of(request).cookie_name(THEME_COOKIE))
    return value if value in THEMES else "light"


def csrf_binding(request: Request) -> MutableMapping[str, Any]:
    """What this request's CSRF tokens bind to: its session once stored, else the pre-session
    cookie (see :mod:`tessera.csrf`); :func:`send_presession` sets that cookie when needed."""
    name = services_of(request).cookie_name(PRESESSION_COOKIE)
    return binding_for(session_of(request), request_cookie(request, name))


def send_presession(
    request: Request, binding: MutableMapping[str, Any], response: Response
) -> None:
    """Set the pre-session cookie on ``response`` if ``binding`` made its secret just now."""
    if isinstance(binding, PreSession) and (secret := binding.new_secret) is not None:
        services = services_of(request)
        cookie = services.cookie_policy.cookie(services.cookie_name(PRESESSION_COOKIE), secret)
        response.headers.append("set-cookie", cookie.serialize())


def delete_cookie(request: Request, response: Response, base: str) -> str | None:
    """Delete the cookie named ``base`` (before the policy's prefix) if the request carries it;
    its value, or None."""
    services = services_of(request)
    name = services.cookie_name(base)
    value = request_cookie(request, name)
    if value is not None:
        deletion = services.cookie_policy.cookie(name, "").deletion()
        response.headers.append("set-cookie", deletion.serialize())
    return value


def forget_presession(request: Request, response: Response) -> None:
    """Delete the pre-session cookie (at login and logout): its tokens die with it, and the next
    anonymous page starts from a fresh secret."""
    delete_cookie(request, response, PRESESSION_COOKIE)


def page_context(
    request: Request, binding: MutableMapping[str, Any], **extra: Any
) -> dict[str, Any]:
    """What every page needs: the caller, a CSRF token for its forms, the consent banner."""
    services = services_of(request)
    session = session_of(request)
    consent = consent_of(request)
    return {
        "principal": current_principal(request),
        "logged_in": session.is_loaded and session.user_id is not None,
        # A callable, so only pages that render a form make a secret to bind the token to.
        "csrf_token": lambda: services.csrf.token(binding),
        "show_consent_banner": consent is None or not consent.decided,
        "theme": theme_of(request),
        "here": request.url.path,
        "version": __version__,
        **extra,
    }


def render(
    request: Request,
    template: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    binding = csrf_binding(request)
    response = templates.TemplateResponse(
        request, template, page_context(request, binding, **extra), status_code=status_code
    )
    send_presession(request, binding, response)
    response.headers["cache-control"] = "no-store"
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def error_page(request: Request, status: int, code: str, message: str) -> Response:
    """A readable error page for browsers (the JSON API answers JSON instead)."""
    try:
        return render(request, "error.html", status, code=code, message=message, status=status)
    except Exception:  # no session (middleware refused earlier): a plain page still helps
        return HTMLResponse(f"<h1>{status}</h1><p>{code}</p>", status_code=status)


async def read_form(request: Request, limits: dict[str, int] | None = None) -> FormData:
    """The request's form, refused unless it is a small HTML form of plain text fields.

    ``limits`` caps named fields (characters); every other field gets :data:`MAX_FIELD_CHARS`.
    Raises :class:`UnsupportedForm` (415) for another content type and InvalidInput (400) for
    file parts, too many fields, over-long values or a malformed multipart body.
    """
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise UnsupportedForm("send an HTML form (urlencoded or multipart)")
    try:
        form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS, max_part_size=64 * 1024)
    except BodyTooLarge:
        raise  # the server's 413
    except HTTPException as exc:  # starlette's multipart errors: bad boundary, a file part...
        raise InvalidInput(f"malformed form: {exc.detail}") from None
    except ClientDisconnect:
        # Gone before the whole form arrived: nobody reads the answer, but it is a 400, not an
        # unhandled exception (a traceback in the log per hang-up).
        raise InvalidInput("the client went away before the form was complete") from None
    limits = limits or {}
    for name, value in form.multi_items():
        if not isinstance(value, str):
            raise InvalidInput(f"field {name[:32]!r} must be text, not a file")
        if len(value) > limits.get(name, MAX_FIELD_CHARS):
            raise InvalidInput(f"field {name[:32]!r} is too long")
    return form


def text_field(form: FormData, name: str) -> str:
    """A text field of a form checked by :func:`read_form` ("" when absent)."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


def safe_next(raw: str | None) -> str | None:
    """``raw`` when it is a path on this site, else None: no open redirects.

    Only an absolute path of printable ASCII is accepted. ``//host`` and ``/\\host`` are
    network-path references to another host in browsers; control characters (tabs, newlines)
    are stripped by browsers, so ``/\\t/evil`` would become ``//evil``; any backslash is
    refused because browsers read it as a slash.
    """
    if not raw or len(raw) > MAX_NEXT_CHARS:
        return None
    if not raw.startswith("/") or raw.startswith("//"):
        return None
    if any(not 0x20 < ord(c) < 0x7F for c in raw) or "\\" in raw:
        return None
    return raw


def login_url(next_path: str) -> str:
    """The login page that comes back to ``next_path`` (a path :func:`safe_next` accepted)."""
    return "/login?" + urlencode({"next": next_path})


_BROWSERS: Final = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("HeadlessChrome/", "Headless Chrome"),
    ("Chromium/", "Chromium"),
    ("Chrome/", "Chrome"),
    ("CriOS/", "Chrome"),
    ("Safari/", "Safari"),
    ("curl/", "curl"),
    ("python-httpx/", "Python httpx"),
    ("python-requests/", "Python requests"),
)
_SYSTEMS: Final = (
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("CrOS", "ChromeOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Macintosh", "macOS"),
    ("Linux", "Linux"),
)
_APP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,31}")


def device_label(user_agent: str | None) -> str:
    """A short readable device name ("Firefox on Linux") from a User-Agent; never raises.

    A heuristic on purpose: the full string is kept with the session and shown on hover; the
    label only has to let a person recognise their own devices.
    """
    if not user_agent:
        return "Unknown device"
    if "/" not in user_agent:
        # No product token: a device name an app chose ("Alice's iPhone"), shown whole, but
        # never a control character (an admin's terminal would obey an escape sequence).
        name = " ".join("".join(c for c in user_agent if c.isprintable()).split())[:40]
        return name or "Unknown device"
    browser = next((name for marker, name in _BROWSERS if marker in user_agent), None)
    system = next((name for marker, name in _SYSTEMS if marker in user_agent), None)
    if browser and system:
        return f"{browser} on {system}"
    if browser or system:
        return str(browser or system)
    app = _APP_NAME.match(user_agent)
    return app.group(0) if app else "Unknown device"


templates.env.filters["device"] = device_label


@router.api_route("/", methods=PAGE_METHODS)
async def home(request: Request) -> Response:
    return render(request, "home.html")
