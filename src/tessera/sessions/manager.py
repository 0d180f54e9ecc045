"""Session policy, written once for every store: timeouts, rotation, size budget, per-user caps.

The manager is sans-IO apart from its store: it turns a cookie value into a :class:`Session`,
and a finished :class:`Session` into store writes plus a :class:`SaveResult` that tells the
adapter what to do with the cookie. Time comes from the injected clock only.

Writes are kept rare on purpose: a request that only reads its session writes nothing unless the
store's sliding renewal is due (at most once per ``renewal_interval``), and the store performs
that renewal inside ``load`` so it costs no extra round trip.
"""

from __future__ import annotations

import enum
import inspect
import json
import json.encoder
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tessera.clock import SYSTEM_CLOCK, Clock
from tessera.config import Settings
from tessera.errors import ConfigError, SessionDataInvalid, SessionTooLarge
from tessera.metrics import Metrics
from tessera.sessions._ids import ID_LENGTH, hash_session_id, is_well_formed, new_session_id
from tessera.sessions.session import Session
from tessera.stores.sessions import InstantSessionStore, SessionRecord, SessionStore

_log = logging.getLogger("tessera.sessions")
_PUBLIC_ID_RE = re.compile(r"[0-9a-f]{64}")

# One encoder for every save: json.dumps with non-default options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _c_encoder() -> Callable[[object, int], list[str]] | None:
    """The C encoder that ``_ENCODER.encode`` would build anew on every call, built once.

    Building it is most of what a small ``encode`` costs. It runs without a circular-reference
    check (a shared ``markers`` dict could keep stale entries after a failed encode): a cycle
    ends in RecursionError instead, which :func:`encode_data` reports like any non-JSON value.
    None where CPython's ``_json`` accelerator is missing.
    """
    make: Callable[..., Callable[[object, int], list[str]]] | None = getattr(
        json.encoder, "c_make_encoder", None
    )
    if make is None:
        return None
    return make(
        None,  # markers: no circular check, see above
        _ENCODER.default,
        json.encoder.encode_basestring,  # ensure_ascii=False
        None,  # indent
        _ENCODER.key_separator,
        _ENCODER.item_separator,
        _ENCODER.sort_keys,
        _ENCODER.skipkeys,
        _ENCODER.allow_nan,
    )


_C_ENCODE = _c_encoder()

# Positions in a record of the two fields every save changes; see _saved().
_DATA = SessionRecord._fields.index("data")
_LAST_SEEN = SessionRecord._fields.index("last_seen")


def _saved(record: SessionRecord, data: bytes, now: float) -> SessionRecord:
    """``record._replace(data=data, last_seen=now)`` at a third of the cost, on every save.

    Generic over the fields (a field added to SessionRecord is carried over like the rest), so
    it cannot silently drop one the way a hand-written copy would. ``tuple.__new__`` is what
    ``_make`` calls, without its Python frame and length check (the length is the record's).
    """
    values = list(record)
    values[_DATA] = data
    values[_LAST_SEEN] = now
    return _tuple_new(SessionRecord, values)


_tuple_new = tuple.__new__


def _victims(records: list[SessionRecord], kept: SessionRecord, excess: int) -> list[SessionRecord]:
    """The ``excess`` sessions the cap ends (see ``SessionManager._enforce_cap``): among those
    older than ``kept``, each time the least recently used of the kind that has most sessions
    (the new session's kind on a tie)."""
    newer_than = (kept.created_at, kept.id_hash)
    by_kind: dict[str, list[SessionRecord]] = {}
    for record in sorted(records, key=lambda r: (r.last_seen, r.created_at, r.id_hash)):
        if (record.created_at, record.id_hash) < newer_than:
            by_kind.setdefault(record.kind, []).append(record)
    counts = Counter(record.kind for record in records)
    victims: list[SessionRecord] = []
    while len(victims) < excess and by_kind:
        kind = max(by_kind, key=lambda k: (counts[k], k == kept.kind))
        victims.append(by_kind[kind].pop(0))
        counts[kind] -= 1
        if not by_kind[kind]:
            del by_kind[kind]
    return victims


