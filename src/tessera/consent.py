"""Cookie consent: categories, a registry of every cookie, the consent cookie, and enforcement.

The rule (ePrivacy art. 5(3), GDPR consent): a cookie that is not strictly necessary is only
stored after the visitor agreed to its category. Enforcement is at the last point a cookie
passes, the outgoing Set-Cookie list, so application code cannot forget it; and it fails
closed: a cookie nobody declared has no lawful basis and is dropped.

Sans-IO: everything here works on parsed Cookie headers, :class:`~tessera.cookies.Cookie`
objects or raw Set-Cookie strings; :mod:`tessera.asgi.consent` adapts it to ASGI.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
from collections.abc import Iterable, Iterator, Mapping

from tessera.clock import SYSTEM_CLOCK, Clock
from tessera.cookies import (
    HOST_PREFIX,
    SECURE_PREFIX,
    Cookie,
    CookiePolicy,
    KeySource,
    SignedCookies,
    parse_set_cookie,
    strip_prefix,
)
from tessera.cookies._cookie import has_prefix
from tessera.errors import ConfigError, ConsentRequired, CookieError
from tessera.metrics import Metrics

_LOG = logging.getLogger("tessera.consent")

#: Six months: long enough not to nag, short enough that a choice is renewed (CNIL guidance).
DEFAULT_CONSENT_MAX_AGE = 180 * 86400
_MAX_PAYLOAD_BYTES = 512


class Category(enum.StrEnum):
    """Why a cookie exists, as a consent banner groups them.

    ``essential`` needs no consent and cannot be refused: session, authentication, security
    (CSRF, consent itself) and load-balancing cookies. Every other category is opt-in.
    """

    ESSENTIAL = "essential"
    PREFERENCES = "preferences"
    ANALYTICS = "analytics"
    ADVERTISING = "advertising"
    SOCIAL = "social"
    MULTIMEDIA = "multimedia"


@dataclasses.dataclass(frozen=True, slots=True)
class CookieDeclaration:
    """One cookie the application may set: its bare name, category and stated purpose.

    ``domain``/``path`` are where the cookie lives, so that a withdrawal can delete it (a
    deletion only reaches a cookie with the same name, domain and path).
    """

    name: str
    category: Category
    purpose: str
    domain: str | None = None
    path: str = "/"

    def __post_init__(self) -> None:
        if not isinstance(self.category, Category):
            raise ConsentRequired(
                f"cookie {self.name!r} needs a Category, not {self.category!r}",
                code="consent_category_invalid",
            )
        if has_prefix(self.name, HOST_PREFIX) or has_prefix(self.name, SECURE_PREFIX):
            raise ConfigError(
                f"declare {self.name!r} by its bare name; the policy chooses the prefix"
            )
        if not isinstance(self.purpose, str) or not self.purpose.strip():
            raise ConfigError(f"cookie {self.name!r} needs a purpose visitors can read")
        # Validates the name (a non-empty token) and domain/path with the cookie rules.
        if self.name == "":
            raise CookieError("a declared cookie needs a name", code="cookie_name_invalid")
        Cookie(self.name, "", domain=self.domain, path=self.path)


class CookieRegistry:
    """Every cookie the application sets, looked up by name; immutable once built.

    Lookup ignores a ``__Host-``/``__Secure-`` prefix (any case): the policy adds the prefix
    in production and not in development, and it is one cookie either way. Names are
    otherwise case-sensitive, as cookies are. ``consent_version`` goes up when the list of
    cookies changes materially; consent given for an older version no longer counts.
    """

    __slots__ = ("_by_name", "consent_version")

    def __init__(
        self, declarations: Iterable[CookieDeclaration], *, consent_version: int = 1
    ) -> None:
        if isinstance(consent_version, bool) or not isinstance(consent_version, int):
            raise ConfigError("consent_version must be an int")
        if consent_version < 1:
            raise ConfigError("consent_version starts at 1")
        self.consent_version = consent_version
        self._by_name: dict[str, CookieDeclaration] = {}
        for declaration in declarations:
            if declaration.name in self._by_name:
                raise ConfigError(f"cookie {declaration.name!r} is declared twice")
            self._by_name[declaration.name] = declaration

    def lookup(self, name: str) -> CookieDeclaration | None:
        """The declaration of a cookie name as sent or set (prefix ignored), or None."""
        return self._by_name.get(strip_prefix(name))

    def in_category(self, category: Category) -> tuple[CookieDeclaration, ...]:
        return tuple(d for d in self._by_name.values() if d.category is category)

    def __iter__(self) -> Iterator[CookieDeclaration]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)


@dataclasses.dataclass(frozen=True, slots=True)
class ConsentState:
    """A visitor's choice. ``decided_at`` None means undecided: show the banner.

    ``essential`` is always granted; it is added here so no caller has to remember it.
    """

    version: int
    granted: frozenset[Category] = frozenset()
    decided_at: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "granted", frozenset(self.granted) | {Category.ESSENTIAL})

    @classmethod
    def undecided(cls, version: int) -> ConsentState:
        return cls(version)

    @property
    def decided(self) -> bool:
        return self.decided_at is not None

    def allows(self, category: Category) -> bool:
        return category in self.granted


class ConsentCookie:
    """The signed, versioned essential cookie that remembers a :class:`ConsentState`.

    Signed, not encrypted: the visitor may read their own choice, but a script on a sibling
    subdomain must not forge one. Payload: compact JSON ``{"v", "g", "t"}``.
    """

    __slots__ = ("_clock", "_policy", "_registry", "_signer", "max_age", "name")

    def __init__(
        self,
        keys: KeySource,
        *,
        registry: CookieRegistry,
        policy: CookiePolicy,
        clock: Clock = SYSTEM_CLOCK,
        metrics: Metrics | None = None,
        name: str = "consent",
        max_age: int = DEFAULT_CONSENT_MAX_AGE,
    ) -> None:
        declaration = registry.lookup(name)
        if declaration is None or declaration.category is not Category.ESSENTIAL:
            raise ConfigError(f"declare the consent cookie {name!r} as essential")
        self.name = policy.name(name)
        self.max_age = max_age
        self._registry = registry
        self._policy = policy
        self._clock = clock
        self._signer = SignedCookies(
            keys, purpose="consent", max_age=max_age, clock=clock, metrics=metrics
        )

    def decide(self, granted: Iterable[Category]) -> ConsentState:
        """A fresh decision, for the registry's current version, made now."""
        return ConsentState(self._registry.consent_version, frozenset(granted), self._clock.now())

    def read(self, request_cookies: Mapping[str, str]) -> ConsentState:
        """The visitor's consent from their Cookie header; undecided when absent or invalid."""
        value = request_cookies.get(self.name)
        return self.decode(value) if value is not None else self._undecided()

    def decode(self, value: str) -> ConsentState:
        """The state in a consent cookie value; undecided if forged, expired or outdated."""
        payload = self._signer.unsign(self.name, value)
        if payload is None or len(payload) > _MAX_PAYLOAD_BYTES:
            return self._undecided()
        try:
            data = json.loads(payload)
            version, names, decided_at = data["v"], data["g"], data["t"]
            granted = frozenset(Category(n) for n in names)
        except (ValueError, TypeError, KeyError):
            # Genuine but unreadable (a category since removed): ask again.
            return self._undecided()
        if type(version) is not int or type(decided_at) is not int:
            return self._undecided()
        if version != self._registry.consent_version:
            # The cookie list changed since (or a rollback): the old choice is not informed.
            return self._undecided()
        return ConsentState(version, granted, float(decided_at))

    def cookie(self, state: ConsentState) -> Cookie:
        """The Set-Cookie remembering a decided ``state``."""
        if state.decided_at is None:
            raise ConfigError("only a decision is remembered; an undecided state is not")
        payload = json.dumps(
            {
                "v": state.version,
                "g": sorted(c.value for c in state.granted),
                "t": int(state.decided_at),
            },
            separators=(",", ":"),
        ).encode()
        value = self._signer.sign(self.name, payload)
        return self._policy.cookie(self.name, value, max_age=self.max_age)

    def _undecided(self) -> ConsentState:
        return ConsentState.undecided(self._registry.consent_version)


