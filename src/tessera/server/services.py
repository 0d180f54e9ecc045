"""The long-lived objects one server process holds, opened at startup and closed at shutdown.

Kept in one container so endpoints and middleware receive their dependencies explicitly (through
``request.app.state.services``) instead of reaching for globals. Which backend each record kind
uses follows ``Settings.session_store``: ``memory`` keeps sessions, throttling, refresh tokens and
revocation marks in this process; ``sql`` keeps them in the database; ``redis`` keeps them in
Redis (shared by every instance, with revocations pushed between instances by pub/sub). Users,
keys, remember-me tokens and security events always live in the SQL database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncEngine

from tessera.clock import Clock
from tessera.config import Settings
from tessera.consent import Category, CookieDeclaration, CookieRegistry
from tessera.cookies import CookiePolicy
from tessera.csrf import CsrfProtector
from tessera.errors import StoreUnavailable
from tessera.identity.accounts import UserService
from tessera.identity.events import DetailValue, EventKind, EventLog
from tessera.identity.passwords import PasswordHasher
from tessera.identity.remember import RememberMe
from tessera.identity.throttle import LoginThrottle
from tessera.identity.users import User
from tessera.keys_live import LiveKeyRing
from tessera.keys_store import open_key_store
from tessera.metrics import Metrics
from tessera.sessions import SessionManager
from tessera.stores import sql
from tessera.stores.factory import open_session_store
from tessera.stores.sql_events import SqlEventStore
from tessera.stores.sql_remember import SqlRememberStore
from tessera.stores.sql_users import SqlUserStore
from tessera.tokens import RefreshTokens, RevocationView, TokenIssuer, TokenVerifier
from tessera.tokens.cache import VerifiedTokenCache

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from tessera.identity.throttle import ThrottleStore
    from tessera.stores.refresh_tokens import RefreshTokenStore
    from tessera.stores.revocations import RevocationStore
    from tessera.stores.sessions import SessionStore

log = logging.getLogger("tessera.server")

HealthCheck = Callable[[], Awaitable[None]]

REMEMBER_COOKIE = "remember"
CONSENT_COOKIE = "consent"
THEME_COOKIE = "theme"
VISITS_COOKIE = "visits"
ACCESS_TOKEN_AUDIENCE = "tessera"  # noqa: S105 - an audience name, not a secret
"""The ``aud`` of first-party access tokens (the Tessera API itself)."""


def cookie_registry(settings: Settings) -> CookieRegistry:
    """Every cookie the server sets, with its consent category (names without prefixes)."""
    return CookieRegistry(
        [
            CookieDeclaration(
                settings.session_cookie_name,
                Category.ESSENTIAL,
                "Keeps you logged in during a visit (the server-side session ID).",
            ),
            CookieDeclaration(
                REMEMBER_COOKIE,
                Category.ESSENTIAL,
                "Logs you in again automatically, only if you ticked 'remember me'.",
            ),
            CookieDeclaration(CONSENT_COOKIE, Category.ESSENTIAL, "Remembers your cookie choices."),
            CookieDeclaration(
                THEME_COOKIE, Category.PREFERENCES, "Remembers the colour theme you chose."
            ),
            CookieDeclaration(
                VISITS_COOKIE, Category.ANALYTICS, "Counts your visits to show you the number."
            ),
        ],
        consent_version=1,
    )


class Revocation(NamedTuple):
    """What :meth:`Services.revoke_user_everywhere` ended."""

    sessions: int
    remember_tokens: int
    refresh_families: int


@dataclass
class Services:
    """Everything the app needs at request time."""

    settings: Settings
    clock: Clock
    engine: AsyncEngine
    keys: LiveKeyRing
    sessions: SessionManager
    users: UserService
    throttle: LoginThrottle
    events: EventLog
    remember: RememberMe
    csrf: CsrfProtector
    cookie_policy: CookiePolicy
    consent_registry: CookieRegistry
    issuer: TokenIssuer
    verifier: TokenVerifier
    refresh: RefreshTokens
    revocations: RevocationView
    metrics: Metrics = field(default_factory=Metrics)
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def cookie_name(self, base: str) -> str:
        """The name a cookie is set under: ``__Host-`` prefixed outside development mode."""
        return self.cookie_policy.name(base)

    async def revoke_user_everywhere(
        self, user_id: str, *, keep_session: str | None = None
    ) -> Revocation:
        """End every session, remember-me token, refresh family and access token of a user.

        ``keep_session`` (a public session handle) survives: the browser that changed the
        password stays logged in, everything else is cut off at once.
        """
        if keep_session is None:
            sessions = await self.sessions.revoke_all(user_id)
        else:
            sessions = await self.sessions.revoke_others(user_id, keep_session)
        remember_tokens = await self.remember.forget_user(user_id)
        refresh_families = await self.refresh.revoke_user(user_id)
        await self.revocations.revoke_user(user_id, self.clock.now())
        return Revocation(sessions, remember_tokens, refresh_families)

    async def revoke_session(
        self,
        user_id: str,
        public_id: str,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
        detail: Mapping[str, DetailValue] | None = None,
    ) -> bool:
        """End one of the user's sessions, browser or app, and its tokens at once; ``ip`` and
        ``user_agent`` (of whoever revoked it) go into the security event."""
        revoked = await self.sessions.revoke(user_id, public_id)
        if revoked:
            await self.end_session_tokens(
                user_id,
                public_id,
                EventKind.SESSION_REVOKED,
                ip=ip,
                user_agent=user_agent,
                detail=detail,
            )
        return revoked

    async def end_session_tokens(
        self,
        user_id: str,
        public_id: str,
        event: EventKind,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
        detail: Mapping[str, DetailValue] | None = None,
    ) -> None:
        """Kill a session's refresh families and access tokens now, and record ``event``.

        The revocation mark is set even when the session record is already gone (expired,
        swept): access tokens outlive nothing they should.
        """
        await self.refresh.revoke_session(public_id)
        await self.revocations.revoke_session(public_id, self.clock.now())
        await self.events.record(
            event,
            user_id=user_id,
            ip=ip,
            user_agent=user_agent,
            detail={"session": public_id[:12], **(detail or {})},
        )

    async def check_health(self) -> dict[str, str]:
        """``{part: "ok" | reason}`` for every registered part; never raises."""
        results: dict[str, str] = {}
        for name, check in self.health_checks.items():
            try:
                await check()
            except StoreUnavailable as exc:
                results[name] = exc.message
            except Exception as exc:  # a health probe must report, not crash
                results[name] = f"{name} check failed: {type(exc).__name__}"
            else:
                results[name] = "ok"
        return results

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                await close()
        await self.engine.dispose()


async def open_services(
    settings: Settings,
    clock: Clock,
    *,
    hasher: PasswordHasher | None = None,
    metrics: Metrics | None = None,
) -> Services:
    """Open the database (creating or migrating its schema) and everything built on it."""
    metrics = metrics or Metrics()
    engine = sql.create_engine(settings.database_url)
    closers: list[Callable[[], Awaitable[None]]] = []
    health: dict[str, HealthCheck] = {"database": lambda: sql.ping(engine)}
    try:
        await sql.ensure_schema(engine)
        keys = await LiveKeyRing.open(
            open_key_store(settings, engine), clock, signing_alg=settings.signing_algorithm
        )
        redis = _redis_client(settings) if settings.session_store == "redis" else None
        if redis is not None:
            closers.append(redis.aclose)
            from tessera.stores.redis_sessions import RedisSessionStore

            # Built here rather than by the factory so that it shares the client and the prefix.
            session_store: SessionStore = RedisSessionStore(redis, settings.redis_prefix)
        else:
            session_store = await open_session_store(settings, engine=engine, metrics=metrics)
        closers.append(session_store.close)
        if settings.session_store != "sql":
            health["sessions"] = session_store.ping
        throttle_store, refresh_store, revocation_store = _token_stores(
            settings, engine, redis, settings.redis_prefix
        )
    except BaseException:
        for close in reversed(closers):
            with contextlib.suppress(Exception):
                await close()
        await engine.dispose()
        raise

    sessions = SessionManager.from_settings(settings, session_store, clock, metrics)
    events = EventLog(SqlEventStore(engine), clock)
    remember = RememberMe(SqlRememberStore(engine), clock)
    revocations = RevocationView(
        revocation_store,
        clock,
        max_token_lifetime=settings.access_token_ttl,
        feed=revocation_store if redis is not None else None,  # type: ignore[arg-type]
    )
    await revocations.load()
    refresh = RefreshTokens(
        refresh_store, clock, family_ttl=settings.refresh_token_ttl, metrics=metrics
    )

    def ring() -> Any:
        return keys.ring

    services = Services(
        settings=settings,
        clock=clock,
        engine=engine,
        keys=keys,
        sessions=sessions,
        users=UserService(SqlUserStore(engine), hasher or PasswordHasher(), clock, events=events),
        throttle=LoginThrottle(throttle_store, clock, metrics=metrics),
        events=events,
        remember=remember,
        csrf=CsrfProtector(keys.hmac_keys),
        cookie_policy=CookiePolicy.from_settings(settings),
        consent_registry=cookie_registry(settings),
        issuer=TokenIssuer(
            ring, settings.issuer, ACCESS_TOKEN_AUDIENCE, settings.access_token_ttl, clock
        ),
        verifier=TokenVerifier(
            ring,
            settings.issuer,
            ACCESS_TOKEN_AUDIENCE,
            clock,
            revocations=revocations,
            cache=VerifiedTokenCache(),
            metrics=metrics,
        ),
        refresh=refresh,
        revocations=revocations,
        metrics=metrics,
        health_checks=health,
        closers=closers,
    )

    async def on_password_changed(user: User) -> None:
        await services.revoke_user_everywhere(user.id)

    services.users.on_password_changed.append(on_password_changed)
    services.users.on_disabled.append(on_password_changed)
    stop = asyncio.Event()
    services.closers.insert(0, _setter(stop))
    services.tasks.append(asyncio.create_task(keys.run(stop), name="tessera-key-reload"))
    services.tasks.append(asyncio.create_task(_sweep(services, stop), name="tessera-sweep"))
    if redis is not None:
        services.tasks.append(
            asyncio.create_task(_listen(revocations, stop), name="tessera-revocations")
        )
    elif settings.session_store == "sql":
        services.tasks.append(
            asyncio.create_task(_reload(revocations, stop), name="tessera-revocations")
        )
    return services


def _setter(event: asyncio.Event) -> Callable[[], Awaitable[None]]:
    async def set_it() -> None:
        event.set()

    return set_it


def _redis_client(settings: Settings) -> Redis:
    """The one Redis client this process shares (fails fast: a down Redis is a quick 503)."""
    from tessera.stores.factory import redis_client

    return redis_client(settings.redis_url)


def _token_stores(
    settings: Settings, engine: AsyncEngine, redis: Redis | None, prefix: str
) -> tuple[ThrottleStore, RefreshTokenStore, RevocationStore]:
    """Throttle, refresh-token and revocation stores of the configured kind."""
    if redis is not None:
        from tessera.stores.redis_refresh import RedisRefreshTokenStore
        from tessera.stores.redis_revocations import RedisRevocationStore
        from tessera.stores.redis_throttle import RedisThrottleStore

        return (
            RedisThrottleStore(redis, prefix),
            RedisRefreshTokenStore(redis, prefix),
            RedisRevocationStore(redis, prefix),
        )
    if settings.session_store == "memory":
        from tessera.stores.memory_refresh import MemoryRefreshTokenStore
        from tessera.stores.memory_throttle import MemoryThrottleStore
        from tessera.stores.revocations import MemoryRevocationStore

        return MemoryThrottleStore(), MemoryRefreshTokenStore(), MemoryRevocationStore()
    from tessera.stores.sql_refresh import SqlRefreshTokenStore
    from tessera.stores.sql_revocations import SqlRevocationStore
    from tessera.stores.sql_throttle import SqlThrottleStore

    return SqlThrottleStore(engine), SqlRefreshTokenStore(engine), SqlRevocationStore(engine)


SWEEP_INTERVAL = 60.0


async def _sweep(services: Services, stop: asyncio.Event) -> None:
    """Expire sessions periodically (the SQL store needs it; Redis and memory are cheap)."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=SWEEP_INTERVAL)
        except TimeoutError:
            try:
                removed = await services.sessions.sweep()
            except StoreUnavailable as exc:
                log.warning("session sweep skipped: %s", exc.message)
            else:
                if removed:
                    log.info("session sweep removed %d expired sessions", removed)


REVOCATION_RELOAD_INTERVAL = 2.0
"""Seconds between two reloads of the revocation marks from SQL, which has no push feed."""


async def _reload(view: RevocationView, stop: asyncio.Event) -> None:
    """Take the marks other processes stored (other servers, ``tessera sessions revoke``).

    SQL has no feed, so this polls: one indexed read of the live marks (those of the last
    access-token lifetime, a few rows) every couple of seconds. That bounds how long an access
    token outlives a revocation made elsewhere; this process's own revocations apply at once.
    """
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=REVOCATION_RELOAD_INTERVAL)
        except TimeoutError:
            try:
                await view.load()
            except StoreUnavailable as exc:
                log.warning("revocation reload skipped: %s", exc.message)


async def _listen(view: RevocationView, stop: asyncio.Event) -> None:
    """Keep the revocation feed running; after a break, reload the marks and listen again."""
    while not stop.is_set():
        try:
            await view.listen()
        except StoreUnavailable as exc:
            log.warning("revocation feed interrupted (%s); retrying", exc.message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
