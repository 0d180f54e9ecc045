"""Bearer verification through the whole server: every attack gets an RFC 6750 401, and no
input (JSON bodies, Authorization headers, raw bytes) ever gets a 500."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera.clock import FakeClock
from tessera.identity.passwords import FAST_INSECURE_PROFILE, PasswordHasher
from tessera.keys import SigningKey
from tessera.server.app import create_app
from tests.test_token_api_support import (
    PASSWORD,
    WHOAMI,
    Server,
    bearer,
    login,
    make_settings,
    running,
    whoami,
)

CHALLENGE = re.compile(
    r'^Bearer realm="tessera", error="invalid_token", '
    r'error_description="[\x20\x21\x23-\x5b\x5d-\x7e]+"$'
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict[str, Any], payload: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A compact JWS built by hand, so headers and signatures can be anything an attacker sends."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running(make_settings(tmp_path)) as server:
        await server.add_user("alice")
        yield server


class Forge:
    """Tokens that look like the server's, with one thing wrong each."""

    def __init__(self, server: Server, good_token: str) -> None:
        self.key: SigningKey = server.services.keys.ring.signing_key()
        claims = server.services.verifier.verify(good_token)
        now = int(server.clock.now())
        self.payload: dict[str, Any] = {
            "iss": claims.iss,
            "sub": claims.sub,
            "aud": "tessera",
            "exp": now + 600,
            "iat": now,
            "jti": "forged",
            "sid": claims.sid,
            "client_id": claims.client_id,
            "scope": "account",
        }

    def signed(self, *, header: dict[str, Any] | None = None, **changes: Any) -> str:
        """Signed with the server's real key (only the claims or header are wrong)."""
        payload = {k: v for k, v in {**self.payload, **changes}.items() if v is not None}
        headers = {"typ": "at+jwt", "kid": self.key.kid, **(header or {})}
        return jwt.encode(payload, self.key.material, algorithm=self.key.alg, headers=headers)


def attacks(forge: Forge) -> Iterator[tuple[str, str, str]]:
    """(name, token, expected reason)."""
    key = forge.key
    public = key.public_key
    assert public is not None
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    payload = forge.payload
    hs_header = {"alg": "HS256", "typ": "at+jwt", "kid": key.kid}
    yield (
        "alg none",
        compact({"alg": "none", "typ": "at+jwt", "kid": key.kid}, payload, lambda _: b""),
        "malformed",  # an empty signature part is not a compact JWS at all
    )
    yield (
        "alg none with a signature",
        compact({"alg": "none", "typ": "at+jwt", "kid": key.kid}, payload, lambda _: b"x"),
        "algorithm_mismatch",
    )
    for name, secret in (("pem", pem), ("raw", raw)):
        yield (
            f"HS256 signed with the public key ({name})",
            compact(
                hs_header, payload, lambda m, s=secret: hmac.new(s, m, hashlib.sha256).digest()
            ),
            "algorithm_mismatch",
        )
    other = Ed25519PrivateKey.generate()
    yield (
        "unknown kid",
        jwt.encode(payload, other, algorithm="EdDSA", headers={"typ": "at+jwt", "kid": "nope"}),
        "unknown_key",
    )
    yield (
        "right kid, other key",
        jwt.encode(payload, other, algorithm="EdDSA", headers={"typ": "at+jwt", "kid": key.kid}),
        "bad_signature",
    )
    yield (
        "no kid",
        jwt.encode(payload, key.material, algorithm=key.alg, headers={"typ": "at+jwt"}),
        "missing_kid",
    )
    good = forge.signed()
    head, body, sig = good.split(".")
    tampered = b64(json.dumps({**payload, "sub": "someone-else"}).encode())
    yield ("tampered claims", f"{head}.{tampered}.{sig}", "bad_signature")
    yield ("wrong iss", forge.signed(iss="https://evil.example"), "wrong_issuer")
    yield ("wrong aud", forge.signed(aud="https://api.other"), "wrong_audience")
    yield ("typ JWT", forge.signed(header={"typ": "JWT"}), "wrong_type")
    yield ("typ missing", forge.signed(header={"typ": None}), "wrong_type")
    yield ("iat in the future", forge.signed(iat=payload["iat"] + 3600), "not_yet_valid")
    yield ("nbf in the future", forge.signed(nbf=payload["iat"] + 3600), "not_yet_valid")
    yield ("exp in the past", forge.signed(exp=payload["iat"] - 3600), "expired")
    yield ("exp a string", forge.signed(exp="tomorrow"), "malformed")
    yield ("sid missing", forge.signed(sid=None), "malformed")
    yield ("crit header", forge.signed(header={"crit": ["exp"]}), "unsupported_header")
    yield ("oversized", forge.signed(pad="x" * 9000), "oversized")
    yield ("three dots", "a.b.c.d", "malformed")
    yield ("not base64", "!!!.???.***", "malformed")
    yield ("one word", "garbage", "malformed")
    yield ("header not JSON", f"{b64(b'not json')}.{body}.{sig}", "malformed")
    # Deeper than json's recursion limit, and well under the size cap: was a 500.
    yield ("header nested too deeply", f"{b64(b'[' * 4000)}.{body}.{sig}", "malformed")


