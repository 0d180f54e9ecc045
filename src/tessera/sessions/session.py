"""The session as the application sees it: a change-tracking mapping of JSON values.

Like Django's session base, it tracks two flags so the adapter writes only what changed:
``accessed`` (anything was read: the response must carry ``Vary: Cookie``) and ``modified``
(something was written: the store needs an update). Lifecycle requests (:meth:`Session.rotate`,
:meth:`Session.login`, :meth:`Session.destroy`) are only *marked* here; the
:class:`~tessera.sessions.manager.SessionManager` carries them out when it saves, which keeps this
object free of I/O and usable as Starlette's ``request.session``.

Mutating a nested value in place (``session["cart"].append(x)``) is invisible to the mapping, as
in Django: reassign the key or set ``session.modified = True``.

The data is saved whole: of two overlapping requests that change different keys, the later save
wins (as in Django and Starlette). Stores never let a save bring back a session that ended
meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from tessera.errors import InvalidInput, SessionDataInvalid, SessionNotLoaded
from tessera.stores.sessions import SessionRecord

# The C scanner behind json.loads, called directly: loads() adds type checks, a whitespace regex
# and two Python frames around it, a third of the cost of decoding a small session. (JSONDecoder
# sets scan_once in __init__; typeshed does not declare it.)
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


_new_object = object.__new__


def _decode(raw: bytes | None) -> dict[str, Any]:
    """The session data the manager stored (compact UTF-8 JSON of an object)."""
    # Decoded to str first: json would sniff the encoding of bytes on every call, and the
    # manager always writes UTF-8.
    text = raw.decode() if raw else "{}"
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        end = -1  # not even the start of a JSON value
    if end != len(text):
        # Anything but one exact JSON value (padding, garbage): json.loads decides, and raises
        # the error that names the problem. The manager wrote this, so it means a corrupt store.
        value = json.loads(text)
    return value if isinstance(value, dict) else {}


class Session(MutableMapping[str, Any]):
    """One visitor's session data plus what the manager must do with it at save time.

    ``id`` is the *public handle* (the SHA-256 digest the stores key on), safe to log and to
    compare with :attr:`SessionInfo.id <tessera.sessions.manager.SessionInfo.id>`; the raw ID that
    authenticates the visitor is :attr:`secret_id` and never appears in ``repr``.
    """

    # Class-level defaults instead of __slots__: a request builds one Session, and setting the
    # three attributes that differ costs half of setting all eighteen. Every attribute below
    # is per instance once written.
    _raw: bytes | None = None
    _data: dict[str, Any] | None = None
    """None only while a stored session's data is not decoded yet (see _mapping)."""
    _record: SessionRecord | None = None
    _secret: str | None = None
    _loaded: bool = True
    _presented: str | None = None
    _stale_cookie: bool = False
    _rotate: bool = False
    _destroy: bool = False
    _user_id: str | None = None
    _persistent: bool = False
    _absolute_timeout: float | None = None
    _idle_timeout: float | None = None
    _auth: bool = False
    _remembered: bool = False
    accessed: bool = False
    """Something was read: responses must vary on the cookie."""
    modified: bool = False
    """Something was written: the store needs the new data."""
    renewed: bool = False
    """The store slid the idle timeout on this load (no cookie goes out for it: the cookie
    would be the same)."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        """A new, unsaved session (what an anonymous visitor gets; no store is involved)."""
        self._data = dict(data) if data else {}
        if data:
            self.modified = True

    # --- package-private constructors (used by the manager) --------------------------------

    @classmethod
    def _pending(cls, secret_id: str) -> Session:
        """A session named by a well-formed cookie, not yet looked up in the store."""
        session = _new_object(cls)  # no __init__: its empty dict would be replaced at once
        session._loaded = False
        session._presented = secret_id
        return session

    @classmethod
    def _stored(cls, secret_id: str, record: SessionRecord, renewed: bool) -> Session:
        """The session the store just returned, loaded in one step (no pending stage).

        What :meth:`_bind` does, for a fresh object: only what differs from the class defaults
        is written (one session per request, most of them anonymous and not renewed).
        """
        session = _new_object(cls)
        session._secret = secret_id
        session._record = record
        session._raw = record.data
        if record.user_id is not None:
            session._user_id = record.user_id
        if record.persistent:
            session._persistent = True
        if record.remembered:
            session._remembered = True
        if renewed:
            session.renewed = True
        return session

    def _bind(self, secret_id: str, record: SessionRecord, renewed: bool) -> None:
        """Become the stored session ``record`` (data decoded lazily, on first access)."""
        self._secret = secret_id
        self._record = record
        self._raw = record.data
        self._data = None
        self._user_id = record.user_id
        self._persistent = record.persistent
        self._remembered = record.remembered
        self._loaded = True
        if renewed or self.renewed:
            self.renewed = renewed

    def _become_new(self, *, stale_cookie: bool, keep_data: bool = False) -> None:
        """Forget the stored identity; the next save creates a fresh session if non-empty.

        ``keep_data`` keeps what was written after :meth:`destroy` (a new session's content).
        """
        if not keep_data:
            self._data = {}
            self._user_id = None
            self._persistent = self._remembered = self._auth = False
            self._absolute_timeout = self._idle_timeout = None
            self.modified = False
        self._secret = None
        self._record = None
        self._raw = None
        self._loaded = True
        self._stale_cookie = stale_cookie
        self._rotate = False
        self._destroy = False
        self.renewed = False

    # --- identity and metadata -------------------------------------------------------------

    @property
    def id(self) -> str | None:
        """Public handle (digest of the ID), or None while the session is not stored yet."""
        return self._record.id_hash if self._record is not None else None

    @property
    def secret_id(self) -> str | None:
        """The raw session ID, the bearer secret the cookie carries. Never log it."""
        return self._secret

    @property
    def is_new(self) -> bool:
        """True until the session exists in a store."""
        return self._record is None

    @property
    def is_loaded(self) -> bool:
        """False only for a cookie-named session not yet loaded (``autoload=False``)."""
        return self._loaded

    @property
    def record(self) -> SessionRecord | None:
        """The stored record as loaded or last saved (created_at, expiry, IP, ...)."""
        return self._record

    @property
    def user_id(self) -> str | None:
        """The authenticated user, set through :meth:`login`."""
        return self._user_id

    @property
    def persistent(self) -> bool:
        """Whether the cookie outlives the browser (Max-Age = remaining absolute lifetime)."""
        return self._persistent

    @property
    def remembered(self) -> bool:
        """Logged in by a remember-me cookie, not a password: ask again before sensitive changes."""
        return self._remembered

    @property
    def rotation_requested(self) -> bool:
        return self._rotate

    @property
    def destroy_requested(self) -> bool:
        return self._destroy

    # --- lifecycle requests, carried out by the manager at save ----------------------------

    def rotate(self) -> None:
        """Ask for a new ID with the same data (privilege change); the old ID dies at save."""
        self._rotate = True

    def login(
        self,
        user_id: str,
        *,
        absolute_timeout: float | None = None,
        idle_timeout: float | None = None,
        persistent: bool = False,
        remembered: bool = False,
    ) -> None:
        """Bind the session to ``user_id`` and rotate its ID (defeats session fixation).

        The absolute lifetime restarts at login. ``absolute_timeout`` and ``idle_timeout``
        (seconds) override the defaults, for remember-me logins; ``persistent`` makes the cookie
        survive a browser restart; ``remembered`` records that a remember-me cookie, not a
        password, logged in.
        """
        if not isinstance(user_id, str) or not user_id:
            raise SessionDataInvalid("user_id must be a non-empty string")
        for timeout in (absolute_timeout, idle_timeout):
            if timeout is not None and not timeout > 0:
                raise InvalidInput("session timeouts must be positive numbers of seconds")
        self._ensure_loaded()
        # A str subclass (an app's own UserId type) is stored as the plain str it is: stores
        # and drivers accept exact types only (redis-py refuses a subclass).
        self._user_id = str.__str__(user_id)  # the characters, whatever __str__ it overrides
        self._absolute_timeout = absolute_timeout
        self._idle_timeout = idle_timeout
        self._persistent = persistent
        self._remembered = remembered
        self._auth = True
        self._rotate = True
        self.modified = True

    def destroy(self) -> None:
        """End the session: its data is dropped and the stored session deleted at save.

        Writing to the session afterwards starts a brand-new one (under a new ID), e.g. for a
        "you have been logged out" message.
        """
        self._ensure_loaded()
        self._destroy = True
        self._data = {}
        self._raw = None
        self._user_id = None
        self._persistent = False
        self._remembered = False
        self._absolute_timeout = self._idle_timeout = None
        self._auth = False
        self._rotate = False
        self.modified = True

    logout = destroy

    # --- the mapping -----------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            raise SessionNotLoaded(
                "the session was used before it was loaded: with autoload=False, "
                "`await load_session(request)` first (or depend on it in FastAPI)"
            )

    def _mapping(self) -> dict[str, Any]:
        self.accessed = True
        data = self._data
        if data is None:
            # Not loaded yet (an error), or loaded and not decoded: decoding waits for the
            # first access, so requests that never read the session pay nothing for it.
            self._ensure_loaded()
            data = self._data = _decode(self._raw)
        return data

    # get, __getitem__ and __setitem__ (what views call) repeat _mapping's first lines rather
    # than call it: a Python call is a fifth of what each of them costs.

    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        data = self._data
        return (self._mapping() if data is None else data)[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise SessionDataInvalid(f"session keys must be str, not {type(key).__name__}")
        self.accessed = True
        data = self._data
        (self._mapping() if data is None else data)[key] = value
        self.modified = True

    def __delitem__(self, key: str) -> None:
        del self._mapping()[key]
        self.modified = True

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self._mapping())

    def __contains__(self, key: object) -> bool:
        return key in self._mapping()

    def get(self, key: str, default: Any = None) -> Any:
        # Mapping.get would go through __getitem__ and catch its KeyError: two frames more
        # on the call most views make.
        self.accessed = True
        data = self._data
        return (self._mapping() if data is None else data).get(key, default)

    def clear(self) -> None:
        """Drop all data (the session itself, its ID and its user, stay)."""
        if self._mapping():
            self._data = {}
            self.modified = True

    def __repr__(self) -> str:
        handle = self.id[:12] + "…" if self.id else "new"
        state = "" if self._loaded else " unloaded"
        keys = len(self._data) if self._data is not None else "?"
        return f"<Session {handle} user={self._user_id!r} keys={keys}{state}>"
