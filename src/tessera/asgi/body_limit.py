"""BodyLimit: a cap on request bodies for a whole ASGI app, declared or streamed.

Frameworks read bodies whole before the handler runs (FastAPI's JSON and form parsing, for
instance), so a cap in a route comes too late for a client that sends a gigabyte. This sits in
front of everything: a declared ``Content-Length`` over the cap (or one that is no number) is
answered ``413 {"error": "body_too_large"}`` before the app runs; a body that streams past the
cap (chunked, or longer than declared) ends the request the same way, if the response has not
started yet. Written by hand because Starlette and uvicorn have no such limit.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tessera.asgi.responses import TrackedSend, send_json

DEFAULT_MAX_BODY = 1024 * 1024
"""1 MiB: far above any form or JSON body the server takes, far below a memory problem."""


def declared_length(value: bytes | str) -> int | None:
    """A Content-Length header's value as a number; None when it is not one.

    Surrounding whitespace is allowed (RFC 9110 field values); leading zeros are dropped before
    ``int``, which refuses strings of more than 4,300 digits with a ValueError.
    """
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    digits = text.strip()
    if not digits.isascii() or not digits.isdigit():
        return None
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else 1 << 62  # past any cap, and no overflow


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` inside the app when the streamed body passes the cap.

    An HTTP 413 exception, so that a framework that catches errors while parsing a body
    (FastAPI answers 400 for anything else) lets it through to its 413 handler; an app without
    one lets it reach :class:`BodyLimit`, which answers the 413 itself.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request bodies are capped at {limit}")


class BodyLimit:
    """Pure ASGI middleware: ``BodyLimit(app, max_bytes=DEFAULT_MAX_BODY)``."""

    def __init__(self, app: ASGIApp, *, max_bytes: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for key, value in scope.get("headers", ()):
            if key.lower() == b"content-length":
                declared = declared_length(value)
                if declared is None or declared > limit:
                    await _refuse(send, limit)
                    return
        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        tracked = TrackedSend(send)
        try:
            await self.app(scope, capped_receive, tracked)
        except BodyTooLarge:
            if tracked.started:
                raise
            await _refuse(send, limit)


async def _refuse(send: Send, limit: int) -> None:
    await send_json(
        send,
        413,
        {"error": "body_too_large", "error_description": f"request bodies are capped at {limit}"},
        # Closed after the answer: the server would otherwise read the refused body to reach
        # the next request on the connection.
        headers=[(b"connection", b"close")],
        no_store=False,
    )
