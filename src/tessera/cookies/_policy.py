"""Secure defaults for every cookie an application sets, with one named development mode."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING, TypedDict, Unpack

from tessera.cookies._cookie import (
    HOST_PREFIX,
    SECURE_PREFIX,
    Cookie,
    SameSite,
    has_prefix,
)
from tessera.errors import CookieError

if TYPE_CHECKING:
    from tessera.config import Settings


class CookieOverrides(TypedDict, total=False):
    """Per-cookie departures from the policy's defaults."""

    max_age: int | None
    expires: datetime | float | None
    domain: str | None
    path: str
    secure: bool
    http_only: bool
    same_site: SameSite | None
    partitioned: bool


@dataclasses.dataclass(frozen=True, slots=True)
class CookiePolicy:
    """Defaults for cookies: Secure, HttpOnly, SameSite=Lax, Path=/, host-only.

    The only sanctioned way to drop Secure is :meth:`development` (plain-http localhost), so a
    production deployment cannot lose it by a forgotten flag. Prefixes are chosen by
    :meth:`name`, never hard-coded by callers: ``__Host-`` needs Secure, which development mode
    lacks, so a hard-coded ``"__Host-session"`` would be refused there.
    """

    secure: bool = True
    http_only: bool = True
    same_site: SameSite | None = "Lax"
    path: str = "/"
    domain: str | None = None

    def __post_init__(self) -> None:
        # A policy whose every cookie would be refused (SameSite=None without Secure, a bad
        # Domain) is refused at once, at configuration time.
        Cookie(
            "probe",
            "",
            domain=self.domain,
            path=self.path,
            secure=self.secure,
            http_only=self.http_only,
            same_site=self.same_site,
        )

    @classmethod
    def development(cls) -> CookiePolicy:
        """Plain-http localhost: everything as in production except Secure (and so prefixes)."""
        return cls(secure=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> CookiePolicy:
        """The policy the settings ask for (``dev`` selects :meth:`development`)."""
        return cls.development() if settings.dev else cls()

    @property
    def is_development(self) -> bool:
        """True when cookies go out without Secure."""
        return not self.secure

    def name(self, base: str) -> str:
        """The cookie name to use for ``base``: the strongest prefix this policy can honour.

        ``__Host-`` (Secure, no Domain, Path=/) binds the cookie to this exact origin, so a
        sibling subdomain cannot overwrite it; ``__Secure-`` when a Domain or a narrower Path is
        configured; no prefix in development mode, where Secure is off.
        """
        if has_prefix(base, HOST_PREFIX) or has_prefix(base, SECURE_PREFIX):
            raise CookieError(
                f"pass the bare name, not {base!r}: the policy chooses the prefix",
                code="cookie_name_invalid",
            )
        if not self.secure:
            return base
        if self.domain is None and self.path == "/":
            return HOST_PREFIX + base
        return SECURE_PREFIX + base

    def cookie(self, name: str, value: str, **overrides: Unpack[CookieOverrides]) -> Cookie:
        """A cookie with this policy's defaults, then ``overrides``; validated as any Cookie."""
        attributes: CookieOverrides = {
            "domain": self.domain,
            "path": self.path,
            "secure": self.secure,
            "http_only": self.http_only,
            "same_site": self.same_site,
        }
        attributes.update(overrides)
        return Cookie(name, value, **attributes)
