"""Session IDs: 256 random bits for the cookie, their SHA-256 digest for the stores.

The raw ID only ever travels in the cookie. Stores key on the digest, so a leaked table or Redis
dump yields no usable cookie, and the digest doubles as a public handle (safe to show in a
"your sessions" page or the admin CLI) because it cannot be turned back into an ID.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from typing import Any

# CPython's own SHA-256 (``_sha2`` from 3.12, ``_sha256`` before) hashes a 43-byte ID in about
# two thirds of the instructions OpenSSL's does through hashlib: EVP sets up a context per call,
# and this runs on every request that carries a session cookie. Same digest either way.
_sha256: Callable[[bytes], Any]
try:
    from _sha2 import sha256 as _sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
except ImportError:
    try:
        from _sha256 import sha256 as _sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
    except ImportError:  # pragma: no cover - a Python built without them
        _sha256 = hashlib.sha256

ID_BYTES = 32
"""256 bits of entropy: far beyond guessing, whatever the number of live sessions."""

ID_LENGTH = 43
"""Length of ``token_urlsafe(32)``: 32 bytes in unpadded base64url."""

_BASE64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# 32 bytes = 256 bits = 42 full base64 characters (252 bits) plus one carrying the last 4 bits,
# whose two low bits are always zero. Checking that last character too rejects 3 in 4 of
# otherwise well-formed garbage without any store round trip.
_LAST = frozenset("AEIMQUYcgkosw048")
# Every base64url byte maps to "A", anything else to NUL: a well-formed ID translates to 43 "A"s.
_TO_A = bytes(0x41 if byte in _BASE64URL else 0 for byte in range(256))
_ALL_A = b"A" * ID_LENGTH


def new_session_id() -> str:
    """A fresh session ID for a cookie (the only place the raw ID lives)."""
    return secrets.token_urlsafe(ID_BYTES)


def is_well_formed(session_id: str) -> bool:
    """Whether ``session_id`` could have come from :func:`new_session_id` (no store needed)."""
    # A table lookup per byte where a regex fullmatch costs three times the instructions: this
    # runs on every request. (An ASCII str encodes to the same characters.)
    return (
        len(session_id) == ID_LENGTH
        and session_id[-1] in _LAST
        and session_id.isascii()
        and session_id.encode().translate(_TO_A) == _ALL_A
    )


def hash_session_id(session_id: str) -> str:
    """The SHA-256 hex digest stores key on (and the public handle of the session)."""
    return _sha256(session_id.encode("ascii")).hexdigest()  # type: ignore[no-any-return]
