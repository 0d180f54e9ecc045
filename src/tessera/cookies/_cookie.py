"""The ``Cookie`` value type: every rule a Set-Cookie must obey, checked when it is built.

Hand-written on purpose: ``http.cookies`` quotes values it should refuse and knows no prefixes,
SameSite=None or Partitioned rules; werkzeug's ``dump_cookie`` (the reference we read) serializes
well but leaves policy (prefixes, size limits, lifetime caps) to the caller. Here an invalid
cookie cannot exist: construction raises :class:`~tessera.errors.CookieError` whose ``code``
names the broken rule, so a bad header is a loud bug in development, never a cookie that a
browser silently drops (or worse, a header injection).

Rules follow RFC 6265 (grammar) and RFC 6265bis (prefixes, size limits, the 400-day cap,
nameless cookies), plus the browsers' SameSite=None and CHIPS (Partitioned) requirements.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Literal, TypedDict, Unpack

from tessera.errors import CookieError, CookieTooLarge

SameSite = Literal["Strict", "Lax", "None"]

#: RFC 6265bis §5.6: a user agent ignores a cookie whose name plus value exceed 4096 octets.
MAX_NAME_VALUE_BYTES = 4096
#: RFC 6265bis §5.6: a user agent ignores an attribute value longer than 1024 octets.
MAX_ATTRIBUTE_BYTES = 1024
#: RFC 6265bis §5.6.1/§5.6.2: browsers cap Max-Age and Expires at 400 days. We refuse a longer
#: Max-Age instead of clamping, so the lifetime a caller asks for is the lifetime they get.
MAX_AGE_LIMIT = 400 * 86400

HOST_PREFIX = "__Host-"
SECURE_PREFIX = "__Secure-"

_SAME_SITE_VALUES = frozenset({"Strict", "Lax", "None"})
# RFC 9110 token: the only characters a cookie name may have.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 6265 §4.1.1 cookie-value: cookie-octets, optionally inside one pair of DQUOTEs. The octets
# exclude CTLs, DEL, whitespace, DQUOTE, comma, semicolon, backslash and everything non-ASCII.
_COOKIE_OCTETS = r"[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]*"
_VALUE = re.compile(rf'{_COOKIE_OCTETS}|"{_COOKIE_OCTETS}"')
# Attribute values (Domain, Path): any visible ASCII except ';' (which would end the attribute).
_ATTRIBUTE = re.compile(r"[\x20-\x3A\x3C-\x7E]*")
# A Domain attribute is a host name (letters, digits, hyphens, dots; A-labels for IDNs).
_DOMAIN = re.compile(r"\.?[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def has_prefix(name: str, prefix: str) -> bool:
    """Whether ``name`` starts with ``prefix``, ignoring case as RFC 6265bis browsers do."""
    return name[: len(prefix)].lower() == prefix.lower()


def strip_prefix(name: str) -> str:
    """The bare name without a leading ``__Host-``/``__Secure-`` (any case)."""
    for prefix in (HOST_PREFIX, SECURE_PREFIX):
        if has_prefix(name, prefix):
            return name[len(prefix) :]
    return name


class CookieChanges(TypedDict, total=False):
    """Attributes :meth:`Cookie.updated` may change: everything except the cookie's identity."""

    value: str
    max_age: int | None
    expires: datetime | float | None
    secure: bool
    http_only: bool
    same_site: SameSite | None
    partitioned: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Cookie:
    """One Set-Cookie, valid by construction; ``repr`` hides the value (it may be a secret).

    ``expires`` is an aware datetime or seconds since the epoch. Unlike Max-Age it is not held
    to the 400-day cap here (a value type has no clock); browsers clamp it. A cookie is
    identified by (name, domain, path): :meth:`updated` and :meth:`deletion` keep those three.
    """

    name: str
    value: str = dataclasses.field(repr=False)
    max_age: int | None = None
    expires: datetime | float | None = None
    domain: str | None = None
    path: str = "/"
    secure: bool = True
    http_only: bool = True
    same_site: SameSite | None = "Lax"
    partitioned: bool = False

    def __post_init__(self) -> None:
        _check_name_value(self.name, self.value)
        _check_attributes(self)
        _check_prefixes(self)

    @property
    def expires_at(self) -> float | None:
        """``expires`` as seconds since the epoch (None for a session cookie)."""
        if self.expires is None:
            return None
        if isinstance(self.expires, datetime):
            return self.expires.timestamp()
        return float(self.expires)

    def is_deletion(self, now: float) -> bool:
        """Whether a browser receiving this cookie at ``now`` would delete it at once.

        Max-Age wins over Expires (RFC 6265 §5.3 step 3), as in browsers.
        """
        if self.max_age is not None:
            return self.max_age <= 0
        expires_at = self.expires_at
        return expires_at is not None and expires_at <= now

    def serialize(self) -> str:
        """The Set-Cookie header value."""
        # A nameless cookie (RFC 6265bis) is written "=value": without the '=' a browser would
        # take the value for the name in older parsers.
        parts = [f"{self.name}={self.value}"]
        expires_at = self.expires_at
        if expires_at is not None:
            parts.append(f"Expires={format_datetime(_to_utc(expires_at), usegmt=True)}")
        if self.max_age is not None:
            parts.append(f"Max-Age={self.max_age}")
        if self.domain is not None:
            parts.append(f"Domain={self.domain}")
        parts.append(f"Path={self.path}")
        if self.secure:
            parts.append("Secure")
        if self.http_only:
            parts.append("HttpOnly")
        if self.same_site is not None:
            parts.append(f"SameSite={self.same_site}")
        if self.partitioned:
            parts.append("Partitioned")
        return "; ".join(parts)

    def updated(self, **changes: Unpack[CookieChanges]) -> Cookie:
        """The same cookie (name, domain, path) with a new value or attributes, re-validated."""
        return dataclasses.replace(self, **changes)

    def deletion(self) -> Cookie:
        """The Set-Cookie that deletes this cookie in the browser.

        Same name, domain, path, Secure, SameSite and Partitioned (a browser matches on the first
        three, and refuses a prefixed or partitioned deletion that lacks the others); empty
        value, ``Max-Age=0`` and an Expires in 1970 for user agents that only know Expires. A
        nameless cookie keeps its value, as an empty name and value would be ignored.
        """
        return dataclasses.replace(
            self, value=self.value if self.name == "" else "", max_age=0, expires=0.0
        )


