"""CsrfMiddleware: every cookie-authenticated state-changing request proves it is ours.

Runs inside :class:`~tessera.asgi.sessions.SessionMiddleware` (the token is bound to the
session, or, given ``presession_cookie``, to that cookie while the visitor has no stored session:
see :mod:`tessera.csrf`). For POST, PUT, PATCH and DELETE it checks, in order:

1. **Exempt**: requests that carry no cookie authority at all (no session or remember-me cookie)
   *and* authenticate with ``Authorization: Bearer`` — an attacker's page cannot make a browser
   attach a Bearer token — and paths configured as exempt (the JSON token endpoints, which
   neither read nor set cookies).
2. **Origin**: ``Sec-Fetch-Site`` and ``Origin`` must not name another site.
3. **Token**: the ``X-CSRF-Token`` header, or the ``csrf_token`` field of an urlencoded or
   multipart form, must be a token of this session.

Reading a form field means reading the body before the app does; the body is buffered (capped,
413 beyond) and replayed to the app untouched. A refusal is a 403 with ``{"error":
"csrf_failed", "reason": ...}`` or, for browsers asking for HTML, a short page saying what to do.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import MutableMapping, Sequence
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tessera.asgi.auth import bearer_token
from tessera.asgi.consent import request_cookies
from tessera.asgi.responses import send_response
from tessera.csrf import (
    FORM_FIELD,
    HEADER,
    SAFE_METHODS,
    CsrfFailed,
    CsrfProtector,
    binding_for,
    check_origin,
)

MAX_FORM_BYTES = 1024 * 1024

log = logging.getLogger("tessera.csrf")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return str(value.decode("latin-1"))
    return None


def request_origin(scope: Scope) -> str:
    """``scheme://host`` of the request as the browser addressed it (its Host header)."""
    host = _header(scope, b"host")
    if host is None:
        server = scope.get("server") or ("localhost", None)
        host = f"{server[0]}:{server[1]}" if server[1] else str(server[0])
    return f"{scope.get('scheme', 'http')}://{host}"


class BodyTooLarge(Exception):
    """The form is larger than the middleware will buffer."""


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _form_token(content_type: str, body: bytes) -> str | None:
    """The ``csrf_token`` field of an urlencoded or multipart body, without raising."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        try:
            values = parse_qs(body.decode("latin-1"), max_num_fields=1000).get(FORM_FIELD)
        except ValueError:
            return None
        return values[0] if values else None
    if kind == "multipart/form-data":
        # The token is a short plain field; find it without a full multipart parse.
        marker = f'name="{FORM_FIELD}"'.encode()
        at = body.find(marker)
        if at < 0:
            return None
        start = body.find(b"\r\n\r\n", at)
        end = body.find(b"\r\n", start + 4) if start >= 0 else -1
        if start < 0 or end < 0:
            return None
        return body[start + 4 : end].decode("latin-1").strip()
    return None


class CsrfMiddleware:
    """Pure ASGI CSRF protection for cookie-authenticated requests (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        protector: CsrfProtector,
        authority_cookies: Sequence[str],
        exempt_paths: Sequence[str] = (),
        trusted_origins: Sequence[str] = (),
        max_form_bytes: int = MAX_FORM_BYTES,
        presession_cookie: str | None = None,
    ) -> None:
        """``presession_cookie``: the full name of the cookie that holds the secret of visitors
        without a stored session (see :class:`tessera.csrf.PreSession`); None: every token must
        belong to the session."""
        self.app = app
        self.protector = protector
        self.authority_cookies = frozenset(authority_cookies)
        self.exempt_paths = tuple(exempt_paths)
        self.trusted_origins = tuple(trusted_origins)
        self.max_form_bytes = max_form_bytes
        self.presession_cookie = presession_cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        if self._exempt(scope):
            await self.app(scope, receive, send)
            return
        try:
            check_origin(
                sec_fetch_site=_header(scope, b"sec-fetch-site"),
                origin=_header(scope, b"origin"),
                request_origin=request_origin(scope),
                trusted_origins=self.trusted_origins,
            )
            presented = _header(scope, HEADER.encode())
            if presented is None:
                content_type = _header(scope, b"content-type") or ""
                body = await _read_body(receive, self.max_form_bytes)
                receive = _replay(body, receive)
                presented = _form_token(content_type, body)
            session = scope.get("session")
            mapping = session if isinstance(session, MutableMapping) else None
            if self.presession_cookie is not None:
                mapping = binding_for(mapping, request_cookies(scope).get(self.presession_cookie))
            if mapping is None:
                raise CsrfFailed("no_session", "CSRF check needs a session")
            self.protector.verify(mapping, presented)
        except CsrfFailed as exc:
            log.info("CSRF refusal on %s %s: %s", scope["method"], scope["path"], exc.reason)
            await _refuse(scope, send, exc)
            return
        except BodyTooLarge:
            await _send(send, 413, "application/json", b'{"error": "body_too_large"}')
            return
        await self.app(scope, receive, send)

    def _exempt(self, scope: Scope) -> bool:
        path: str = scope.get("path", "")
        if any(path.startswith(prefix) for prefix in self.exempt_paths):
            return True
        # Every Cookie field, joined (HTTP/2 may send several: RFC 9113 §8.2.3).
        cookies = request_cookies(scope)
        carries_authority = any(name in self.authority_cookies for name in cookies)
        return not carries_authority and bool(bearer_token(scope))


async def _send(send: Send, status: int, content_type: str, body: bytes) -> None:
    await send_response(send, status, body, content_type=content_type.encode())


async def _refuse(scope: Scope, send: Send, exc: CsrfFailed) -> None:
    accept = _header(scope, b"accept") or ""
    if "text/html" in accept:
        page = (
            "<!doctype html><html lang=en><meta charset=utf-8><title>Request refused</title>"
            "<main style='font-family:system-ui;max-width:40rem;margin:3rem auto'>"
            "<h1>Request refused</h1><p>This form could not be verified as coming from this "
            f"site ({html.escape(exc.message)}). Go back, reload the page and try again.</p>"
            "<p><a href='/'>Home</a></p></main></html>"
        ).encode()
        await _send(send, 403, "text/html; charset=utf-8", page)
        return
    await _send(send, 403, "application/json", json.dumps(exc.to_dict()).encode())
