"""The cookie layer: one serializer and one parser for every cookie Tessera touches.

Public surface: :class:`Cookie` (a valid Set-Cookie by construction), :class:`CookiePolicy`
(secure defaults, one development mode), :func:`parse_cookie_header` (total, capped),
:func:`parse_set_cookie`, :class:`CookieBudget`, and the value codecs :class:`SignedCookies`
and :class:`EncryptedCookies`. Rules broken raise :class:`tessera.errors.CookieError`.
"""

from __future__ import annotations

from tessera.cookies._budget import CookieBudget
from tessera.cookies._cookie import (
    HOST_PREFIX,
    MAX_AGE_LIMIT,
    MAX_ATTRIBUTE_BYTES,
    MAX_NAME_VALUE_BYTES,
    SECURE_PREFIX,
    Cookie,
    CookieChanges,
    SameSite,
    is_cookie_name,
    strip_prefix,
)
from tessera.cookies._parse import (
    SetCookieHeader,
    parse_cookie_header,
    parse_cookie_pairs,
    parse_set_cookie,
)
from tessera.cookies._policy import CookieOverrides, CookiePolicy
from tessera.cookies._signed import EncryptedCookies, KeySource, SignedCookies

__all__ = [
    "HOST_PREFIX",
    "MAX_AGE_LIMIT",
    "MAX_ATTRIBUTE_BYTES",
    "MAX_NAME_VALUE_BYTES",
    "SECURE_PREFIX",
    "Cookie",
    "CookieBudget",
    "CookieChanges",
    "CookieOverrides",
    "CookiePolicy",
    "EncryptedCookies",
    "KeySource",
    "SameSite",
    "SetCookieHeader",
    "SignedCookies",
    "is_cookie_name",
    "parse_cookie_header",
    "parse_cookie_pairs",
    "parse_set_cookie",
    "strip_prefix",
]
