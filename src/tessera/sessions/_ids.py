"""Session IDs: 256 random bits for the cookie, their SHA-256 digest for the stores.

The raw ID only ever travels in the cookie. Stores key on the digest, so a leaked table or Redis
dump yields no usable cookie, and the digest doubles as a public handle (safe to show in a
"your sessions" page or the admin CLI) because it cannot be turned back into an ID.
"""

from __future__ import annotations

import hashlib
import re
import secrets

ID_BYTES = 32
"""256 bits of entropy: far beyond guessing, whatever the number of live sessions."""

ID_LENGTH = 43
"""Length of ``token_urlsafe(32)``: 32 bytes in unpadded base64url."""

# 32 bytes = 256 bits = 42 full base64 characters (252 bits) plus one carrying the last 4 bits,
# whose two low bits are always zero. Checking that last character too rejects 3 in 4 of
# otherwise well-formed garbage without any store round trip.
_ID_RE = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")


def new_session_id() -> str:
    """A fresh session ID for a cookie (the only place the raw ID lives)."""
    return secrets.token_urlsafe(ID_BYTES)


def is_well_formed(session_id: str) -> bool:
    """Whether ``session_id`` could have come from :func:`new_session_id` (no store needed)."""
    return len(session_id) == ID_LENGTH and _ID_RE.fullmatch(session_id) is not None


def hash_session_id(session_id: str) -> str:
    """The SHA-256 hex digest stores key on (and the public handle of the session)."""
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()
