"""BodyLimit: bodies over the cap are refused with a 413, declared or streamed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

from tessera.asgi.body_limit import BodyLimit, BodyTooLarge, declared_length

LIMIT = 1000


class Echo:
    """Reads the whole body and answers its length; records whether it ran."""

    def __init__(self) -> None:
        self.called = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.called = True
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = json.dumps({"size": size}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_a_body_within_the_cap_reaches_the_app_whole() -> None:
    async with client(BodyLimit(Echo(), max_bytes=LIMIT)) as c:
        response = await c.post("/", content=b"x" * LIMIT)
    assert response.json() == {"size": LIMIT}


@pytest.mark.parametrize(
    "declared", [str(LIMIT + 1), "abc", "-1", "1e3", "99999999999999999999", "0" * 5000 + "1001"]
)
async def test_a_declared_length_over_the_cap_or_not_a_number_is_refused_unread(
    declared: str,
) -> None:
    echo = Echo()
    async with client(BodyLimit(echo, max_bytes=LIMIT)) as c:
        response = await c.post("/", content=b"{}", headers={"content-length": declared})
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    assert not echo.called


async def test_a_streamed_body_past_the_cap_is_refused() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * 300

    async with client(BodyLimit(Echo(), max_bytes=LIMIT)) as c:
        response = await c.post("/", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"


async def test_a_body_past_the_cap_after_the_response_started_ends_the_request() -> None:
    async def early(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while (await receive()).get("more_body"):
            pass

    sent: list[Message] = []
    chunks = iter([b"x" * 600, b"x" * 600])

    async def receive() -> Message:
        return {"type": "http.request", "body": next(chunks), "more_body": True}

    async def send(message: Message) -> None:
        sent.append(message)

    with pytest.raises(BodyTooLarge):  # too late for a 413: the server drops the connection
        await BodyLimit(early, max_bytes=LIMIT)({"type": "http", "headers": []}, receive, send)
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [200]


@given(value=st.binary(max_size=30))
async def test_any_content_length_value_is_passed_or_refused_never_an_error(value: bytes) -> None:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "headers": [(b"content-length", value)]}
    await BodyLimit(Echo(), max_bytes=LIMIT)(scope, receive, send)
    assert sent[0]["status"] in (200, 413)


@pytest.mark.parametrize(
    ("value", "length"),
    [
        (b"2", 2),
        (b" 2 ", 2),
        (b"0" * 5000 + b"7", 7),
        (b"000", 0),
        (b"", None),
        (b"+2", None),
        (b"\xd9\xa3", None),
        ("٣", None),
        (b"1" * 40, 1 << 62),
    ],
)
def test_declared_length(value: bytes | str, length: int | None) -> None:
    assert declared_length(value) == length
