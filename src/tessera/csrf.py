"""CSRF protection: a synchronizer token bound to the session, plus Origin / Sec-Fetch checks.

Written by hand because the available libraries either bind tokens to a separate cookie
(double submit, which subdomains can overwrite) or to one framework. The scheme:

* Each session holds a random CSRF secret (``session["_csrf"]``), created on first use and
  replaced when the session is rotated at login, so a token fixed before login is useless after.
* A visitor without a stored session (the login page, the consent banner) keeps that secret in a
  cookie of its own instead (:class:`PreSession`, see :func:`binding_for`): storing a session
  for every anonymous page view would write to the store for each crawler request, and grow it
  with each cookie-less client. That cookie is HttpOnly and, outside development mode,
  ``__Host-`` prefixed, so no subdomain can plant one (in development mode a sibling host
  could, and the origin check below is what stands); a token is an HMAC of it under the
  server's key, so a page elsewhere can neither read nor forge one. Once a session is stored or
  logged in, only its own secret counts: a pre-login token dies at login, and the server
  replaces the cookie at login and logout.
* The token for that session is ``HMAC-SHA256(key, "tessera.csrf" || secret)`` with the newest
  HMAC key of the key ring; verification accepts every active key (rotation never breaks open
  forms). A leaked session store alone therefore does not give an attacker valid tokens.
* Each response gets the token *masked* with a fresh random pad (``pad || pad XOR token``), so the
  bytes differ on every page and compression side channels (BREACH) cannot recover it.
* Independently, browsers tell us where a request comes from: ``Sec-Fetch-Site`` other than
  ``same-origin``/``none``, or an ``Origin`` that is not ours, is refused before the token is
  even looked at.

All of this is sans-IO: plain strings and a mapping for the session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tessera.errors import TesseraError
from tessera.keys import HmacKey

SESSION_KEY = "_csrf"
PRESESSION_COOKIE = "csrf"
"""The cookie (before the policy's prefix) holding the secret of a visitor with no stored
session."""
FORM_FIELD = "csrf_token"
HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

_TOKEN_BYTES = 32
_MAX_PRESENTED = 256
"""A masked token is 86 characters; anything far longer is noise and is not decoded."""


class CsrfFailed(TesseraError):
    """A state-changing request did not prove it comes from our own pages."""

    code = "csrf_failed"
    http_status = 403

    def __init__(self, reason: str, description: str) -> None:
        self.reason = reason
        super().__init__(description)

    def to_dict(self) -> dict[str, str]:
        return {"error": self.code, "reason": self.reason, "error_description": self.message}


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes | None:
    if len(text) > _MAX_PRESENTED:
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        return None


KeySource = Callable[[], Sequence[HmacKey]]


@dataclass(frozen=True, slots=True)
class CsrfProtector:
    """Issues and checks masked synchronizer tokens for a session mapping."""

    keys: KeySource
    """Newest-first HMAC keys; signs with the first, verifies with all."""

    def _token_for(self, key: HmacKey, secret: str) -> bytes:
        message = b"tessera.csrf\x00" + secret.encode("ascii")
        return hmac.new(key.secret, message, hashlib.sha256).digest()

    @staticmethod
    def ensure_secret(session: MutableMapping[str, Any]) -> str:
        """The session's CSRF secret, created on first use."""
        secret = session.get(SESSION_KEY)
        if not isinstance(secret, str) or not secret:
            secret = secrets.token_urlsafe(_TOKEN_BYTES)
            session[SESSION_KEY] = secret
        return secret

    @staticmethod
    def reset(session: MutableMapping[str, Any]) -> None:
        """Replace the secret (at login): tokens issued before die with the old one.

        The new secret is made now, not on first use, so that it is stored with the login: the
        requests a browser sends right after (two tabs, an app fetching two tokens) all find it.
        Made on first use instead, each of them made its own and saved the session with it, the
        last save won, and the tokens the others had handed out were refused.
        """
        session[SESSION_KEY] = secrets.token_urlsafe(_TOKEN_BYTES)

    def token(self, session: MutableMapping[str, Any]) -> str:
        """A freshly masked token for this session (different bytes on every call)."""
        secret = self.ensure_secret(session)
        raw = self._token_for(self.keys()[0], secret)
        pad = secrets.token_bytes(len(raw))
        return _b64e(pad + bytes(a ^ b for a, b in zip(pad, raw, strict=True)))

    def verify(self, session: MutableMapping[str, Any], presented: str | None) -> None:
        """Raise :class:`CsrfFailed` unless ``presented`` is a token of this session."""
        if not presented:
            raise CsrfFailed("token_missing", "CSRF token missing")
        secret = session.get(SESSION_KEY)
        if not isinstance(secret, str) or not secret:
            raise CsrfFailed("no_session", "CSRF token does not belong to a session")
        masked = _b64d(presented)
        if masked is None or len(masked) != 2 * 32:
            raise CsrfFailed("token_malformed", "CSRF token malformed")
        pad, body = masked[:32], masked[32:]
        raw = bytes(a ^ b for a, b in zip(pad, body, strict=True))
        ok = False
        for key in self.keys():
            # Evaluate every key (no early exit) so timing does not reveal which one matched.
            ok |= hmac.compare_digest(raw, self._token_for(key, secret))
        if not ok:
            raise CsrfFailed("token_invalid", "CSRF token invalid")


_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{43}")
"""What :func:`secrets.token_urlsafe` makes of the 32 random bytes of a secret."""


class PreSession(dict[str, Any]):
    """The CSRF binding of a visitor with no stored session: the secret from its cookie.

    Used like a session by :class:`CsrfProtector`; :attr:`new_secret` says what cookie the
    response must set when the secret was made during this request.
    """

    def __init__(self, cookie_value: str | None) -> None:
        super().__init__()
        self.presented = (
            cookie_value
            if cookie_value is not None and _SECRET_RE.fullmatch(cookie_value)
            else None
        )
        if self.presented is not None:
            self[SESSION_KEY] = self.presented

    @property
    def new_secret(self) -> str | None:
        """The secret to send in the pre-session cookie, if this request made it."""
        secret = self.get(SESSION_KEY)
        return secret if isinstance(secret, str) and secret != self.presented else None


def binding_for(
    session: MutableMapping[str, Any] | None, presession_cookie: str | None
) -> MutableMapping[str, Any]:
    """What a CSRF token is bound to: the session, unless it is an anonymous one that is not
    stored and holds no secret yet, in which case the pre-session cookie's :class:`PreSession`.

    "Not stored" is the session's ``is_new`` and "anonymous" its ``user_id`` (Tessera's
    :class:`~tessera.sessions.Session`): a session logged in during this very request (a
    remember-me login, the login form) binds to itself, so a pre-login token never counts for a
    logged-in user. A session mapping without ``is_new`` (another framework's) is always used.
    """
    if session is not None and (
        SESSION_KEY in session
        or getattr(session, "is_new", False) is not True
        or getattr(session, "user_id", None) is not None
    ):
        return session
    return PreSession(presession_cookie)


def _origin_of(url: str) -> tuple[str, str] | None:
    """``(scheme, host:port)`` of an origin or URL; None for one that does not parse."""
    try:
        # Both raise ValueError on what a client may send: an unclosed IPv6 bracket
        # ("http://[::1"), a port that is no number or out of range.
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    port = port or {"http": 80, "https": 443}.get(parts.scheme)
    host = (parts.hostname or "").lower()
    return parts.scheme.lower(), f"{host}:{port}"


def check_origin(
    *,
    sec_fetch_site: str | None,
    origin: str | None,
    request_origin: str,
    trusted_origins: Sequence[str] = (),
) -> None:
    """Refuse a state-changing request that the browser says comes from elsewhere.

    ``request_origin`` is ``scheme://host[:port]`` of the request itself (from its Host header,
    which a browser sets to the target, so a cross-site page cannot forge it). When the browser
    sends neither header (old browsers, non-browser clients), this check passes and the token
    check alone decides.
    """
    if sec_fetch_site is not None:
        site = sec_fetch_site.strip().lower()
        if site not in ("same-origin", "none"):
            raise CsrfFailed("cross_site", f"cross-site request refused (Sec-Fetch-Site: {site})")
    if origin is None:
        return
    if origin.strip().lower() == "null":
        raise CsrfFailed("origin_null", "request from an opaque origin refused")
    theirs = _origin_of(origin.strip())
    allowed = {o for o in (_origin_of(u) for u in (request_origin, *trusted_origins)) if o}
    if theirs is None or theirs not in allowed:
        raise CsrfFailed("origin_mismatch", "request from another origin refused")