class ConsentEnforcer:
    """Filters outgoing Set-Cookies by consent, and deletes cookies a new choice refuses."""

    __slots__ = ("_clock", "_logger", "_metrics", "_policy", "_registry")

    def __init__(
        self,
        registry: CookieRegistry,
        *,
        policy: CookiePolicy,
        clock: Clock = SYSTEM_CLOCK,
        metrics: Metrics | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._registry = registry
        self._policy = policy
        self._clock = clock
        self._metrics = metrics if metrics is not None else Metrics()
        self._logger = logger if logger is not None else _LOG

    def filter(
        self,
        set_cookies: Iterable[Cookie | str],
        *,
        consent: ConsentState,
        request_cookies: Mapping[str, str] | None = None,
    ) -> list[Cookie | str]:
        """The Set-Cookies that may go out, in order, same objects as given.

        Deletions always pass (removing a cookie needs no consent). Undeclared cookies are
        dropped with a warning; declared ones whose category lacks consent are dropped.
        With ``request_cookies`` (pass them when ``consent`` is a new decision), deletions are
        appended for every cookie present whose category ``consent`` does not allow.
        """
        now = self._clock.now()
        kept: list[Cookie | str] = []
        deleted: set[str] = set()
        for item in set_cookies:
            parsed = item if isinstance(item, Cookie) else parse_set_cookie(item)
            if parsed.is_deletion(now):
                kept.append(item)
                deleted.add(parsed.name)
                continue
            declaration = self._registry.lookup(parsed.name)
            if declaration is None:
                self._metrics.incr("consent.cookie_dropped")
                self._metrics.incr("consent.cookie_undeclared")
                self._logger.warning(
                    "dropped Set-Cookie %r: the cookie is not declared in the registry",
                    parsed.name,
                )
            elif not consent.allows(declaration.category):
                self._metrics.incr("consent.cookie_dropped")
                self._logger.info(
                    "dropped Set-Cookie %r: no consent for %s",
                    parsed.name,
                    declaration.category.value,
                )
            else:
                kept.append(item)
        if request_cookies is not None:
            for deletion in self.refused_deletions(consent, request_cookies):
                if deletion.name not in deleted:
                    kept.append(deletion)
        return kept

    def refused_deletions(
        self, consent: ConsentState, request_cookies: Mapping[str, str]
    ) -> list[Cookie]:
        """Deletions for the declared cookies present that ``consent`` does not allow.

        Broader than "granted before, not now" on purpose: after a version bump or a lost
        consent cookie the old grant is unknown, yet its cookies are still in the browser.
        """
        deletions: list[Cookie] = []
        for name in request_cookies:
            declaration = self._registry.lookup(name)
            if declaration is None or consent.allows(declaration.category):
                continue
            deletion = self._deletion(name, declaration)
            if deletion is not None:
                deletions.append(deletion)
        return deletions

    def _deletion(self, name: str, declaration: CookieDeclaration) -> Cookie | None:
        host_only = has_prefix(name, HOST_PREFIX)
        secure = self._policy.secure or host_only or has_prefix(name, SECURE_PREFIX)
        try:
            return Cookie(
                name,
                "",
                domain=None if host_only else declaration.domain,
                path="/" if host_only else declaration.path,
                secure=secure,
                http_only=self._policy.http_only,
                same_site=self._policy.same_site,
            ).deletion()
        except CookieError:
            # A request name that only resembles a declared one (odd prefix case, say):
            # nothing we could delete; never let request input fail the response.
            self._logger.info("cannot build a deletion for cookie %r", name)
            return None


class ConsentManager:
    """The consent cookie and the enforcer, configured once, for middleware and endpoints."""

    __slots__ = ("_logger", "cookie", "enforcer", "registry")

    def __init__(
        self,
        registry: CookieRegistry,
        keys: KeySource,
        *,
        policy: CookiePolicy,
        clock: Clock = SYSTEM_CLOCK,
        metrics: Metrics | None = None,
        logger: logging.Logger | None = None,
        cookie_name: str = "consent",
        max_age: int = DEFAULT_CONSENT_MAX_AGE,
    ) -> None:
        metrics = metrics if metrics is not None else Metrics()
        self.registry = registry
        self._logger = logger if logger is not None else _LOG
        self.cookie = ConsentCookie(
            keys,
            registry=registry,
            policy=policy,
            clock=clock,
            metrics=metrics,
            name=cookie_name,
            max_age=max_age,
        )
        self.enforcer = ConsentEnforcer(
            registry, policy=policy, clock=clock, metrics=metrics, logger=logger
        )

    def consent_response_cookies(
        self,
        old_state: ConsentState,
        new_state: ConsentState,
        request_cookies: Mapping[str, str],
    ) -> list[Cookie]:
        """What a consent endpoint sets: the new consent cookie, then deletions it requires.

        ``old_state`` is what the request carried; categories it granted and ``new_state``
        does not are the withdrawals, logged by category. Deletions cover every present
        cookie ``new_state`` refuses (see :meth:`ConsentEnforcer.refused_deletions`).
        """
        withdrawn = old_state.granted - new_state.granted if old_state.decided else frozenset()
        if withdrawn:
            self._logger.info(
                "consent withdrawn for %s", ", ".join(sorted(c.value for c in withdrawn))
            )
        return [
            self.cookie.cookie(new_state),
            *self.enforcer.refused_deletions(new_state, request_cookies),
        ]