def _to_utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def is_cookie_name(name: str) -> bool:
    """Whether ``name`` may name a cookie: an RFC 6265 token (§4.1.1)."""
    return _TOKEN.fullmatch(name) is not None


def _check_name_value(name: object, value: object) -> None:
    if not isinstance(name, str) or (name != "" and not is_cookie_name(name)):
        raise CookieError(
            f"cookie name {name!r} is not an RFC 6265 token", code="cookie_name_invalid"
        )
    if not isinstance(value, str) or _VALUE.fullmatch(value) is None:
        # The value may be a secret: name the cookie, never echo the value.
        raise CookieError(
            f"value of cookie {name!r} has characters outside RFC 6265 cookie-octets "
            "(controls, whitespace, '\"', ',', ';', '\\' or non-ASCII)",
            code="cookie_value_invalid",
        )
    if name == "":
        if value == "":
            raise CookieError("a cookie needs a name or a value", code="cookie_name_invalid")
        if "=" in value:
            # The browser sends a nameless cookie as its bare value; "a=b" would come back as a
            # cookie named "a".
            raise CookieError(
                "a nameless cookie's value cannot contain '='", code="cookie_value_invalid"
            )
        if has_prefix(value, HOST_PREFIX) or has_prefix(value, SECURE_PREFIX):
            # RFC 6265bis §5.7 step 21: it would reach the server looking like a prefixed cookie.
            raise CookieError(
                "a nameless cookie's value must not start with __Host- or __Secure-",
                code="nameless_cookie_looks_prefixed",
            )
    size = len(name.encode()) + len(value.encode())
    if size > MAX_NAME_VALUE_BYTES:
        raise CookieTooLarge(
            f"cookie {name!r} is {size} bytes (name + value); browsers drop cookies over "
            f"{MAX_NAME_VALUE_BYTES}"
        )


