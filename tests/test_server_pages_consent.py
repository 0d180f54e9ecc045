"""Consent banner, consent page and the preferences demo: choices saved, enforcement visible."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tessera.consent import Category
from tests.browser_helpers import Server, csrf_from, post_form, running_server

VISITS = "__Host-visits"
THEME = "__Host-theme"
CONSENT = "__Host-consent"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path) as srv:
        yield srv


def cookie_names(response: httpx.Response) -> list[str]:
    return [h.split("=", 1)[0] for h in response.headers.get_list("set-cookie")]


def deleted(response: httpx.Response, name: str) -> bool:
    return any(
        h.startswith(f"{name}=;") and "Max-Age=0" in h
        for h in response.headers.get_list("set-cookie")
    )


async def choose(client: httpx.AsyncClient, choice: str, *granted: str) -> httpx.Response:
    fields: dict[str, str | list[str]] = {"choice": choice}
    if granted:
        fields["granted"] = list(granted)
    page = await client.get("/consent")
    return await client.post("/consent", data={"csrf_token": csrf_from(page.text), **fields})


async def test_banner_shows_until_the_visitor_chooses(server: Server) -> None:
    async with server.client() as client:
        home = await client.get("/")
        assert "Accept all" in home.text
        assert "Reject non-essential" in home.text
        assert 'href="/consent">Customise' in home.text
        response = await post_form(client, "/consent", {"choice": "essential", "next": "/"}, "/")
        assert response.status_code == 303
        assert response.headers["location"] == "/"
        assert CONSENT in cookie_names(response)
        assert "Accept all" not in (await client.get("/")).text


async def test_consent_page_lists_every_category_with_its_cookies(server: Server) -> None:
    async with server.client() as client:
        page = (await client.get("/consent")).text
    for category in Category:
        assert f'id="cat-{category.value}"' in page
        assert f'<label for="cat-{category.value}"' in page
    assert "__Host-session" in page
    assert "__Host-theme" in page
    assert "__Host-visits" in page
    essential = page.split('id="cat-essential"', 1)[1].split(">", 1)[0]
    assert "disabled" in essential
    assert "checked" in essential


async def test_rejected_analytics_never_sets_the_visit_counter(server: Server) -> None:
    async with server.client() as client:
        await choose(client, "essential")
        for _ in range(3):
            page = await client.get("/preferences")
            assert VISITS not in cookie_names(page)
            assert "Visits are not counted" in page.text
    assert VISITS not in {c.name for c in client.cookies.jar}


async def test_granted_analytics_counts_visits_and_withdrawal_deletes_the_cookie(
    server: Server,
) -> None:
    async with server.client() as client:
        saved = await choose(client, "custom", "analytics")
        assert saved.headers["location"] == "/consent?saved=1"
        for expected in (1, 2, 3):
            page = await client.get("/preferences")
            assert f"<strong>{expected}</strong>" in page.text
        assert client.cookies.get(VISITS) == "3"
        withdrawn = await choose(client, "essential")
        assert deleted(withdrawn, VISITS)
        assert client.cookies.get(VISITS) is None
        assert VISITS not in cookie_names(await client.get("/preferences"))


async def test_theme_without_consent_is_applied_once_and_the_visitor_is_told(
    server: Server,
) -> None:
    async with server.client() as client:
        await choose(client, "essential")
        response = await post_form(client, "/preferences", {"theme": "dark"}, "/preferences")
        assert response.status_code == 200
        assert THEME not in cookie_names(response)
        assert 'data-theme="dark"' in response.text
        assert "could not be stored" in response.text
        assert 'data-theme="light"' in (await client.get("/preferences")).text


async def test_theme_with_consent_is_stored_and_applied_to_every_page(server: Server) -> None:
    async with server.client() as client:
        await choose(client, "all")
        response = await post_form(client, "/preferences", {"theme": "dark"}, "/preferences")
        assert response.status_code == 303
        assert client.cookies.get(THEME) == "dark"
        assert 'data-theme="dark"' in (await client.get("/")).text
        withdrawn = await choose(client, "custom", "analytics")
        assert deleted(withdrawn, THEME)


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/consent", {"choice": "custom", "granted": "tracking"}),
        ("/consent", {"choice": "maybe"}),
        ("/preferences", {"theme": "neon"}),
    ],
)
async def test_bad_choices_are_400(server: Server, path: str, fields: dict[str, str]) -> None:
    async with server.client() as client:
        response = await post_form(client, path, fields, "/consent")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
