"""ConsentMiddleware on a small Starlette app, driven through httpx.ASGITransport."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tessera.asgi.consent import ConsentMiddleware, Message, Receive, Scope, Send
from tessera.clock import FakeClock
from tessera.consent import (
    Category,
    ConsentManager,
    ConsentState,
    CookieDeclaration,
    CookieRegistry,
)
from tessera.cookies import CookieBudget, CookiePolicy
from tessera.keys import HmacKey
from tessera.metrics import Metrics

KEY = HmacKey("k1", b"k" * 32)
REGISTRY = CookieRegistry(
    [
        CookieDeclaration("consent", Category.ESSENTIAL, "Your cookie choices."),
        CookieDeclaration("session", Category.ESSENTIAL, "Keeps you signed in."),
        CookieDeclaration("theme", Category.PREFERENCES, "Light or dark."),
        CookieDeclaration("_stats", Category.ANALYTICS, "Visit counts."),
    ]
)


async def page(request: Request) -> Response:
    """Sets one cookie of each kind, plus an undeclared one, the way apps do."""
    state: ConsentState = request.scope["tessera.consent"]
    response = JSONResponse(
        {"decided": state.decided, "granted": sorted(c.value for c in state.granted)}
    )
    response.set_cookie("__Host-session", "s1", secure=True, httponly=True)
    response.set_cookie("theme", "dark")
    response.set_cookie("_stats", "42")
    response.set_cookie("tracker", "t")
    response.delete_cookie("legacy")
    return response


async def choose(request: Request) -> Response:
    """A consent endpoint: grants what the query lists, using the manager's helper."""
    manager: ConsentManager = request.scope["tessera.consent_manager"]
    granted = [Category(c) for c in request.query_params.getlist("grant")]
    response = Response(status_code=204)
    for cookie in manager.consent_response_cookies(
        request.scope["tessera.consent"], manager.cookie.decide(granted), request.cookies
    ):
        response.headers.append("set-cookie", cookie.serialize())
    if granted:
        response.set_cookie("_stats", "first-visit")  # allowed by the decision being made
    return response


def build(metrics: Metrics, budget: CookieBudget | None = None) -> ConsentMiddleware:
    app = Starlette(
        routes=[
            Route("/", page),
            Route("/consent", choose, methods=["POST"]),
        ]
    )
    return ConsentMiddleware(
        app,
        registry=REGISTRY,
        keys=[KEY],
        policy=CookiePolicy(),
        clock=FakeClock(),
        metrics=metrics,
        budget=budget,
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build(Metrics()))
    async with httpx.AsyncClient(transport=transport, base_url="https://example.org") as c:
        yield c


def set_cookie_names(response: httpx.Response) -> list[str]:
    return [h.split("=", 1)[0] for h in response.headers.get_list("set-cookie")]


async def test_undecided_visitor_gets_essential_cookies_and_deletions_only(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/")
    assert response.json() == {"decided": False, "granted": ["essential"]}
    assert set_cookie_names(response) == ["__Host-session", "legacy"]
    assert response.headers["content-type"] == "application/json"


async def test_choice_is_remembered_and_applied(client: httpx.AsyncClient) -> None:
    decided = await client.post("/consent?grant=preferences")
    assert set_cookie_names(decided) == ["__Host-consent"]
    response = await client.get("/")
    assert response.json() == {"decided": True, "granted": ["essential", "preferences"]}
    assert set_cookie_names(response) == ["__Host-session", "theme", "legacy"]


async def test_response_setting_a_decision_is_filtered_by_it(client: httpx.AsyncClient) -> None:
    response = await client.post("/consent?grant=analytics")
    assert set_cookie_names(response) == ["__Host-consent", "_stats"]


async def test_withdrawal_deletes_cookies_of_the_category(client: httpx.AsyncClient) -> None:
    await client.post("/consent?grant=analytics&grant=preferences")
    await client.get("/")
    assert client.cookies.get("_stats") == "42"
    response = await client.post("/consent?grant=preferences")
    stats = [h for h in response.headers.get_list("set-cookie") if h.startswith("_stats=")]
    assert stats == [
        "_stats=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; Secure; "
        "HttpOnly; SameSite=Lax"
    ]
    assert client.cookies.get("_stats") is None
    assert client.cookies.get("theme") == "dark"


async def test_forged_consent_cookie_is_ignored(client: httpx.AsyncClient) -> None:
    client.cookies.set("__Host-consent", "eyJ2IjoxfQ.AAAAAAAAAAA.k1.AAAA", domain="example.org")
    response = await client.get("/")
    assert response.json()["decided"] is False
    assert "_stats" not in set_cookie_names(response)


async def test_metrics_and_budget_are_reported() -> None:
    metrics = Metrics()
    app = build(metrics, budget=CookieBudget(1, metrics=metrics))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://example.org") as c:
        await c.get("/", headers={"cookie": "a=1; b=2"})
    assert metrics.get("consent.cookie_dropped") == 3
    assert metrics.get("consent.cookie_undeclared") == 1
    assert metrics.get("cookies.budget_exceeded") == 1


async def test_websocket_accept_set_cookies_are_filtered_and_lifespan_passes() -> None:
    """Pure ASGI, no network: websocket.accept headers are filtered like a response start."""
    seen_types: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen_types.append(scope["type"])
        if scope["type"] == "websocket":
            await send(
                {
                    "type": "websocket.accept",
                    "headers": [(b"set-cookie", b"_stats=1"), (b"set-cookie", b"__Host-session=s")],
                }
            )

    middleware = ConsentMiddleware(app, registry=REGISTRY, keys=[KEY])
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await middleware({"type": "websocket", "headers": [], "path": "/ws"}, receive, send)
    await middleware({"type": "lifespan"}, receive, send)
    assert sent == [{"type": "websocket.accept", "headers": [(b"set-cookie", b"__Host-session=s")]}]
    assert seen_types == ["websocket", "lifespan"]
