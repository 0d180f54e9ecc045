"""Access-token claims (RFC 9068 profile): the frozen result of a verification, and its checks.

Claim checks are kept apart from the signature check (as PyJWT and joserfc do) and read the
injected clock with a leeway, never ``time.time()``: tests travel in time, and every check of a
token's lifetime is in this one module.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Final

from tessera.errors import InvalidInput, InvalidToken

ACCESS_TOKEN_TYP: Final = "at+jwt"  # noqa: S105 (a media type, not a secret)
"""RFC 9068 §2.1; ``application/at+jwt`` is accepted too (RFC 7515 §4.1.9), case-insensitively."""

DEFAULT_LEEWAY: Final = 30.0
"""Seconds of clock skew tolerated on exp, iat and nbf."""

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
_SCOPE_TOKEN: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def normalize_scope(scope: str | list[str] | tuple[str, ...] | frozenset[str] | set[str]) -> str:
    """The space-separated scope string, duplicates removed, first-seen order kept."""
    items = scope.split(" ") if isinstance(scope, str) else list(scope)
    seen: dict[str, None] = {}
    for item in items:
        if item == "" and isinstance(scope, str):
            continue  # tolerate doubled spaces in a string; a list must hold real tokens
        if not isinstance(item, str) or _SCOPE_TOKEN.fullmatch(item) is None:
            raise InvalidInput(f"invalid scope token {item!r}", code="invalid_scope")
        seen[item] = None
    return " ".join(seen)


def is_access_token_typ(typ: object) -> bool:
    """True for ``at+jwt`` and ``application/at+jwt`` in any letter case."""
    if type(typ) is not str:
        return False
    lowered = typ.lower()
    return lowered == ACCESS_TOKEN_TYP or lowered == "application/" + ACCESS_TOKEN_TYP


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """The claims of a verified access token. Times are Unix seconds."""

    iss: str
    sub: str
    """The user id."""
    aud: tuple[str, ...]
    exp: float
    iat: float
    jti: str
    sid: str
    """The public handle of the session the token belongs to (revocation works through it)."""
    client_id: str
    scope: str = ""
    nbf: float | None = None
    kid: str | None = None
    """The key that signed the token (not a claim; useful for logs and key-rotation metrics)."""

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(self.scope.split()) if self.scope else frozenset()

    def has_scope(self, *needed: str) -> bool:
        """True when the token grants every scope in ``needed``."""
        return self.scopes.issuperset(needed)

    def to_payload(self) -> dict[str, Any]:
        """The JWT claims set, as it is signed (a single audience stays a string)."""
        payload: dict[str, Any] = {
            "iss": self.iss,
            "sub": self.sub,
            "aud": self.aud[0] if len(self.aud) == 1 else list(self.aud),
            "exp": self.exp,
            "iat": self.iat,
        }
        if self.nbf is not None:
            payload["nbf"] = self.nbf
        payload.update(jti=self.jti, sid=self.sid, client_id=self.client_id, scope=self.scope)
        return payload


def _string(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if type(value) is not str or not value:
        raise InvalidToken("malformed", f"claim {name} missing or not a string")
    return value


def _optional_number(claims: dict[str, Any], name: str) -> float | None:
    return None if claims.get(name) is None else _number(claims, name)


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    # bool is an int subclass: {"exp": true} must not pass as 1.
    if type(value) is not int and type(value) is not float:
        raise InvalidToken("malformed", f"claim {name} missing or not a number")
    if not math.isfinite(value):
        raise InvalidToken("malformed", f"claim {name} is not finite")
    return value


def parse_claims(claims: dict[str, Any], kid: str | None = None) -> AccessClaims:
    """Typed claims from a decoded payload; ``malformed`` when a claim is absent or mistyped."""
    aud = claims.get("aud")
    if type(aud) is str:
        audiences: tuple[str, ...] = (aud,)
    elif type(aud) is list and aud and all(type(a) is str for a in aud):
        audiences = tuple(aud)
    else:
        raise InvalidToken("malformed", "claim aud missing or not a string")
    scope = claims.get("scope", "")
    if type(scope) is not str:
        raise InvalidToken("malformed", "claim scope is not a string")
    return AccessClaims(
        iss=_string(claims, "iss"),
        sub=_string(claims, "sub"),
        aud=audiences,
        exp=_number(claims, "exp"),
        iat=_number(claims, "iat"),
        jti=_string(claims, "jti"),
        sid=_string(claims, "sid"),
        client_id=_string(claims, "client_id"),
        scope=scope,
        nbf=_optional_number(claims, "nbf"),
        kid=kid,
    )


def check_claims(
    claims: AccessClaims, *, issuer: str, audience: str, now: float, leeway: float
) -> None:
    """Issuer, audience and lifetime checks against ``now``; :class:`InvalidToken` on failure."""
    if claims.iss != issuer:
        raise InvalidToken("wrong_issuer", "token issued by another issuer")
    if audience not in claims.aud:
        raise InvalidToken("wrong_audience", "token is for another audience")
    check_lifetime(claims, now=now, leeway=leeway)


def check_lifetime(claims: AccessClaims, *, now: float, leeway: float) -> None:
    """Expired, or not yet valid (iat or nbf in the future beyond the leeway)."""
    if now >= claims.exp + leeway:
        raise InvalidToken("expired", "token expired")
    if claims.iat > now + leeway or (claims.nbf is not None and claims.nbf > now + leeway):
        raise InvalidToken("not_yet_valid", "token not yet valid")
