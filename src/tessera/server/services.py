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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tessera.clock import Clock
from tessera.config import Settings
from tessera.consent import Category, CookieDeclaration, CookieRegistry
from tessera.cookies import CookiePolicy
from tessera.csrf import PRESESSION_COOKIE, CsrfProtector
from tessera.errors import ConfigError, StoreUnavailable
from tessera.identity.accounts import UserService
from tessera.identity.events import EventLog
from tessera.identity.passwords import PasswordHasher
from tessera.identity.remember import RememberMe
from tessera.identity.throttle import LoginThrottle
from tessera.identity.users import User
from tessera.keys_live import LiveKeyRing
from tessera.keys_store import open_key_store
from tessera.metrics import Metrics
from tessera.server.revoker import Revoker
from tessera.sessions import SessionManager
from tessera.stores import sql
from tessera.stores.factory import open_session_store
from tessera.stores.sql_events import SqlEventStore
from tessera.stores.sql_remember import SqlRememberStore
from tessera.stores.sql_revocations import SqlRevocationStore
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
    """Every cookie the server sets, with its consent category (names without prefixes).

    Raises ConfigError when the configured session cookie name is taken by another of them.
    """
    others = (REMEMBER_COOKIE, CONSENT_COOKIE, PRESESSION_COOKIE, THEME_COOKIE, VISITS_COOKIE)
    if settings.session_cookie_name in others:
        raise ConfigError(
            f"TESSERA_SESSION_COOKIE_NAME: {settings.session_cookie_name!r} is the name of "
            f"another cookie of the server (taken: {', '.join(others)})"
        )
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
                PRESESSION_COOKIE,
                Category.ESSENTIAL,
                "Protects the forms of a visitor who is not logged in against cross-site requests.",
            ),
            CookieDeclaration(
                THEME_COOKIE, Category.PREFERENCES, "Remembers the colour theme you chose."
            ),
            CookieDeclaration(
                VISITS_COOKIE, Category.ANALYTICS, "Counts your visits to show you the number."
            ),
        ],
        consent_version=1,
    )


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
    revoker: Revoker
    metrics: Metrics = field(default_factory=Metrics)
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def cookie_name(self, base: str) -> str:
        """The name a cookie is set under: ``__Host-`` prefixed outside development mode."""
        return self.cookie_policy.name(base)

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
        redis, session_store = await _session_store(settings, engine, closers, metrics)
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

    revoker = Revoker(sessions, remember, refresh, revocations, events, clock)
    sessions.on_evicted.append(revoker.session_evicted)

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
        revoker=revoker,
        metrics=metrics,
        health_checks=health,
        closers=closers,
    )

    async def on_password_changed(user: User) -> None:
        await revoker.revoke_user_everywhere(user.id)

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
    elif isinstance(revocation_store, SqlRevocationStore):
        services.tasks.append(
            asyncio.create_task(
                _reload(revocations, revocation_store, clock, stop), name="tessera-revocations"
            )
        )
    return services


async def _session_store(
    settings: Settings,
    engine: AsyncEngine,
    closers: list[Callable[[], Awaitable[None]]],
    metrics: Metrics | None = None,
) -> tuple[Redis | None, SessionStore]:
    """The configured session store, and the Redis client it shares when it is Redis (both
    added to ``closers``)."""
    if settings.session_store != "redis":
        store = await open_session_store(settings, engine=engine, metrics=metrics)
        closers.append(store.close)
        return None, store
    redis = _redis_client(settings)  # first: without the driver, a ConfigError naming the extra
    closers.append(redis.aclose)
    from tessera.stores.redis_sessions import RedisSessionStore

    # Built here rather than by the factory so that it shares the client and the prefix.
    redis_store = RedisSessionStore(redis, settings.redis_prefix)
    closers.append(redis_store.close)
    return redis, redis_store


@dataclass
class AdminKit:
    """What the command line needs to list and revoke sessions: the stores, no keys, no tasks.

    A revocation made with it ends what the same revocation in a running server ends; running
    servers learn of it through the revocation store (pushed with Redis, reloaded with SQL).
    """

    sessions: SessionManager
    users: SqlUserStore
    events: EventLog
    revoker: Revoker


@contextlib.asynccontextmanager
async def open_admin(settings: Settings, clock: Clock) -> AsyncIterator[AdminKit]:
    """Open the stores an :class:`AdminKit` needs, and close them after."""
    engine = sql.create_engine(settings.database_url)
    closers: list[Callable[[], Awaitable[None]]] = []
    try:
        await sql.ensure_schema(engine)
        redis, session_store = await _session_store(settings, engine, closers)
        _, refresh_store, revocation_store = _token_stores(
            settings, engine, redis, settings.redis_prefix
        )
        sessions = SessionManager.from_settings(settings, session_store, clock)
        events = EventLog(SqlEventStore(engine), clock)
        revoker = Revoker(
            sessions,
            RememberMe(SqlRememberStore(engine), clock),
            RefreshTokens(refresh_store, clock, family_ttl=settings.refresh_token_ttl),
            RevocationView(revocation_store, clock, max_token_lifetime=settings.access_token_ttl),
            events,
            clock,
        )
        sessions.on_evicted.append(revoker.session_evicted)
        yield AdminKit(sessions, SqlUserStore(engine), events, revoker)
    finally:
        for close in reversed(closers):
            with contextlib.suppress(Exception):
                await close()
        await engine.dispose()


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
"""Seconds between two polls of the revocation marks in SQL, which has no push feed."""
REVOCATION_FULL_RELOAD_EVERY = 30
"""Every this many polls (a minute), all live marks are read again and the dead ones swept."""
REVOCATION_POLL_MARGIN = 60.0
"""Seconds of marks each poll reads, back from this process's clock: marks are stamped by the
clock of the process that made them, and a transaction may commit after a later one."""


async def _reload(
    view: RevocationView, store: SqlRevocationStore, clock: Clock, stop: asyncio.Event
) -> None:
    """Take the marks other processes stored (other servers, ``tessera sessions revoke``).

    SQL has no feed, so this polls: every couple of seconds, one indexed read of the marks
    stamped within the last minute by this process's clock (never a high-water mark taken from
    the marks, which one mark stamped in the future would stall); once a minute a full reload,
    which also catches a mark from a process whose clock is far behind, and a sweep of the dead
    marks. That bounds how long an access token outlives a revocation made elsewhere; this
    process's own revocations apply at once. An outage is logged once, not on every poll; no
    failure ends the polls.
    """
    polls = 0
    failing = False
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=REVOCATION_RELOAD_INTERVAL)
            return
        except TimeoutError:
            pass
        polls += 1
        now = clock.now()
        try:
            if polls % REVOCATION_FULL_RELOAD_EVERY == 0:
                await view.load()
                await store.sweep(now)
            else:
                for mark in await store.load_since(now - REVOCATION_POLL_MARGIN, now):
                    view.apply(mark)
        except StoreUnavailable as exc:
            if not failing:
                failing = True
                log.warning("revocation reload failing: %s; retrying", exc.message)
        except Exception:  # a bug: logged every time, but it must not end the polls
            log.exception("revocation reload failed; retrying")
        else:
            if failing:
                failing = False
                log.info("revocation reload works again")


async def _listen(view: RevocationView, stop: asyncio.Event) -> None:
    """Keep the revocation feed running; after a break, reload the marks and listen again."""
    while not stop.is_set():
        try:
            await view.listen()
        except StoreUnavailable as exc:
            log.warning("revocation feed interrupted (%s); retrying", exc.message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
