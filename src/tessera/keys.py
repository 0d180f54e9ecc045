"""The key ring: HMAC secrets and asymmetric signing keys, with rotation.

(Being extended: see the keys issue. ``HmacKey`` is the shape the cookie layer consumes.)
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class HmacKey:
    """One HMAC secret with its key id. ``repr`` never shows the secret."""

    kid: str
    secret: bytes = field(repr=False)