def _accepts_previous(update: Callable[..., object]) -> bool:
    """Whether a store's ``update`` takes the ``previous`` record (added after the Protocol's
    first version: third-party stores may not)."""
    try:
        parameters = inspect.signature(update).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a C callable): do not risk it
        return False
    return any(
        p.kind is p.VAR_KEYWORD or (p.name == "previous" and p.kind is not p.POSITIONAL_ONLY)
        for p in parameters
    )


class CookieAction(enum.Enum):
    """What the adapter does with the session cookie after a save."""

    KEEP = "keep"
    """Send no Set-Cookie: the browser's cookie is still right."""
    SET = "set"
    """Send the cookie of a new (created or rotated) session."""
    CLEAR = "clear"
    """Delete the cookie: the session ended, or the browser sent a dead one."""


@dataclass(frozen=True, slots=True)
class SaveResult:
    """The outcome of :meth:`SessionManager.save`, in plain values for any adapter."""

    action: CookieAction
    session_id: str | None = field(default=None, repr=False)
    """The raw ID to put in the cookie when ``action`` is SET (a secret: never logged)."""
    max_age: int | None = None
    """Seconds for a persistent cookie; None for a cookie that ends with the browser."""
    gone: bool = False
    """The session had ended (destroyed, revoked, expired) or been rotated by another request
    meanwhile: nothing was saved or resurrected, and the cookie is left alone."""


DEFAULT_MAX_PER_USER = 100
"""Concurrent sessions a user may hold before one is revoked (None: no cap; which one: see
``SessionManager._enforce_cap``). Far above what one person's browsers and apps need, and it
bounds what a login, a listing and a revoke of one session read: a script that logs in and
never logs out cannot grow a user's index without end."""

