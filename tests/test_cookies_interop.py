"""Our Set-Cookie headers as independent client jars read them: http.cookiejar and httpx."""

from __future__ import annotations

import email.message
import http.cookiejar
import time
import urllib.request
from datetime import UTC, datetime

import httpx

from tessera.cookies import Cookie, CookiePolicy, parse_cookie_header

EXPIRES = datetime(2030, 1, 1, tzinfo=UTC)


class _Response:
    """The one method ``CookieJar.make_cookies`` asks of a urllib response."""

    def __init__(self, headers: list[str]) -> None:
        self._message = email.message.Message()
        for header in headers:
            self._message["Set-Cookie"] = header

    def info(self) -> email.message.Message:
        return self._message


def cookiejar_read(cookies: list[Cookie], url: str) -> dict[str, http.cookiejar.Cookie]:
    jar = http.cookiejar.CookieJar()
    response = _Response([c.serialize() for c in cookies])
    request = urllib.request.Request(url)  # noqa: S310 - never opened, only read by the jar
    made = jar.make_cookies(response, request)  # type: ignore[arg-type]
    return {c.name: c for c in made}


def test_cookiejar_sees_host_only_cookie_with_max_age() -> None:
    policy = CookiePolicy()
    before = time.time()
    (seen,) = cookiejar_read(
        [policy.cookie(policy.name("session"), "abc", max_age=600)], "https://example.org/x"
    ).values()
    assert (seen.name, seen.value) == ("__Host-session", "abc")
    assert (seen.domain, seen.domain_specified) == ("example.org", False)
    assert (seen.path, seen.secure) == ("/", True)
    assert seen.expires is not None
    assert before + 600 - 1 <= seen.expires <= time.time() + 600 + 1
    assert seen.has_nonstandard_attr("HttpOnly")
    assert seen.get_nonstandard_attr("SameSite") == "Lax"


def test_cookiejar_sees_domain_path_expires_and_extra_attributes() -> None:
    cookie = Cookie(
        "__Secure-pref",
        "dark",
        expires=EXPIRES,
        domain="example.org",
        path="/app",
        same_site="None",
        partitioned=True,
        http_only=False,
    )
    seen = cookiejar_read([cookie], "https://www.example.org/app/page")["__Secure-pref"]
    assert seen.value == "dark"
    assert (seen.domain, seen.domain_specified) == (".example.org", True)
    assert (seen.path, seen.secure, seen.expires) == ("/app", True, int(EXPIRES.timestamp()))
    # http.cookiejar predates SameSite and CHIPS: it keeps them as opaque extra attributes.
    assert seen.get_nonstandard_attr("SameSite") == "None"
    assert seen.has_nonstandard_attr("Partitioned")
    assert not seen.has_nonstandard_attr("HttpOnly")


def test_cookiejar_deletion_removes_the_cookie() -> None:
    jar = http.cookiejar.CookieJar()
    request = urllib.request.Request("https://example.org/")
    cookie = Cookie("sid", "abc", max_age=600)
    for header in (cookie, cookie.deletion()):
        jar.extract_cookies(_Response([header.serialize()]), request)  # type: ignore[arg-type]
    assert list(jar) == []


def _client(set_cookies: list[Cookie], seen: list[httpx.Request]) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/login":
            return httpx.Response(200, headers=[("set-cookie", c.serialize()) for c in set_cookies])
        return httpx.Response(204)

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_httpx_jar_stores_and_sends_back_what_we_set() -> None:
    cookies = [
        Cookie("__Host-sid", "s1", max_age=600),
        Cookie("scoped", '"q1"', path="/app", expires=EXPIRES),
        Cookie("wide", "w1", domain="example.org"),
    ]
    seen: list[httpx.Request] = []
    with _client(cookies, seen) as client:
        client.get("https://example.org/login")
        stored = {c.name: c for c in client.cookies.jar}
        assert not stored["__Host-sid"].domain_specified
        assert stored["scoped"].value == '"q1"'
        assert stored["scoped"].expires == int(EXPIRES.timestamp())
        assert (stored["scoped"].path, stored["scoped"].secure) == ("/app", True)
        assert stored["wide"].domain == ".example.org"

        client.get("https://example.org/app/page")
        client.get("https://example.org/other")
        client.get("http://example.org/app/page")

    sent = [parse_cookie_header(r.headers.get("cookie", "")) for r in seen[1:]]
    # Round trip through a real client jar and back through our parser (quotes stripped).
    assert sent[0] == {"scoped": "q1", "__Host-sid": "s1", "wide": "w1"}
    assert sent[1] == {"__Host-sid": "s1", "wide": "w1"}  # Path=/app not sent to /other
    assert sent[2] == {}  # Secure cookies never go over plain http
    # Host-only scoping is not checked through httpx: http.cookiejar (its jar) sends a
    # host-only cookie to subdomains too. domain_specified=False above is what it records.


def test_httpx_applies_deletion() -> None:
    seen: list[httpx.Request] = []
    cookie = Cookie("sid", "abc")
    with _client([cookie], seen) as client:
        client.get("https://example.org/login")
        assert client.cookies.get("sid") == "abc"
        client.cookies.extract_cookies(
            httpx.Response(
                200,
                headers={"set-cookie": cookie.deletion().serialize()},
                request=httpx.Request("GET", "https://example.org/"),
            )
        )
        assert client.cookies.get("sid") is None