async def test_every_attack_is_a_401_with_an_rfc6750_challenge(server: Server) -> None:
    async with server.client() as client:
        good = (await login(client))["access_token"]
        forge = Forge(server, good)
        assert (await client.get(WHOAMI, headers=bearer(forge.signed()))).status_code == 200
        for name, token, reason in attacks(forge):
            response = await client.get(WHOAMI, headers=bearer(token))
            assert response.status_code == 401, name
            assert CHALLENGE.match(response.headers["www-authenticate"]), name
            body = response.json()
            assert body["error"] == "invalid_token", name
            assert body["reason"] == reason, name
            assert response.headers["cache-control"] == "no-store"


async def test_an_expired_token_says_token_expired(tmp_path: Path) -> None:
    """Clients tell "refresh" from "log in again" by error_description and reason."""
    clock = FakeClock()
    async with running(make_settings(tmp_path, access_token_ttl=60), clock) as server:
        await server.add_user("alice")
        async with server.client() as client:
            token = (await login(client))["access_token"]
            assert (await client.get(WHOAMI, headers=bearer(token))).status_code == 200  # cached
            clock.advance(60 + 30)  # ttl + the verifier's leeway
            response = await client.get(WHOAMI, headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        'Bearer realm="tessera", error="invalid_token", error_description="token expired"'
    )
    assert response.json()["reason"] == "expired"


async def test_an_oversized_authorization_header_is_refused_unread(server: Server) -> None:
    async with server.client() as client:
        response = await client.get(WHOAMI, headers=bearer("a" * (9 * 1024)))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


async def test_no_token_is_a_bare_challenge(server: Server) -> None:
    """RFC 6750 §3.1: a request without credentials gets no error code in the challenge."""
    async with server.client() as client:
        response = await client.get(WHOAMI)
        basic = await client.get(WHOAMI, headers={"Authorization": "Basic YWxpY2U6eA=="})
    for answer in (response, basic):
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == 'Bearer realm="tessera"'


# --- fuzzing: synchronous SyncClient so hypothesis can drive one running app ------------------


class SyncClient:
    """A blocking facade over an in-process AsyncClient, so hypothesis can drive one app.

    The app and its lifespan run in an event loop of their own (an anyio blocking portal);
    each request is one blocking call into it.
    """

    def __init__(self, portal: anyio.from_thread.BlockingPortal, app: Any) -> None:
        self.portal = portal
        self.app = app
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        )

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.portal.call(functools.partial(self.http.post, path, **kwargs))

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.portal.call(functools.partial(self.http.request, method, path, **kwargs))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncClient]:
    settings_ = make_settings(tmp_path_factory.mktemp("fuzz"))
    app = create_app(settings_, clock=FakeClock(), hasher=PasswordHasher(FAST_INSECURE_PROFILE))
    app.add_api_route(WHOAMI, whoami, methods=["GET", "POST"], include_in_schema=False)
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(app.router.lifespan_context(app)),
    ):
        portal.call(app.state.services.users.register, "alice", PASSWORD)
        sync = SyncClient(portal, app)
        yield sync
        portal.call(sync.http.aclose)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    ["username", "password", "client_id", "device_name", "refresh_token", "token"]
)
BODIES = JSON | st.dictionaries(FIELDS, JSON, max_size=5)


def assert_clean_refusal(response: Any, allowed: set[int]) -> None:
    assert response.status_code in allowed, (response.status_code, response.text)
    body = response.json()
    if response.status_code >= 400:
        assert isinstance(body.get("error"), str)
        assert body["error"]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=BODIES, path=st.sampled_from(["/api/v1/auth/login", "/api/v1/auth/refresh"]))