# The results without a secret, shared: building a frozen dataclass costs a microsecond, and
# most requests end in KEEP.
_KEEP = SaveResult(CookieAction.KEEP)
_CLEAR = SaveResult(CookieAction.CLEAR)
_GONE = SaveResult(CookieAction.KEEP, gone=True)
"""A save that found its session gone (see ``_gone``)."""


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One of a user's sessions as shown to that user or an admin.

    ``id`` is the store's digest of the session ID: a stable public handle that can revoke the
    session but cannot be turned into a cookie.
    """

    id: str
    user_id: str | None
    kind: str
    created_at: float
    last_seen: float
    expires_at: float
    ip: str | None
    user_agent: str | None
    remembered: bool
    current: bool

    @classmethod
    def from_record(cls, record: SessionRecord, *, current: str | None = None) -> SessionInfo:
        return cls(
            id=record.id_hash,
            user_id=record.user_id,
            kind=record.kind,
            created_at=record.created_at,
            last_seen=record.last_seen,
            expires_at=record.expires_at,
            ip=record.ip,
            user_agent=record.user_agent,
            remembered=record.remembered,
            current=current is not None and record.id_hash == current,
        )


def encode_data(data: dict[str, object], max_bytes: int) -> bytes:
    """Compact UTF-8 JSON of ``data``, refused when not JSON or over ``max_bytes``."""
    try:
        text = "".join(_C_ENCODE(data, 0)) if _C_ENCODE is not None else _ENCODER.encode(data)
    except (TypeError, ValueError, RecursionError) as exc:
        # RecursionError: a reference cycle, or nesting deeper than any budget allows.
        raise SessionDataInvalid(f"session data must be plain JSON values: {exc}") from None
    raw = text.encode()
    if len(raw) > max_bytes:
        raise SessionTooLarge(
            f"session data is {len(raw)} bytes as JSON, over the budget of {max_bytes} bytes"
        )
    return raw


class SessionManager:
    """Creates, loads, saves, rotates and revokes sessions kept in one :class:`SessionStore`."""

    def __init__(
        self,
        store: SessionStore,
        *,
        clock: Clock = SYSTEM_CLOCK,
        idle_timeout: float = 30 * 60,
        absolute_timeout: float = 12 * 3600,
        renewal_interval: float = 60,
        max_bytes: int = 4096,
        max_per_user: int | None = DEFAULT_MAX_PER_USER,
        metrics: Metrics | None = None,
    ) -> None:
        if idle_timeout <= 0 or absolute_timeout <= 0 or max_bytes <= 0:
            raise ConfigError("session timeouts and size budget must be positive")
        if renewal_interval < 0:
            raise ConfigError("session renewal interval must not be negative")
        if max_per_user is not None and max_per_user < 1:
            raise ConfigError("max_per_user must be at least 1 (or None for no cap)")
        self.store = store  # the property setters below also pick the fast paths
        self.clock = clock
        self.idle_timeout = float(idle_timeout)
        self.absolute_timeout = float(absolute_timeout)
        self.renewal_interval = float(renewal_interval)
        self.max_bytes = max_bytes
        self.max_per_user = max_per_user
        self.metrics = metrics if metrics is not None else Metrics()
        self._evicting: set[str] = set()
        """Sessions whose eviction is under way in this process (see _evict)."""
        self.on_evicted: list[Callable[[SessionRecord], Awaitable[None]]] = []
        """Called with each session the per-user cap removes, before its record is deleted (a
        hook that raises keeps the session: see ``_enforce_cap``)."""

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        store: SessionStore,
        clock: Clock = SYSTEM_CLOCK,
        metrics: Metrics | None = None,
    ) -> SessionManager:
        return cls(
            store,
            clock=clock,
            idle_timeout=settings.session_idle_timeout,
            absolute_timeout=settings.session_absolute_timeout,
            renewal_interval=settings.session_renewal_interval,
            max_bytes=settings.session_max_bytes,
            max_per_user=settings.session_max_per_user or None,
            metrics=metrics,
        )

    @property
    def store(self) -> SessionStore:
        """The backend; assignable (an app may open it in its lifespan)."""
        return self._store

    @store.setter
    def store(self, store: SessionStore) -> None:
        self._store = store
        # A store without I/O is called synchronously on the request path (see save_now).
        self._load_now: Callable[[str, float, float], tuple[SessionRecord, bool] | None] | None
        self._update_now: Callable[[SessionRecord, float, SessionRecord], bool] | None
        if isinstance(store, InstantSessionStore):
            self._load_now, self._update_now = store.load_now, store.update_now
        else:
            self._load_now = self._update_now = None
        # A store written before update() took ``previous`` keeps working: it is not passed.
        self._update_takes_previous = _accepts_previous(store.update)

    @property
    def clock(self) -> Clock:
        return self._clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self._clock = clock
        # The system clock's now() is time.time() behind a Python frame: skip the frame.
        self._now: Callable[[], float] = time.time if clock is SYSTEM_CLOCK else clock.now

    # --- from cookie to session ------------------------------------------------------------

    def begin(self, cookie_value: str | None) -> Session:
        """The session a request starts with, without any store call.

        No cookie gives a new empty session; a malformed one (forged, garbled, oversized) gives
        one too, marked so that the dead cookie is deleted; a well-formed one gives an
        unloaded session for :meth:`resolve`.
        """
        if cookie_value is None:
            return Session()
        if not is_well_formed(cookie_value):
            self.metrics.incr("sessions.cookie_invalid")
            session = Session()
            session._become_new(stale_cookie=True)
            return session
        return Session._pending(cookie_value)

    async def resolve(self, session: Session) -> Session:
        """Load an unloaded session from the store (idempotent; may raise StoreUnavailable).

        An unknown or expired ID turns the session into a new empty one whose cookie is
        deleted at save; the store's sliding renewal, when due, sets ``session.renewed``.
        """
        secret = session._presented
        if session._loaded or secret is None:
            return session
        found = await self._store.load(hash_session_id(secret), self._now(), self.renewal_interval)
        return self._resolved(session, secret, found)

    def open_now(self, cookie_value: str | None) -> Session | None:
        """:meth:`begin` and :meth:`resolve` in one step, when the store answers at once.

        None, doing nothing, when the store needs I/O (``begin`` then ``await resolve``).
        """
        load_now = self._load_now
        if load_now is None:
            return None
        if cookie_value is None or len(cookie_value) != ID_LENGTH or not cookie_value.isascii():
            return self.begin(cookie_value)
        # Looked up before the full format check, which runs only on a miss: with no I/O to
        # spare, it would cost a live session more than the lookup. A value that is not an ID
        # cannot hash to a stored digest (those come from IDs), so the outcome is the same.
        found = load_now(hash_session_id(cookie_value), self._now(), self.renewal_interval)
        if found is None:
            if not is_well_formed(cookie_value):
                return self.begin(cookie_value)  # counted as invalid, as without the lookup
            return self._resolved(Session._pending(cookie_value), cookie_value, None)
        return Session._stored(cookie_value, found[0], found[1])

    def _resolved(
        self, session: Session, secret: str, found: tuple[SessionRecord, bool] | None
    ) -> Session:
        if found is None:
            self.metrics.incr("sessions.unknown")
            session._become_new(stale_cookie=True)
        else:
            record, renewed = found
            session._bind(secret, record, renewed)
        session._presented = None
        return session

    async def load(self, session_id: str) -> Session | None:
        """The live session with that raw ID, or None (malformed, unknown or expired)."""
        session = await self.resolve(self.begin(session_id))
        return None if session.is_new else session

    # --- from session to store -------------------------------------------------------------

    async def create(
        self,
        data: dict[str, object] | None = None,
        *,
        user_id: str | None = None,
        kind: str = "browser",
        ip: str | None = None,
        user_agent: str | None = None,
        absolute_timeout: float | None = None,
        idle_timeout: float | None = None,
        persistent: bool = False,
        remembered: bool = False,
    ) -> Session:
        """Store a new session now (e.g. for a token login) and return it, saved.

        ``absolute_timeout`` / ``idle_timeout`` override the defaults (remember-me sessions).
        """
        session = Session(data)
        if user_id is not None:
            session.login(
                user_id,
                absolute_timeout=absolute_timeout,
                idle_timeout=idle_timeout,
                persistent=persistent,
                remembered=remembered,
            )
        else:
            session._absolute_timeout = absolute_timeout
            session._idle_timeout = idle_timeout
            session._persistent = persistent
        await self._create(session, self._now(), kind=kind, ip=ip, user_agent=user_agent)
        return session

    async def save(
        self, session: Session, *, ip: str | None = None, user_agent: str | None = None
    ) -> SaveResult:
        """Carry out what the request did to ``session``; the cookie action for the adapter.

        ``ip`` and ``user_agent`` describe the client and are recorded when a session is
        created or logged in. Raises SessionTooLarge / SessionDataInvalid (app bugs) and
        StoreUnavailable.
        """
        result = self.save_now(session)
        if result is not None:
            return result
        if not session._loaded:
            return _KEEP
        now = self._now()
        if session._destroy:
            if session._record is not None:
                await self.store.delete(session._record.id_hash)
                self.metrics.incr("sessions.destroyed")
                session._become_new(stale_cookie=True, keep_data=True)
            session._destroy = False
        record = session._record
        if record is None:
            if not session.modified or (not session._data and session.user_id is None):
                # An empty new session costs nothing: no store write, no cookie; a cookie the
                # browser sent for a dead or ended session is deleted so it stops coming back.
                clear = session._stale_cookie
                session._stale_cookie = False
                return _CLEAR if clear else _KEEP
            await self._create(session, now, ip=ip, user_agent=user_agent)
            return self._set_cookie(session, now)
        if session._rotate:
            return await self._rotate(session, record, now, ip=ip, user_agent=user_agent)
        if session.modified:
            updated = _saved(record, self._encode(session), now)
            stored = (
                await self._store.update(updated, now, previous=record)
                if self._update_takes_previous
                else await self._store.update(updated, now)
            )
            if not stored:
                return self._gone(session)
            session._record = updated
            session.modified = False
        # A renewal sends no cookie: it would carry the same ID and the same expiry (Max-Age
        # counts down to the absolute end, which renewal does not move), and sent by a request
        # that loaded the session before a parallel login rotated it, it would replace the new
        # cookie with a dead one.
        return _KEEP

    def save_now(self, session: Session) -> SaveResult | None:
        """The usual :meth:`save`, without awaiting, where it needs no I/O; else None.

        Handles a stored session that was only read, or changed in a store without I/O (no
        rotation, no destroy): what nearly every request ends with. None means "call
        :meth:`save`", which does the rest.
        """
        record = session._record
        if record is None or session._destroy or session._rotate:
            return None
        if session.modified:
            update_now = self._update_now
            if update_now is None:
                return None
            now = self._now()
            updated = _saved(record, self._encode(session), now)
            if not update_now(updated, now, record):
                return self._gone(session)
            session._record = updated
            session.modified = False
        return _KEEP  # renewed or not: see save()

    async def touch(self, session: Session) -> bool:
        """Slide the idle timeout now, whatever the renewal interval; False if it is gone."""
        record, secret = session._record, session._secret
        if record is None or secret is None:
            return False
        found = await self.store.load(record.id_hash, self._now(), 0)
        if found is None:
            session._become_new(stale_cookie=True)
            return False
        session._record = found[0]
        session.renewed = True
        return True

    async def rotate(self, session: Session) -> SaveResult:
        """Give ``session`` a new ID now (same data); the old ID stops working at once."""
        session.rotate()
        return await self.save(session)

    async def destroy(self, session: Session) -> SaveResult:
        """End ``session`` now."""
        session.destroy()
        return await self.save(session)

    # --- per-user index --------------------------------------------------------------------

    async def list_sessions(
        self, user_id: str, *, current: Session | str | None = None
    ) -> list[SessionInfo]:
        """The user's live sessions, oldest first; ``current`` marks the caller's own."""
        current_id = current.id if isinstance(current, Session) else current
        records = await self.store.list_for_user(user_id, self._now())
        return [SessionInfo.from_record(r, current=current_id) for r in records]

    async def revoke(self, user_id: str, public_id: str) -> bool:
        """End one session by its public handle, only if it belongs to ``user_id``."""
        return await self.revoke_record(user_id, public_id) is not None

    async def revoke_record(self, user_id: str, public_id: str) -> SessionRecord | None:
        """:meth:`revoke`, returning the record it ended (None: nothing of that user's ended)."""
        record = await self.owned_record(user_id, public_id)
        if record is None or not await self.delete_record(record):
            return None
        return record

    async def owned_record(self, user_id: str, public_id: str) -> SessionRecord | None:
        """The live session with that public handle if it belongs to ``user_id``; else None."""
        if not _PUBLIC_ID_RE.fullmatch(public_id):
            return None
        for record in await self.store.list_for_user(user_id, self._now()):
            if record.id_hash == public_id:
                return record
        return None

    async def delete_record(self, record: SessionRecord) -> bool:
        """End the stored session ``record`` (False: it was already gone)."""
        revoked = await self.store.delete(record.id_hash)
        self.metrics.incr("sessions.revoked", int(revoked))
        return revoked

    async def revoke_all(self, user_id: str) -> int:
        """End every session of ``user_id`` (e.g. after a password reset); the count."""
        count = await self.store.delete_for_user(user_id)
        self.metrics.incr("sessions.revoked", count)
        return count

    async def revoke_others(self, user_id: str, current: Session | str) -> int:
        """End every session of ``user_id`` except ``current`` ("log out other devices")."""
        keep = current.id if isinstance(current, Session) else current
        count = await self.store.delete_for_user(user_id, keep=keep)
        self.metrics.incr("sessions.revoked", count)
        return count

    async def sweep(self) -> int:
        """Remove expired sessions from the store; the count."""
        return await self.store.sweep(self._now())

    # --- internals -------------------------------------------------------------------------

    def _encode(self, session: Session) -> bytes:
        if session._data is None:
            # Never decoded, so never changed: the stored bytes are still exact.
            return session._raw or b"{}"
        return encode_data(session._data, self.max_bytes)

    async def _create(
        self,
        session: Session,
        now: float,
        *,
        kind: str = "browser",
        ip: str | None,
        user_agent: str | None,
    ) -> None:
        secret = new_session_id()
        lifetime = session._absolute_timeout or self.absolute_timeout
        record = SessionRecord(
            id_hash=hash_session_id(secret),
            data=self._encode(session),
            created_at=now,
            last_seen=now,
            idle_timeout=session._idle_timeout or self.idle_timeout,
            absolute_expires_at=now + lifetime,
            user_id=session.user_id,
            kind=kind,
            ip=ip,
            user_agent=user_agent,
            remembered=session._remembered,
            persistent=session._persistent,
        )
        await self.store.create(record)
        self._bound(session, secret, record)
        self.metrics.incr("sessions.created")
        if record.user_id is not None:
            await self._enforce_cap(record, now)

    async def _rotate(
        self,
        session: Session,
        record: SessionRecord,
        now: float,
        *,
        ip: str | None,
        user_agent: str | None,
    ) -> SaveResult:
        secret = new_session_id()
        new = record._replace(
            id_hash=hash_session_id(secret),
            data=self._encode(session),
            last_seen=now,
        )
        if session._auth:
            # A login is a fresh authentication: the absolute lifetime starts again, and the
            # record says where it happened.
            lifetime = session._absolute_timeout or self.absolute_timeout
            new = new._replace(
                created_at=now,
                absolute_expires_at=now + lifetime,
                idle_timeout=session._idle_timeout or self.idle_timeout,
                user_id=session.user_id,
                persistent=session._persistent,
                remembered=session._remembered,
                ip=ip if ip is not None else record.ip,
                user_agent=user_agent if user_agent is not None else record.user_agent,
            )
        if not await self.store.replace(record.id_hash, new, now):
            # Ended meanwhile, or rotated by another request first (a login form sent twice).
            return self._gone(session)
        self._bound(session, secret, new)
        self.metrics.incr("sessions.rotated")
        if new.user_id is not None and record.user_id != new.user_id:
            await self._enforce_cap(new, now)
        return self._set_cookie(session, now)

    def _bound(self, session: Session, secret: str, record: SessionRecord) -> None:
        """Make ``session`` the stored ``record``, keeping its decoded data."""
        data = session._data
        session._bind(secret, record, renewed=False)
        session._data = data
        session._rotate = session._auth = session.modified = False
        session._absolute_timeout = session._idle_timeout = None

    async def _enforce_cap(self, kept: SessionRecord, now: float) -> None:
        """Revoke sessions of the user beyond ``max_per_user`` (never ``kept``, the new one).

        **Which.** Only sessions older than ``kept`` are candidates, so two logins at once
        cannot evict each other (the newer may evict the older, as one after the other would).
        Among them, the kind (browser, token) holding the most sessions gives up its least
        recently used one: a script that logs in through the API again and again evicts its own
        stale app sessions, neither the browser its user is reading in nor, once such sessions
        fill the cap, every other browser (evicting the new session's kind first did that); with
        a cap of 1 the rule is still "one session".

        **How.** Each victim goes to the :attr:`on_evicted` hooks (the server ends its tokens
        and remember-me login there) *before* its record is deleted: if a hook fails, the
        session stays whole, the failure is logged and the next login tries again, instead of
        failing this login half-way. A victim that vanished before its delete (revoked, or
        rotated to a new ID meanwhile) makes the cap list again once.

        **Limits.** Logins of one user at the same moment on several processes may each see
        too few sessions to evict (the other's not stored yet), and with Redis a listing taken
        while one of the sessions rotates may miss it: the user is then over the cap by that
        many until their next login. The hooks of one victim run once per
        process; two processes evicting it at once both run them.
        """
        if self.max_per_user is None or kept.user_id is None:
            return
        for _ in range(2):
            records = await self.store.list_for_user(kept.user_id, now)
            victims = _victims(records, kept, len(records) - self.max_per_user)
            if not victims or all([await self._evict(record) for record in victims]):
                return

    async def _evict(self, record: SessionRecord) -> bool:
        """End one session the cap chose; False if it had vanished (or a hook failed)."""
        if record.id_hash in self._evicting:
            return True  # another login of this process is evicting it right now
        self._evicting.add(record.id_hash)
        try:
            try:
                for hook in self.on_evicted:
                    await hook(record)
            except Exception:
                _log.exception(
                    "session cap: ending session %s… failed; it stays until the next login",
                    record.id_hash[:12],
                )
                return True  # kept on purpose: not a reason to list again
            # Deleted now, or by someone else since the listing (a concurrent revoke, a
            # rotation): only our own deletes count, or the cap would revoke one too many.
            if await self.store.delete(record.id_hash):
                self.metrics.incr("sessions.capped")
                return True
            return False
        finally:
            self._evicting.discard(record.id_hash)

    def _gone(self, session: Session) -> SaveResult:
        """The session ended meanwhile (revoked, expired) or another request of the browser
        rotated it (a login, a login form sent twice): its cookie is left alone. In the second
        case the winner's response sets the new cookie, and a deletion sent by this one after
        it would log the browser out; a cookie that is merely dead is deleted by the next
        request, which finds no session behind it."""
        self.metrics.incr("sessions.gone")
        session._become_new(stale_cookie=False)
        return _GONE

    def _set_cookie(self, session: Session, now: float) -> SaveResult:
        record = session._record
        if record is None or session._secret is None:
            return _KEEP
        max_age = max(0, int(record.absolute_expires_at - now)) if record.persistent else None
        return SaveResult(CookieAction.SET, session_id=session._secret, max_age=max_age)