def _check_attributes(cookie: Cookie) -> None:
    max_age = cookie.max_age
    if max_age is not None:
        if not isinstance(max_age, int) or isinstance(max_age, bool) or max_age < 0:
            raise CookieError(
                f"Max-Age of cookie {cookie.name!r} must be an int >= 0", code="max_age_invalid"
            )
        if max_age > MAX_AGE_LIMIT:
            raise CookieError(
                f"Max-Age of cookie {cookie.name!r} is over 400 days; browsers would cut it",
                code="max_age_too_long",
            )
    _check_expires(cookie)
    if cookie.domain is not None:
        _check_attribute_size(cookie.name, "Domain", cookie.domain)
        if not isinstance(cookie.domain, str) or _DOMAIN.fullmatch(cookie.domain) is None:
            raise CookieError(
                f"Domain of cookie {cookie.name!r} is not a host name", code="cookie_domain_invalid"
            )
    _check_attribute_size(cookie.name, "Path", cookie.path)
    if (
        not isinstance(cookie.path, str)
        or not cookie.path.startswith("/")
        or _ATTRIBUTE.fullmatch(cookie.path) is None
    ):
        # A Path not starting with '/' is silently replaced by the default path in browsers.
        raise CookieError(
            f"Path of cookie {cookie.name!r} must start with '/' and be printable ASCII "
            "without ';'",
            code="cookie_path_invalid",
        )
    for flag in ("secure", "http_only", "partitioned"):
        if not isinstance(getattr(cookie, flag), bool):
            raise CookieError(f"{flag} must be a bool", code="cookie_flag_invalid")
    if cookie.same_site is not None and cookie.same_site not in _SAME_SITE_VALUES:
        raise CookieError(
            f"SameSite must be 'Strict', 'Lax', 'None' or None, not {cookie.same_site!r}",
            code="samesite_invalid",
        )
    if cookie.same_site == "None" and not cookie.secure:
        raise CookieError(
            "browsers reject SameSite=None without Secure", code="samesite_none_requires_secure"
        )
    if cookie.partitioned and not cookie.secure:
        raise CookieError(
            "browsers reject Partitioned without Secure", code="partitioned_requires_secure"
        )


def _check_expires(cookie: Cookie) -> None:
    expires = cookie.expires
    if expires is None:
        return
    if isinstance(expires, datetime):
        if expires.tzinfo is None or expires.utcoffset() is None:
            # A naive datetime is ambiguous: local time or UTC? Refuse rather than guess.
            raise CookieError(
                f"Expires of cookie {cookie.name!r} must be an aware datetime",
                code="expires_invalid",
            )
        return
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        raise CookieError("Expires must be a datetime or epoch seconds", code="expires_invalid")
    try:
        when = _to_utc(expires)
    except (OverflowError, OSError, ValueError) as exc:
        raise CookieError(
            f"Expires of cookie {cookie.name!r} is not a representable date",
            code="expires_invalid",
        ) from exc
    if when < _EPOCH:
        raise CookieError("Expires before 1970 is not supported", code="expires_invalid")


def _check_attribute_size(name: str, attribute: str, value: object) -> None:
    if isinstance(value, str) and len(value.encode()) > MAX_ATTRIBUTE_BYTES:
        raise CookieError(
            f"{attribute} of cookie {name!r} is over {MAX_ATTRIBUTE_BYTES} bytes; browsers "
            "ignore it",
            code="attribute_too_large",
        )


def _check_prefixes(cookie: Cookie) -> None:
    # RFC 6265bis §4.1.3: matched case-insensitively, as current browsers do.
    if has_prefix(cookie.name, SECURE_PREFIX) and not cookie.secure:
        raise CookieError(
            f"cookie {cookie.name!r} has the __Secure- prefix and so needs Secure",
            code="secure_prefix_requires_secure",
        )
    if has_prefix(cookie.name, HOST_PREFIX):
        if not cookie.secure:
            raise CookieError(
                f"cookie {cookie.name!r} has the __Host- prefix and so needs Secure",
                code="host_prefix_requires_secure",
            )
        if cookie.domain is not None:
            raise CookieError(
                f"cookie {cookie.name!r} has the __Host- prefix and so must not set Domain",
                code="host_prefix_forbids_domain",
            )
        if cookie.path != "/":
            raise CookieError(
                f"cookie {cookie.name!r} has the __Host- prefix and so needs Path=/",
                code="host_prefix_requires_root_path",
            )
