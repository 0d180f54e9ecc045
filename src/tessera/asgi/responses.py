"""Complete responses that the middleware answer with themselves (errors, refusals).

One place for what they all send: the two ASGI messages, ``Content-Length``, and
``Cache-Control: no-store`` (an error about this request must not be replayed to another).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from starlette.types import Message, Send

from tessera.errors import TesseraError

Header = tuple[bytes, bytes]


class TrackedSend:
    """A ``send`` that remembers whether the response started: until then, a middleware that
    catches an error may still answer in the app's place."""

    __slots__ = ("send", "started")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"application/json",
    headers: Iterable[Header] = (),
    no_store: bool = True,
) -> None:
    """``body`` as a whole response; ``headers`` come after the content headers."""
    head = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    head.extend(headers)
    if no_store:
        head.append((b"cache-control", b"no-store"))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send,
    status: int,
    payload: Mapping[str, object],
    *,
    headers: Iterable[Header] = (),
    no_store: bool = True,
) -> None:
    """``payload`` as a JSON response."""
    body = json.dumps(payload).encode()
    await send_response(send, status, body, headers=headers, no_store=no_store)


async def send_error(send: Send, status: int, error: TesseraError) -> None:
    """A complete JSON error response ``{"error": code, "error_description": ...}``."""
    await send_json(send, status, error.to_dict())
