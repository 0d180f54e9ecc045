"""parse_cookie_header / parse_set_cookie: total on any input, capped, and faithful to browsers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tessera.cookies import (
    Cookie,
    parse_cookie_header,
    parse_cookie_pairs,
    parse_set_cookie,
)

VECTORS = json.loads((Path(__file__).parent / "data/http_state/parser.json").read_text("utf-8"))
TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
OCTETS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\')

tokens = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=30)
values = st.text(alphabet=OCTETS, max_size=60) | st.text(alphabet=OCTETS, max_size=60).map(
    lambda v: f'"{v}"'
)


def dequoted(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


# --- behaviour -----------------------------------------------------------------------------


def test_simple_header_with_irregular_whitespace_and_empty_pieces() -> None:
    assert parse_cookie_header(" a=1 ;b = 2;; \t;c=") == {"a": "1", "b": "2", "c": ""}


def test_one_pair_of_quotes_is_removed_and_nothing_unescaped() -> None:
    assert parse_cookie_header('a="x y"; b=""; c="\\101"; d=""q""') == {
        "a": "x y",
        "b": "",
        "c": "\\101",
        "d": '"q"',
    }


def test_value_keeps_everything_after_the_first_equals_sign_and_commas() -> None:
    assert parse_cookie_header("a==b=c; z=y, q=r") == {"a": "=b=c", "z": "y, q=r"}


def test_piece_without_equals_is_a_nameless_cookie() -> None:
    assert parse_cookie_pairs("tok; a=1; =other") == [("", "tok"), ("a", "1"), ("", "other")]
    assert parse_cookie_header("tok; =other") == {"": "tok"}


def test_first_duplicate_wins_and_pairs_keep_all() -> None:
    header = "sid=specific; theme=dark; sid=shadow"
    assert parse_cookie_header(header) == {"sid": "specific", "theme": "dark"}
    assert [v for n, v in parse_cookie_pairs(header) if n == "sid"] == ["specific", "shadow"]


def test_bytes_are_utf8_and_invalid_bytes_are_replaced() -> None:
    assert parse_cookie_header("a=é".encode()) == {"a": "é"}
    assert parse_cookie_header(b"a=\xff\xfe; b=2") == {"a": "\ufffd\ufffd", "b": "2"}


def test_oversized_header_is_cut_at_a_semicolon() -> None:
    header = "a=1; b=22; c=333"
    assert parse_cookie_header(header, max_bytes=len(header)) == {"a": "1", "b": "22", "c": "333"}
    assert parse_cookie_header(header, max_bytes=len(header) - 1) == {"a": "1", "b": "22"}
    assert parse_cookie_header(header.encode(), max_bytes=9) == {"a": "1", "b": "22"}
    assert parse_cookie_header(header, max_bytes=8) == {"a": "1"}
    assert parse_cookie_header("a" * 100, max_bytes=10) == {}


def test_stops_after_max_cookies() -> None:
    header = "; ".join(f"c{i}={i}" for i in range(500))
    parsed = parse_cookie_header(header, max_bytes=100_000, max_cookies=128)
    assert list(parsed) == [f"c{i}" for i in range(128)]


@pytest.mark.parametrize("header", [None, 42, [b"a=1"]])
def test_non_header_types_give_nothing(header: Any) -> None:
    assert parse_cookie_header(header) == {}


# --- properties ----------------------------------------------------------------------------


@given(
    st.text() | st.binary(),
    st.integers(min_value=-5, max_value=10_000),
    st.integers(min_value=0, max_value=200),
)
@example(b"\xc3", 8192, 128)
@example(';;;;=;=;"', 8192, 128)
def test_parser_never_raises(header: str | bytes, max_bytes: int, max_cookies: int) -> None:
    pairs = parse_cookie_pairs(header, max_bytes=max_bytes, max_cookies=max_cookies)
    assert len(pairs) <= max_cookies
    assert all(isinstance(n, str) and isinstance(v, str) for n, v in pairs)
    parsed = parse_cookie_header(header, max_bytes=max_bytes, max_cookies=max_cookies)
    assert set(parsed) == {n for n, _ in pairs}


@given(st.text(max_size=300), st.integers(min_value=0, max_value=300))
def test_truncation_only_ever_drops_whole_pieces(header: str, max_bytes: int) -> None:
    kept = parse_cookie_pairs(header, max_bytes=max_bytes, max_cookies=1000)
    full = parse_cookie_pairs(header, max_bytes=10_000, max_cookies=1000)
    assert kept == full[: len(kept)]


@given(st.dictionaries(tokens, values, max_size=20))
def test_what_we_set_is_what_we_read_back(cookies: dict[str, str]) -> None:
    """Set-Cookie from our serializer, sent back by a browser as name=value, parses exactly."""
    emitted = [Cookie(name, value) for name, value in cookies.items()]
    header = "; ".join(f"{c.name}={c.value}" for c in emitted)
    assert parse_cookie_header(header) == {n: dequoted(v) for n, v in cookies.items()}
    for cookie in emitted:
        parsed = parse_set_cookie(cookie.serialize())
        assert (parsed.name, parsed.value) == (cookie.name, cookie.value)


@given(st.text() | st.binary())
def test_set_cookie_parser_never_raises(header: str | bytes) -> None:
    parsed = parse_set_cookie(header)
    assert isinstance(parsed.name, str)
    parsed.is_deletion(0.0)


# --- set-cookie ----------------------------------------------------------------------------


def test_set_cookie_lifetime_attributes() -> None:
    parsed = parse_set_cookie("sid=abc; Path=/; max-age=0; Expires=Thu, 01 Jan 2037 00:00:00 GMT")
    assert (parsed.name, parsed.value, parsed.max_age) == ("sid", "abc", 0)
    assert parsed.is_deletion(now=0.0)
    starlette_delete = 'sid=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/'
    assert parse_set_cookie(starlette_delete).is_deletion(now=1e9)
    assert parse_set_cookie("sid=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT").is_deletion(1e9)
    assert not parse_set_cookie(
        "sid=x; Max-Age=10; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
    ).is_deletion(1e9)


def test_set_cookie_ignores_malformed_lifetimes_as_browsers_do() -> None:
    parsed = parse_set_cookie("a=b; Max-Age=1x; Expires=whenever; Max-Age=" + "9" * 5000)
    assert parsed.expires_at is None
    assert parsed.max_age is not None
    assert parsed.max_age > 0
    assert parse_set_cookie("a=b; Max-Age=-3").is_deletion(0.0)
    assert parse_set_cookie("bare").name == ""


# --- IETF http-state vectors ---------------------------------------------------------------


@pytest.mark.parametrize("case", VECTORS, ids=[c["test"] for c in VECTORS])
def test_http_state_sent_cookies_parse_back_in_order(case: dict[str, Any]) -> None:
    """The Cookie header a compliant browser sends parses to exactly its pairs, in order.

    Values are compared after our one documented transform: one pair of DQUOTEs stripped.
    """
    sent = [(c["name"], c["value"]) for c in case["sent"]]
    header = "; ".join(f"{name}={value}" for name, value in sent)
    expected = [(name, dequoted(value)) for name, value in sent]
    assert parse_cookie_pairs(header) == expected
    assert parse_cookie_pairs(header.encode()) == expected
    first: dict[str, str] = {}
    for name, value in expected:
        first.setdefault(name, value)
    assert parse_cookie_header(header) == first
