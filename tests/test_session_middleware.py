"""SessionMiddleware: laziness, Set-Cookie only when needed, Vary, 5xx, failures, frameworks."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from tessera.asgi.sessions import SessionMiddleware, get_session, load_session
from tessera.clock import FakeClock
from tessera.config import Settings
from tessera.cookies import CookiePolicy
from tessera.errors import SessionNotLoaded, StoreUnavailable
from tessera.metrics import Metrics
from tessera.sessions import Session, SessionManager, hash_session_id, new_session_id
from tessera.stores.memory_sessions import MemorySessionStore
from tests.test_session_manager import CountingStore

NAME = "__Host-session"


async def visits(request: Request) -> JSONResponse:
    request.session["visits"] = request.session.get("visits", 0) + 1
    return JSONResponse({"visits": request.session["visits"]})


async def peek(request: Request) -> JSONResponse:
    return JSONResponse({"visits": request.session.get("visits", 0)})


async def nothing(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok", headers={"vary": "Accept-Encoding"})


async def negotiated(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(dict(request.session)), headers={"vary": "Accept-Encoding"})


async def login(request: Request) -> PlainTextResponse:
    session: Any = request.session
    session.login("alice", persistent=request.query_params.get("remember") == "1")
    return PlainTextResponse("in")


async def logout(request: Request) -> PlainTextResponse:
    session: Any = request.session
    session.logout()
    return PlainTextResponse("out")


async def broken(request: Request) -> PlainTextResponse:
    request.session["visits"] = 99
    return PlainTextResponse("oops", status_code=503)


async def huge(request: Request) -> PlainTextResponse:
    request.session["blob"] = "x" * 10_000
    return PlainTextResponse("never")


async def lazy(request: Request) -> JSONResponse:
    session = await load_session(request)
    session["visits"] = session.get("visits", 0) + 1
    return JSONResponse({"visits": session["visits"]})


ROUTES = [
    Route(f"/{f.__name__}", f)
    for f in (visits, peek, nothing, negotiated, login, logout, broken, huge, lazy)
]


class DownStore(CountingStore):
    """A store whose backend is unreachable."""

    async def load(self, id_hash: str, now: float, renewal_interval: float) -> Any:
        raise StoreUnavailable("redis", "ConnectionError")

    async def create(self, record: Any) -> None:
        raise StoreUnavailable("redis", "ConnectionError")


@pytest.fixture
def store() -> CountingStore:
    return CountingStore(MemorySessionStore())


@pytest.fixture
def manager(store: CountingStore, clock: FakeClock) -> SessionManager:
    return SessionManager(store, clock=clock, metrics=Metrics())


def client(manager: SessionManager, **options: Any) -> httpx.AsyncClient:
    app = Starlette(
        routes=ROUTES, middleware=[Middleware(SessionMiddleware, manager=manager, **options)]
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://t")


def cookie_of(response: httpx.Response) -> str:
    (header,) = response.headers.get_list("set-cookie")
    return header.split(";")[0].split("=", 1)[1]


async def test_no_cookie_means_no_store_call(manager: SessionManager, store: CountingStore) -> None:
    async with client(manager) as c:
        response = await c.get("/nothing")
        await c.get("/peek", headers={"cookie": "other=1"})
    assert sum(store.calls.values()) == 0
    assert "set-cookie" not in response.headers
    assert response.headers["vary"] == "Accept-Encoding"


async def test_reading_adds_vary_cookie_but_no_set_cookie(manager: SessionManager) -> None:
    async with client(manager) as c:
        response = await c.get("/peek")
    assert response.headers["vary"] == "Cookie"
    assert "set-cookie" not in response.headers


async def test_unread_session_adds_no_vary(manager: SessionManager) -> None:
    session = await manager.create({"visits": 1})
    async with client(manager) as c:
        response = await c.get("/nothing", headers={"cookie": f"{NAME}={session.secret_id}"})
    assert response.headers.get_list("vary") == ["Accept-Encoding"]


async def test_vary_is_merged_with_the_apps(manager: SessionManager) -> None:
    async with client(manager) as c:
        response = await c.get("/negotiated")
    assert response.headers.get_list("vary") == ["Accept-Encoding, Cookie"]


async def test_new_session_sets_a_secure_host_cookie(manager: SessionManager) -> None:
    async with client(manager) as c:
        response = await c.get("/visits")
    (header,) = response.headers.get_list("set-cookie")
    assert header.startswith(f"{NAME}=")
    assert {"Path=/", "Secure", "HttpOnly", "SameSite=Lax"} <= set(header.split("; "))
    assert "Max-Age" not in header
    assert "Expires" not in header


async def test_visits_count_and_cookie_is_not_resent(
    manager: SessionManager, clock: FakeClock
) -> None:
    async with client(manager) as c:
        first = await c.get("/visits")
        secret = cookie_of(first)
        headers = {"cookie": f"{NAME}={secret}"}
        clock.advance(10)
        second = await c.get("/visits", headers=headers)
        clock.advance(60)
        third = await c.get("/visits", headers=headers)
    assert [r.json()["visits"] for r in (first, second, third)] == [1, 2, 3]
    assert "set-cookie" not in second.headers
    # Renewal came due (the store slid the idle timeout) and still no cookie: it would be the
    # same one, and re-sent after a parallel login it would replace the new cookie.
    assert "set-cookie" not in third.headers


async def test_malformed_cookie_is_no_session_and_never_hits_the_store(
    manager: SessionManager, store: CountingStore
) -> None:
    async with client(manager) as c:
        response = await c.get("/peek", headers={"cookie": f"{NAME}=forged%00;"})
    assert response.status_code == 200
    assert response.json() == {"visits": 0}
    assert store.calls["load"] == 0
    assert manager.metrics.get("sessions.cookie_invalid") == 1
    assert "Max-Age=0" in response.headers["set-cookie"]


async def test_unknown_cookie_gives_a_new_anonymous_session(
    manager: SessionManager, store: CountingStore
) -> None:
    async with client(manager) as c:
        response = await c.get("/visits", headers={"cookie": f"{NAME}={new_session_id()}"})
    assert response.json() == {"visits": 1}
    assert manager.metrics.get("sessions.unknown") == 1
    assert store.calls["create"] == 1
    assert "Max-Age" not in response.headers["set-cookie"]


async def test_5xx_saves_nothing_and_sets_no_cookie(
    manager: SessionManager, store: CountingStore
) -> None:
    async with client(manager) as c:
        response = await c.get("/broken")
    assert response.status_code == 503
    assert "set-cookie" not in response.headers
    assert store.calls["create"] == 0


async def test_store_down_is_a_503_never_anonymous(clock: FakeClock) -> None:
    manager = SessionManager(DownStore(MemorySessionStore()), clock=clock)
    async with client(manager) as c:
        loading = await c.get("/peek", headers={"cookie": f"{NAME}={new_session_id()}"})
        saving = await c.get("/visits")
    for response in (loading, saving):
        assert response.status_code == 503
        assert response.json()["error"] == "store_unavailable"
        assert "set-cookie" not in response.headers


async def test_oversized_session_is_a_500_naming_the_error(
    manager: SessionManager, caplog: pytest.LogCaptureFixture
) -> None:
    async with client(manager) as c:
        response = await c.get("/huge")
    assert response.status_code == 500
    assert response.json()["error"] == "session_too_large"
    assert "budget of 4096 bytes" in caplog.text


async def test_login_rotates_and_the_old_cookie_is_dead(manager: SessionManager) -> None:
    async with client(manager) as c:
        old = cookie_of(await c.get("/visits"))
        response = await c.get("/login", headers={"cookie": f"{NAME}={old}"})
        new = cookie_of(response)
        stale = await c.get("/peek", headers={"cookie": f"{NAME}={old}"})
        fresh = await c.get("/peek", headers={"cookie": f"{NAME}={new}"})
    assert new != old
    assert stale.json() == {"visits": 0}
    assert fresh.json() == {"visits": 1}


async def test_remember_me_login_sets_a_persistent_cookie(manager: SessionManager) -> None:
    async with client(manager) as c:
        response = await c.get("/login?remember=1")
    assert "Max-Age=43200" in response.headers["set-cookie"]


async def test_logout_deletes_session_and_cookie(manager: SessionManager) -> None:
    async with client(manager) as c:
        secret = cookie_of(await c.get("/visits"))
        response = await c.get("/logout", headers={"cookie": f"{NAME}={secret}"})
    assert "Max-Age=0" in response.headers["set-cookie"]
    assert await manager.load(secret) is None


async def test_session_ended_elsewhere_is_not_resurrected(manager: SessionManager) -> None:
    async with client(manager) as c:
        secret = cookie_of(await c.get("/visits"))

        async def revoke_midway(request: Request) -> PlainTextResponse:
            request.session["visits"] = 50
            await manager.store.delete(hash_session_id(secret))
            return PlainTextResponse("late")

        app = Starlette(
            routes=[Route("/", revoke_midway)],
            middleware=[Middleware(SessionMiddleware, manager=manager)],
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as late:
            response = await late.get("/", headers={"cookie": f"{NAME}={secret}"})
            # No cookie change: had a login rotated the session meanwhile, a deletion sent
            # after its new cookie would log the browser out. The next request deletes it.
            assert "set-cookie" not in response.headers
        c.cookies.clear()
        following = await c.get("/peek", headers={"cookie": f"{NAME}={secret}"})
    assert following.json() == {"visits": 0}
    assert "Max-Age=0" in following.headers["set-cookie"]
    assert await manager.load(secret) is None


async def test_dev_mode_drops_secure_and_prefix(manager: SessionManager) -> None:
    async with client(manager, dev=True) as c:
        response = await c.get("/visits")
    header = response.headers["set-cookie"]
    assert header.startswith("session=")
    assert "Secure" not in header


def test_settings_pick_policy_and_name(manager: SessionManager) -> None:
    app = Starlette()
    middleware = SessionMiddleware.from_settings(app, Settings(dev=True), manager)
    assert middleware.cookie_name == "session"
    assert middleware.policy == CookiePolicy.development()


async def test_autoload_off_loads_on_demand(manager: SessionManager, store: CountingStore) -> None:
    async with client(manager, autoload=False) as c:
        secret = cookie_of(await c.get("/lazy"))
        headers = {"cookie": f"{NAME}={secret}"}
        before = store.calls["load"]
        await c.get("/nothing", headers=headers)
        assert store.calls["load"] == before
        response = await c.get("/lazy", headers=headers)
        assert response.json() == {"visits": 2}
        with pytest.raises(SessionNotLoaded):
            await c.get("/peek", headers=headers)


async def test_autoload_off_store_down_is_503(clock: FakeClock) -> None:
    manager = SessionManager(DownStore(MemorySessionStore()), clock=clock)
    async with client(manager, autoload=False) as c:
        response = await c.get("/lazy", headers={"cookie": f"{NAME}={new_session_id()}"})
    assert response.status_code == 503


async def test_fastapi_request_session_and_dependency(manager: SessionManager) -> None:
    app = FastAPI()
    app.add_middleware(SessionMiddleware, manager=manager, autoload=False)

    @app.get("/count")
    async def count(session: Session = Depends(get_session)) -> dict[str, int]:  # noqa: B008
        session["n"] = session.get("n", 0) + 1
        return {"n": session["n"]}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://t") as c:
        counts = [(await c.get("/count")).json()["n"] for _ in range(3)]
    assert counts == [1, 2, 3]


async def test_non_http_scopes_pass_through(manager: SessionManager) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        assert "session" not in scope

    middleware = SessionMiddleware(app, manager=manager)

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: Any) -> None:
        raise AssertionError(json.dumps(message))

    await middleware({"type": "lifespan"}, receive, send)
    assert seen == ["lifespan"]


async def test_store_error_raised_by_the_app_is_a_503(manager: SessionManager) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise StoreUnavailable("sql", "OperationalError")

    wrapped = SessionMiddleware(app, manager=manager)
    transport = httpx.ASGITransport(app=wrapped)
    async with httpx.AsyncClient(transport=transport, base_url="https://t") as c:
        response = await c.get("/")
    assert response.status_code == 503


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.one_of(
        st.text(max_size=300).map(lambda v: f"{NAME}={v}"),
        st.binary(max_size=300).map(lambda v: NAME.encode() + b"=" + v),
        st.binary(max_size=300),
    )
)
async def test_any_cookie_header_is_no_session_never_an_error(
    header: str | bytes, clock: FakeClock
) -> None:
    """Whatever the Cookie header holds, the visitor gets a fresh session, not an error."""
    store = CountingStore(MemorySessionStore())
    manager = SessionManager(store, clock=clock)
    raw = header.encode("utf-8") if isinstance(header, str) else header
    app = Starlette(routes=ROUTES, middleware=[Middleware(SessionMiddleware, manager=manager)])
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": "/peek",
        "raw_path": b"/peek",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"cookie", raw)],
        "client": ("10.0.0.1", 1234),
        "server": ("t", 443),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 200
    assert json.loads(sent[1]["body"]) == {"visits": 0}
    assert store.calls["create"] == 0


@pytest.mark.parametrize(
    "before",
    [
        "big=" + "x" * 9000,  # analytics and consent cookies that add up past 8 KiB
        "; ".join(f"c{i}=1" for i in range(200)),  # more cookies than the old cap of 128
    ],
)
async def test_the_session_cookie_is_found_behind_what_a_browser_may_send(
    manager: SessionManager, before: str
) -> None:
    """Behind the other cookies of a busy site (up to what servers accept, 16 KiB, and the
    180 cookies a browser keeps per site) the session is still found: it used to read as
    logged out past 8 KiB or 128 cookies."""
    async with client(manager) as c:
        first = await c.get("/visits")
        session = f"{NAME}={cookie_of(first)}"
        c.cookies.clear()
        again = await c.get("/visits", headers={"cookie": f"{before}; {session}"})
    assert again.json() == {"visits": 2}
