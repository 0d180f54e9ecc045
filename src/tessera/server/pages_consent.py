"""Cookie consent pages and the preferences demo.

Choices are saved through the consent manager that :class:`~tessera.asgi.consent.
ConsentMiddleware` puts in the scope: the response carries the new signed consent cookie and a
deletion for every cookie the new choice refuses. The preferences page sets its theme and
visit-counter cookies unconditionally through the cookie layer and lets the middleware drop
what the visitor did not agree to, so enforcement is visible rather than re-implemented here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tessera.asgi.consent import SCOPE_MANAGER, request_cookies
from tessera.consent import Category, ConsentManager, ConsentState
from tessera.cookies import Cookie
from tessera.errors import InvalidInput
from tessera.server.deps import consent_of, services_of
from tessera.server.pages import (
    PAGE_METHODS,
    THEMES,
    read_form,
    render,
    request_cookie,
    safe_next,
    text_field,
)
from tessera.server.services import THEME_COOKIE, VISITS_COOKIE

router = APIRouter(include_in_schema=False)

PREFERENCE_MAX_AGE: Final = 365 * 86400
_COUNT = re.compile(r"[0-9]{1,9}")
DESCRIPTIONS: Final = {
    Category.ESSENTIAL: "Needed for the site to work: your login, security and these choices. "
    "Always on.",
    Category.PREFERENCES: "Remember settings you chose, such as the colour theme.",
    Category.ANALYTICS: "Count visits so we can see how the site is used.",
    Category.ADVERTISING: "Show advertising based on your visits. This site has none.",
    Category.SOCIAL: "Let social networks embed their buttons. This site has none.",
    Category.MULTIMEDIA: "Let embedded videos and players work. This site has none.",
}


def _manager(request: Request) -> ConsentManager:
    manager = request.scope.get(SCOPE_MANAGER)
    if not isinstance(manager, ConsentManager):
        raise RuntimeError("ConsentMiddleware is not installed")
    return manager


def current_consent(request: Request) -> ConsentState:
    """The visitor's consent as the middleware read it (undecided when they never chose)."""
    state = consent_of(request)
    if state is None:
        state = _manager(request).cookie.read(request_cookies(request.scope))
    return state


def parse_categories(names: Iterable[str]) -> frozenset[Category]:
    """Category names from a form or JSON; InvalidInput naming the first unknown one."""
    granted: set[Category] = set()
    for name in names:
        try:
            granted.add(Category(name))
        except ValueError:
            raise InvalidInput(f"unknown consent category {name[:32]!r}") from None
    return frozenset(granted)


def consent_cookies(
    request: Request, granted: Iterable[Category]
) -> tuple[ConsentState, list[Cookie]]:
    """The new decision, and what to set: the consent cookie plus deletions it requires."""
    manager = _manager(request)
    new = manager.cookie.decide(granted)
    cookies = manager.consent_response_cookies(
        current_consent(request), new, request_cookies(request.scope)
    )
    return new, cookies


def categories_view(request: Request, consent: ConsentState) -> list[dict[str, object]]:
    """Every category with its declared cookies (names as set) and the visitor's choice."""
    services = services_of(request)
    return [
        {
            "name": category.value,
            "label": category.value.capitalize(),
            "description": DESCRIPTIONS[category],
            "required": category is Category.ESSENTIAL,
            "granted": consent.allows(category),
            "cookies": [
                {"name": services.cookie_name(d.name), "purpose": d.purpose}
                for d in services.consent_registry.in_category(category)
            ],
        }
        for category in Category
    ]


@router.api_route("/consent", methods=PAGE_METHODS)
async def consent_page(request: Request) -> Response:
    consent = current_consent(request)
    return render(
        request,
        "consent.html",
        categories=categories_view(request, consent),
        decided=consent.decided,
        saved=bool(request.query_params.get("saved")),
        # The page itself is the banner's "Customise": showing both would be noise.
        show_consent_banner=False,
    )


@router.post("/consent")
async def consent_submit(request: Request) -> Response:
    """Save a choice: ``choice`` = all | essential | custom (with ``granted`` fields)."""
    form = await read_form(request, {"choice": 16, "granted": 32, "next": 2048})
    choice = text_field(form, "choice")
    if choice == "all":
        granted = frozenset(Category)
    elif choice == "essential":
        granted = frozenset()
    elif choice == "custom":
        granted = parse_categories(v for v in form.getlist("granted") if isinstance(v, str))
    else:
        raise InvalidInput("choice must be all, essential or custom")
    _, cookies = consent_cookies(request, granted)
    response = RedirectResponse(
        safe_next(text_field(form, "next")) or "/consent?saved=1", status_code=303
    )
    for cookie in cookies:
        response.headers.append("set-cookie", cookie.serialize())
    return response


def _preferences_page(
    request: Request,
    *,
    visits: int | None,
    theme: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    consent = current_consent(request)
    extra: dict[str, Any] = {"theme": theme} if theme is not None else {}
    return render(
        request,
        "preferences.html",
        status,
        visits=visits,
        analytics=consent.allows(Category.ANALYTICS),
        preferences_allowed=consent.allows(Category.PREFERENCES),
        saved=bool(request.query_params.get("saved")),
        notice=notice,
        **extra,
    )


@router.api_route("/preferences", methods=PAGE_METHODS)
async def preferences(request: Request) -> Response:
    """Count the visit in the analytics cookie; show the count only with analytics consent."""
    services = services_of(request)
    name = services.cookie_name(VISITS_COOKIE)
    raw = request_cookie(request, name)
    count = (int(raw) if raw is not None and _COUNT.fullmatch(raw) else 0) + 1
    consent = current_consent(request)
    response = _preferences_page(
        request, visits=count if consent.allows(Category.ANALYTICS) else None
    )
    # Set unconditionally: ConsentMiddleware drops it when analytics is not granted.
    cookie = services.cookie_policy.cookie(name, str(count), max_age=PREFERENCE_MAX_AGE)
    response.headers.append("set-cookie", cookie.serialize())
    return response


@router.post("/preferences")
async def preferences_submit(request: Request) -> Response:
    """Store the theme; say so when the visitor's consent keeps it from being stored."""
    services = services_of(request)
    form = await read_form(request, {"theme": 16})
    theme = text_field(form, "theme")
    if theme not in THEMES:
        raise InvalidInput("theme must be light or dark")
    cookie = services.cookie_policy.cookie(
        services.cookie_name(THEME_COOKIE), theme, max_age=PREFERENCE_MAX_AGE
    )
    if current_consent(request).allows(Category.PREFERENCES):
        response: Response = RedirectResponse("/preferences?saved=1", status_code=303)
    else:
        response = _preferences_page(
            request,
            visits=None,
            theme=theme,
            notice="Your theme applies to this page only: it could not be stored, because "
            "you have not allowed preference cookies.",
        )
    response.headers.append("set-cookie", cookie.serialize())
    return response