def test_any_json_body_is_a_clean_4xx(client: SyncClient, body: Any, path: str) -> None:
    """Whatever JSON arrives, the answer is a JSON 4xx with an error code (never a 500)."""
    response = client.post(
        path, content=json.dumps(body), headers={"content-type": "application/json"}
    )
    assert_clean_refusal(response, {400, 401, 429})


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=st.binary(max_size=300),
    content_type=st.sampled_from(
        [
            "application/json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "",
        ]
    ),
    path=st.sampled_from(
        ["/api/v1/auth/login", "/api/v1/auth/refresh", "/oauth/revoke", "/oauth/introspect"]
    ),
)
def test_any_raw_body_is_a_clean_4xx(
    client: SyncClient, raw: bytes, content_type: str, path: str
) -> None:
    response = client.post(path, content=raw, headers={"content-type": content_type})
    assert_clean_refusal(response, {400, 401, 429})


HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=200,
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=HEADER_TEXT
    | HEADER_TEXT.map(lambda t: "Bearer " + t)
    | HEADER_TEXT.map(lambda t: "bearer  " + t),
    path=st.sampled_from([WHOAMI, "/api/v1/auth/logout", "/oauth/introspect"]),
)
def test_any_authorization_header_is_a_clean_401(client: SyncClient, value: str, path: str) -> None:
    """No Authorization header value gets past authentication or produces a 500 (a POST
    without a usable Bearer token may meet the CSRF check first: 403)."""
    response = client.post(
        path, headers={"authorization": value.encode("latin-1")}, data={"token": "x"}
    )
    assert_clean_refusal(response, {401, 403})


def test_huge_bodies_are_refused_before_parsing(client: SyncClient) -> None:
    big = b'{"username": "' + b"a" * 100_000 + b'"}'
    for path in ["/api/v1/auth/login", "/api/v1/auth/refresh", "/oauth/revoke"]:
        declared = client.post(path, content=big, headers={"content-type": "application/json"})
        assert declared.status_code == 413
        assert declared.json()["error"] == "body_too_large"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"a" * 1024

    streamed = client.post(
        "/api/v1/auth/login", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413


def test_lying_content_length_is_refused(client: SyncClient) -> None:
    response = client.post(
        "/api/v1/auth/login",
        content=b"{}",
        headers={"content-type": "application/json", "content-length": "-1"},
    )
    assert response.status_code in (400, 413)


def test_every_route_refuses_a_body_over_the_server_cap(client: SyncClient) -> None:
    # Routes outside the token API (the account API, the pages) read bodies through FastAPI,
    # which buffers them whole: the server-wide BodyLimit refuses them first.
    big = b'{"granted": ["' + b"a" * (2 * 1024 * 1024) + b'"]}'
    for method, path in [("PUT", "/api/v1/consent"), ("POST", "/login"), ("POST", "/consent")]:
        response = client.request(
            method, path, content=big, headers={"content-type": "application/json"}
        )
        assert response.status_code == 413, (method, path)
        assert response.json()["error"] == "body_too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: refused as it streams
        for _ in range(40):
            yield b"a" * 64 * 1024

    # (A form streams into the pages' 64 KiB field cap first: a 400 that names it.)
    for method, path, kind in [("PUT", "/api/v1/consent", "application/json")]:
        # With the CSRF token in a header, the CSRF layer leaves the body to the route (which
        # FastAPI parses: a failure there used to be its 400).
        token = client.request("GET", "/api/v1/csrf").json()["csrf_token"]
        response = client.request(
            method, path, content=chunks(), headers={"content-type": kind, "x-csrf-token": token}
        )
        assert response.status_code == 413, (method, path, response.status_code)
        assert response.json()["error"] == "body_too_large"


def test_a_client_gone_mid_body_gets_a_400_not_an_unhandled_error(client: SyncClient) -> None:
    sent: list[dict[str, Any]] = []
    incoming = iter(
        [
            {"type": "http.request", "body": b'{"username": "a', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/auth/login",
        "raw_path": b"/api/v1/auth/login",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"content-length", b"1000"),
        ],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    client.portal.call(client.app, scope, receive, send)
    assert sent[0]["status"] == 400, sent[0]
