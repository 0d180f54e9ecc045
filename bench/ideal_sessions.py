"""Calibration, not sessions: the least any server-side session layer can cost.

Two pure-ASGI middlewares that do only the irreducible work of a server-side session: find the
Cookie header, take the ID that follows ``session=``, hash it (SHA-256, as stores key on the
digest), fetch the JSON by that digest (a module-level dict, or one Redis ``GET``), decode it into
a plain dict at ``scope["session"]``; at response start encode it, check it fits in 4096 bytes,
store it (every time: the benchmark's endpoint always writes) and add ``Vary: Cookie``, plus a
Set-Cookie with a new ID when there was no session. Nothing else: no expiry or timeouts (Redis
keys merely get a 30-minute TTL with each write), no eviction, no safety (no format check of the
ID, no rotation, no error handling, no fail-closed 503), no metrics, no WebSocket. Never keep
sessions with them. They are the least any server-side session layer can cost: the floor under
the targets, against which the benchmark shows how close Tessera's layer comes.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:  # the memory variant never imports redis
    from tessera.stores.redis_autopipeline import AutoPipeline

_sha256: Callable[[bytes], Any]
try:  # CPython's own SHA-256, cheaper than OpenSSL's for 43 bytes (as tessera.sessions._ids)
    from _sha2 import sha256 as _sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
except ImportError:
    try:
        from _sha256 import sha256 as _sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
    except ImportError:
        _sha256 = hashlib.sha256

PREFIX = b"session="
ID_LENGTH = 43  # secrets.token_urlsafe(32)
MAX_BYTES = 4096
TTL_MS = b"1800000"
COOKIE_ATTRIBUTES = "; Path=/; HttpOnly; SameSite=Lax"
VARY_COOKIE = (b"vary", b"Cookie")

_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
# Compact JSON, built once (json.dumps with options builds an encoder per call).
_encoder = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    None,  # markers: no circular check
    json.JSONEncoder().default,
    json.encoder.encode_basestring,  # ensure_ascii=False
    None,  # indent
    ":",
    ",",
    False,  # sort_keys
    False,  # skipkeys
    False,  # allow_nan
)


def session_id(scope: Scope) -> bytes | None:
    """The 43 bytes after ``session=`` in the Cookie header, unchecked; None without one."""
    for key, value in scope["headers"]:
        if key == b"cookie":
            at = value.find(PREFIX)
            if at < 0:
                return None
            start = at + len(PREFIX)
            return value[start : start + ID_LENGTH]  # type: ignore[no-any-return]
    return None


def digest(sid: bytes) -> str:
    return _sha256(sid).hexdigest()  # type: ignore[no-any-return]


def decode(data: bytes) -> dict[str, Any]:
    return _scan(data.decode(), 0)[0]  # type: ignore[no-any-return]


def encode(session: dict[str, Any]) -> bytes:
    data = "".join(_encoder(session, 0)).encode()
    if len(data) > MAX_BYTES:
        raise ValueError(f"session data is {len(data)} bytes, over {MAX_BYTES}")
    return data


def new_id() -> tuple[str, tuple[bytes, bytes]]:
    """A fresh ID's digest and the Set-Cookie header that hands the ID out."""
    sid = secrets.token_urlsafe(32)
    cookie = f"session={sid}{COOKIE_ATTRIBUTES}".encode()
    return digest(sid.encode()), (b"set-cookie", cookie)


def with_headers(message: Message, set_cookie: tuple[bytes, bytes] | None) -> Message:
    """A new response start (the app may reuse its own) with Vary and maybe Set-Cookie."""
    headers = [*message.get("headers", ()), VARY_COOKIE]
    if set_cookie is not None:
        headers.append(set_cookie)
    return {**message, "headers": headers}


STORE: dict[str, bytes] = {}
"""What ``IdealMemorySessions`` keeps: digest -> JSON, for ever."""


class IdealMemorySessions:
    """The irreducible work of a server-side session, in a module-level dict."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sid = session_id(scope)
        key = digest(sid) if sid is not None else None
        data = STORE.get(key) if key is not None else None
        if data is None:
            key, session = None, {}
        else:
            session = decode(data)
        scope["session"] = session

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                stored, set_cookie = key, None
                if stored is None and session:  # nothing to keep for an empty new session
                    stored, set_cookie = new_id()
                if stored is not None:
                    STORE[stored] = encode(session)
                message = with_headers(message, set_cookie)
            await send(message)

        await self.app(scope, receive, send_wrapper)


class IdealRedisSessions:
    """The same, in Redis: one ``GET`` per request, one ``SET`` per save, auto-pipelined."""

    def __init__(
        self, app: ASGIApp, *, batch: AutoPipeline, prefix: str = "tessera-bench-ideal"
    ) -> None:
        self.app = app
        self.batch = batch
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        batch = self.batch
        sid = session_id(scope)
        key = f"{self.prefix}:{digest(sid)}" if sid is not None else None
        session: dict[str, Any] = {}
        if key is not None:
            data = (await batch.execute_packed(batch.pack(("GET", key)), 1))[0]
            if data is None:
                key = None
            else:
                session = decode(data)
        scope["session"] = session

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                command: tuple[str | bytes, ...] | None = None
                set_cookie = None
                if key is not None:
                    command = ("SET", key, encode(session), "XX", "PX", TTL_MS)
                elif session:  # nothing to keep for an empty new session
                    stored, set_cookie = new_id()
                    command = ("SET", f"{self.prefix}:{stored}", encode(session), "PX", TTL_MS)
                if command is not None:
                    await batch.execute_packed(batch.pack(command), 1)
                message = with_headers(message, set_cookie)
            await send(message)

        await self.app(scope, receive, send_wrapper)
