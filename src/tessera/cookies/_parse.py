"""Parsers for what arrives from the network (Cookie) and what an app hands us (Set-Cookie).

Both are total: any str or bytes, including invalid UTF-8, yields a result and never an
exception, because a malformed header from a client must not become a 500.

Choices, following RFC 6265bis §5.4/§5.7 where the RFC speaks:

- Pieces are split on ``;`` only (a ``,`` belongs to the value, as browsers send it).
- Name and value are trimmed of spaces and tabs; one pair of surrounding DQUOTEs is removed
  from a value (``"a b"`` → ``a b``) and nothing is unescaped: RFC 6265 has no escapes, and
  Python's ``http.cookies`` octal unescaping is not what browsers sent.
- A piece without ``=`` is a *nameless* cookie (RFC 6265bis): name ``""``, the piece is its
  value. This is what a browser sends for ``Set-Cookie: =value``. Empty pieces are skipped.
- Duplicates: the first occurrence wins. Browsers order cookies by longest path first, so the
  first one is the cookie scoped most specifically to the requested path; a shadowing cookie
  set by a sibling subdomain on ``Path=/`` comes later and loses. :func:`parse_cookie_pairs`
  keeps every pair for callers that need to see the shadows.
- Caps: at most ``max_bytes`` are read (bytes for bytes input, characters for str input, one
  per byte of a latin-1 decoded ASGI header), cut back to the last ``;`` so no cookie is
  truncated mid-value; at most ``max_cookies`` pairs are returned. The defaults are what a
  browser may really send (:data:`MAX_HEADER_BYTES`, :data:`MAX_COOKIES`): a cookie past them
  reads as absent, so they must not be where a session cookie can still be.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from email.utils import parsedate_to_datetime

MAX_HEADER_BYTES = 16384
"""Bytes of a Cookie header read by default: what common servers accept in all (h11, as under
uvicorn, and Node: 16 KiB; nginx and Apache 8 KiB a line). Sites whose analytics and consent
cookies add up pass 8 KiB, and a session cookie beyond the cap would read as logged out."""

MAX_COOKIES = 256
"""Cookies of a header read by default: above the 180 per site that Chromium keeps."""

_WS = " \t"
_MAX_AGE = re.compile(r"-?[0-9]+")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An RFC 9110 token: what cookie names the fast lookup of :func:`cookie_value` handles."""


def _decode(header: str | bytes) -> str:
    if isinstance(header, str):
        return header
    # Tessera's own cookies are ASCII; foreign ones are most often UTF-8. Undecodable bytes
    # become U+FFFD rather than an error.
    return header.decode("utf-8", errors="replace")


def _truncate(header: str | bytes, max_bytes: int) -> str | bytes:
    if len(header) <= max_bytes:
        return header
    # Keep whole pieces only: cut at the last ';' that fits.
    end = max(max_bytes, 0) + 1
    cut = header.rfind(";", 0, end) if isinstance(header, str) else header.rfind(b";", 0, end)
    return header[: max(cut, 0)]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def parse_cookie_pairs(
    header: str | bytes, *, max_bytes: int = MAX_HEADER_BYTES, max_cookies: int = MAX_COOKIES
) -> list[tuple[str, str]]:
    """Every (name, value) of a Cookie header, in order, duplicates kept. Never raises."""
    if not isinstance(header, str | bytes):
        return []
    text = _decode(_truncate(header, max_bytes))
    pairs: list[tuple[str, str]] = []
    for piece in text.split(";"):
        if len(pairs) >= max_cookies:
            break
        name, sep, value = piece.partition("=")
        if not sep:
            name, value = "", name
        name = name.strip(_WS)
        value = _unquote(value.strip(_WS))
        if name == "" and value == "":
            continue
        pairs.append((name, value))
    return pairs


def parse_cookie_header(
    header: str | bytes, *, max_bytes: int = MAX_HEADER_BYTES, max_cookies: int = MAX_COOKIES
) -> dict[str, str]:
    """The cookies of a Cookie header by name, first occurrence winning. Never raises."""
    cookies: dict[str, str] = {}
    for name, value in parse_cookie_pairs(header, max_bytes=max_bytes, max_cookies=max_cookies):
        cookies.setdefault(name, value)
    return cookies


