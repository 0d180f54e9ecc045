"""CSRF tokens (masked, session-bound, key-rotation aware) and the Origin/Sec-Fetch checks."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.csrf import SESSION_KEY, CsrfFailed, CsrfProtector, check_origin
from tessera.keys import HmacKey

OLD = HmacKey("old", b"o" * 32)
NEW = HmacKey("new", b"n" * 32)


def protector(*keys: HmacKey) -> CsrfProtector:
    ring = list(keys) or [NEW]
    return CsrfProtector(lambda: ring)


def test_token_verifies_for_its_session() -> None:
    session: dict[str, object] = {}
    csrf = protector()
    csrf.verify(session, csrf.token(session))
    assert SESSION_KEY in session


def test_tokens_are_masked_differently_each_time() -> None:
    """Two tokens for one session differ byte for byte (BREACH) yet both verify."""
    session: dict[str, object] = {}
    csrf = protector()
    first, second = csrf.token(session), csrf.token(session)
    assert first != second
    csrf.verify(session, first)
    csrf.verify(session, second)


def test_token_of_another_session_is_refused() -> None:
    csrf = protector()
    mine: dict[str, object] = {}
    theirs: dict[str, object] = {}
    token = csrf.token(theirs)
    csrf.ensure_secret(mine)
    with pytest.raises(CsrfFailed) as info:
        csrf.verify(mine, token)
    assert info.value.reason == "token_invalid"
    assert info.value.http_status == 403


def test_reset_at_login_invalidates_earlier_tokens() -> None:
    """A token fixed before login is useless after it (the secret is replaced)."""
    csrf = protector()
    session: dict[str, object] = {}
    before = csrf.token(session)
    csrf.reset(session)
    csrf.ensure_secret(session)
    with pytest.raises(CsrfFailed):
        csrf.verify(session, before)


def test_rotated_key_still_verifies_open_forms() -> None:
    session: dict[str, object] = {}
    token = protector(OLD).token(session)
    protector(NEW, OLD).verify(session, token)
    with pytest.raises(CsrfFailed):
        protector(NEW).verify(session, token)


@pytest.mark.parametrize(
    ("presented", "reason"),
    [
        (None, "token_missing"),
        ("", "token_missing"),
        ("!!!", "token_malformed"),
        ("a" * 5000, "token_malformed"),
        ("YWJj", "token_malformed"),
    ],
)
def test_bad_tokens_have_named_reasons(presented: str | None, reason: str) -> None:
    session: dict[str, object] = {}
    csrf = protector()
    csrf.ensure_secret(session)
    with pytest.raises(CsrfFailed) as info:
        csrf.verify(session, presented)
    assert info.value.reason == reason
    assert info.value.to_dict()["error"] == "csrf_failed"


def test_session_without_secret_refuses_any_token() -> None:
    csrf = protector()
    token = csrf.token({})
    with pytest.raises(CsrfFailed) as info:
        csrf.verify({}, token)
    assert info.value.reason == "no_session"


@given(st.text(max_size=300))
def test_verify_never_fails_with_anything_but_csrf_failed(garbage: str) -> None:
    """Arbitrary input is a 403-class refusal, never another exception (never a 500)."""
    session = {SESSION_KEY: "s" * 43}
    with pytest.raises(CsrfFailed):
        protector().verify(session, garbage)


@pytest.mark.parametrize(
    ("site", "origin"),
    [
        ("same-origin", "https://id.example"),
        ("none", None),
        (None, None),
        (None, "https://id.example:443"),
        (None, "https://ID.example"),
    ],
)
def test_same_origin_requests_pass(site: str | None, origin: str | None) -> None:
    check_origin(sec_fetch_site=site, origin=origin, request_origin="https://id.example")


@pytest.mark.parametrize(
    ("site", "origin", "reason"),
    [
        ("cross-site", None, "cross_site"),
        ("same-site", None, "cross_site"),
        (None, "https://evil.example", "origin_mismatch"),
        (None, "null", "origin_null"),
        (None, "http://id.example", "origin_mismatch"),
        (None, "https://id.example:8443", "origin_mismatch"),
        (None, "not a url", "origin_mismatch"),
        (None, "https://id.example:99999", "origin_mismatch"),
    ],
)
def test_foreign_requests_are_refused(site: str | None, origin: str | None, reason: str) -> None:
    with pytest.raises(CsrfFailed) as info:
        check_origin(sec_fetch_site=site, origin=origin, request_origin="https://id.example")
    assert info.value.reason == reason


def test_trusted_origins_are_accepted() -> None:
    check_origin(
        sec_fetch_site=None,
        origin="https://app.example",
        request_origin="https://id.example",
        trusted_origins=["https://app.example"],
    )


@pytest.mark.parametrize(
    "origin", ["http://[::1", "http://[", "https://]x", "http://h:99999", "http://h:x"]
)
def test_an_origin_that_does_not_parse_is_a_mismatch(origin: str) -> None:
    with pytest.raises(CsrfFailed) as caught:
        check_origin(sec_fetch_site=None, origin=origin, request_origin="https://id.example")
    assert caught.value.reason == "origin_mismatch"


@given(origin=st.text(max_size=60), host=st.text(max_size=60))
def test_any_origin_and_host_is_accepted_or_refused_never_an_error(origin: str, host: str) -> None:
    # Both come from the network: the Origin header, and the Host header in request_origin.
    with contextlib.suppress(CsrfFailed):
        check_origin(sec_fetch_site=None, origin=origin, request_origin=f"https://{host}")
