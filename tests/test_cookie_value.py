"""cookie_value, the one-cookie lookup of the session hot path, answers exactly as the parser."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from tessera.cookies._parse import cookie_value, parse_cookie_header

NAMES = ["session", "__Host-session", "s", "", "a b", "se;ssion", "sess=ion", "sessión"]

# Headers built from the pieces that matter to the parser (separators, blanks, quotes, the
# names themselves, longer names containing them) plus arbitrary bytes, invalid UTF-8 included.
FRAGMENTS = st.sampled_from(
    [
        *(b";", b"; ", b"=", b" ", b"\t", b'"', b"session", b"__Host-", b"my", b"s", b"x"),
        *(b"\xff", b"\xe2\x82", b"\xc3\xa9", "sessión".encode()),
    ]
)
HEADERS = st.lists(FRAGMENTS | st.binary(max_size=6), max_size=24).map(b"".join)


@given(
    header=HEADERS,
    name=st.sampled_from(NAMES),
    max_bytes=st.integers(min_value=0, max_value=80),
    max_cookies=st.integers(min_value=0, max_value=6),
)
@example(header=b"mysession=1; session=2", name="session", max_bytes=8192, max_cookies=128)
@example(header=b" session =3; session=4", name="session", max_bytes=8192, max_cookies=128)
@example(header=b"a=1;session=\xe2;b=\xff", name="session", max_bytes=8192, max_cookies=128)
@example(header=b'session=" v "; session=2', name="session", max_bytes=8192, max_cookies=128)
@example(header=b"a=1;b=2;session=3", name="session", max_bytes=8192, max_cookies=2)
@example(header=b"a=1;session=3", name="session", max_bytes=12, max_cookies=128)
@example(header=b"session=1", name="session", max_bytes=8192, max_cookies=0)
@example(header=b"a=1;\t session\t=2", name="session", max_bytes=8192, max_cookies=128)
@example(header=b'session=\t"v"\t', name="session", max_bytes=8192, max_cookies=128)
@example(header=b";session=1", name="session", max_bytes=8192, max_cookies=1)
def test_cookie_value_equals_the_full_parse(
    header: bytes, name: str, max_bytes: int, max_cookies: int
) -> None:
    """Whatever the header, name and caps, the lookup returns the parser's first occurrence."""
    expected = parse_cookie_header(header, max_bytes=max_bytes, max_cookies=max_cookies).get(name)
    assert cookie_value(header, name, max_bytes=max_bytes, max_cookies=max_cookies) == expected


@given(header=HEADERS, name=st.sampled_from(NAMES))
def test_cookie_value_with_default_caps_equals_the_full_parse(header: bytes, name: str) -> None:
    """With the default caps (the middleware's case) the fast path answers as the parser."""
    assert cookie_value(header, name) == parse_cookie_header(header).get(name)


@given(header=HEADERS.map(lambda b: b.decode("utf-8", "replace")), name=st.sampled_from(NAMES))
def test_cookie_value_of_a_str_header_equals_the_full_parse(header: str, name: str) -> None:
    """A str header gets the parser's answer too."""
    assert cookie_value(header, name) == parse_cookie_header(header).get(name)


def test_cookie_value_of_a_non_header_is_none() -> None:
    """Like the parser, anything but str or bytes is an empty header, not an exception."""
    assert cookie_value(None, "session") is None  # type: ignore[arg-type]