@functools.lru_cache(maxsize=64)
def _piece_named(name: str) -> re.Pattern[bytes] | None:
    """The first piece whose name is ``name``, for token names; cached (names are fixed)."""
    if not _TOKEN.fullmatch(name):
        return None
    # A piece's name is what precedes its first '=', trimmed of blanks: so the first piece
    # named ``name`` is the first match. The value runs to the next ';'.
    return re.compile(rb"(?:^|;)[ \t]*" + re.escape(name.encode("ascii")) + rb"[ \t]*=([^;]*)")


def cookie_value(
    header: str | bytes,
    name: str,
    *,
    max_bytes: int = MAX_HEADER_BYTES,
    max_cookies: int = MAX_COOKIES,
) -> str | None:
    """``parse_cookie_header(header, ...).get(name)``, without parsing every cookie. Never raises.

    A middleware wants one cookie on every request; one regex search finds it where the full
    parse builds a dict of all of them. The search is used for a bytes header under
    ``max_bytes`` and a token ``name``; str input, odd names, or a match that may lie past
    ``max_cookies`` go through the full parser. Either way the answer is the parser's: first
    occurrence wins, same trimming and unquoting.
    """
    if (
        isinstance(header, bytes)
        and len(header) <= max_bytes
        and (pattern := _piece_named(name)) is not None
    ):
        found = pattern.search(header)
        if found is None:
            return None
        # The match starts at its piece's ';' (or at 0): counting through it gives the piece's
        # index. Pieces before it may all be pairs that fill the cap (empty ones do not count,
        # so this is conservative: the parser decides when in doubt).
        if header.count(b";", 0, found.start() + 1) < max_cookies:
            # ';' and blanks are ASCII, which UTF-8 decoding never merges into a neighbouring
            # invalid sequence: decoding the value alone equals decoding the whole header.
            return _unquote(found[1].strip(b" \t").decode("utf-8", "replace"))
    return parse_cookie_header(header, max_bytes=max_bytes, max_cookies=max_cookies).get(name)


@dataclasses.dataclass(frozen=True, slots=True)
class SetCookieHeader:
    """What the server side needs to know of a raw Set-Cookie: who it is, and if it deletes.

    ``repr`` hides the value. Attributes other than Max-Age and Expires are not kept: the
    consent and budget checks act on names, and a deletion is recognised by its lifetime.
    """

    name: str
    value: str = dataclasses.field(repr=False)
    max_age: int | None = None
    expires_at: float | None = None

    def is_deletion(self, now: float) -> bool:
        """Whether a browser would delete the cookie at once (Max-Age wins over Expires)."""
        if self.max_age is not None:
            return self.max_age <= 0
        return self.expires_at is not None and self.expires_at <= now


def parse_set_cookie(header: str | bytes) -> SetCookieHeader:
    """Name, value and lifetime of a Set-Cookie header value, as RFC 6265bis §5.7 reads them.

    Never raises: an unparseable Max-Age or Expires is ignored, as a browser ignores it.
    """
    text = _decode(header) if isinstance(header, str | bytes) else ""
    pair, _, attributes = text.partition(";")
    name, sep, value = pair.partition("=")
    if not sep:
        name, value = "", name
    max_age: int | None = None
    expires_at: float | None = None
    for attribute in attributes.split(";"):
        key, _, attr_value = attribute.partition("=")
        key = key.strip(_WS).lower()
        attr_value = attr_value.strip(_WS)
        if key == "max-age" and _MAX_AGE.fullmatch(attr_value):
            # Last one wins, as in browsers; a huge number is still just "not a deletion".
            max_age = int(attr_value[:20])
        elif key == "expires":
            expires_at = _parse_date(attr_value)
    return SetCookieHeader(name.strip(_WS), value.strip(_WS), max_age, expires_at)


def _parse_date(text: str) -> float | None:
    try:
        when = parsedate_to_datetime(text)
        return when.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None
