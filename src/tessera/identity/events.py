"""Security events: an append-only record of what happened to an account, shown to its owner.

Much of what goes into an event comes from the network (IP, User-Agent, what the login form
said), so every field is bounded on the way in: strings are truncated, control characters are
replaced (they could forge lines in a terminal or a log), and ``detail`` is a small flat JSON
object. Attempted usernames of unknown accounts are best recorded hashed or not at all; the
``user_id`` of such an event is None.
"""

from __future__ import annotations

import builtins
import json
import math
import unicodedata
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Protocol, runtime_checkable

from tessera.clock import SYSTEM_CLOCK, Clock
from tessera.errors import InvalidInput

__all__ = [
    "DetailValue",
    "EventKind",
    "EventLog",
    "EventStore",
    "MemoryEventStore",
    "SecurityEvent",
    "clean_text",
]

MAX_IP_LENGTH: Final = 64
MAX_USER_AGENT_LENGTH: Final = 256
MAX_DETAIL_KEYS: Final = 16
MAX_DETAIL_KEY_LENGTH: Final = 32
MAX_DETAIL_STRING_LENGTH: Final = 128
MAX_DETAIL_BYTES: Final = 2048
"""Upper bound of the serialized ``detail`` (what the SQL column holds)."""

DetailValue = str | int | float | bool | None


class EventKind(StrEnum):
    """What happened. The values are stored; never rename one."""

    LOGIN_SUCCEEDED = "login_succeeded"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    THROTTLED = "throttled"
    REMEMBER_ME_THEFT = "remember_me_theft"
    SESSION_REVOKED = "session_revoked"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 (an event name, not a secret)
    USER_DISABLED = "user_disabled"
    EMAIL_CHANGED = "email_changed"


def _clip(value: str, limit: int) -> str:
    cut = value[:limit]
    return "".join("\ufffd" if unicodedata.category(c) in ("Cc", "Cf", "Cs") else c for c in cut)


def clean_text(value: str | None, limit: int) -> str | None:
    """``value`` cut to ``limit`` characters with control characters replaced by U+FFFD."""
    return None if value is None else _clip(value, limit)


def clean_detail(detail: Mapping[str, DetailValue] | None) -> dict[str, DetailValue]:
    """A bounded copy of ``detail``; raises InvalidInput for values that are not flat JSON."""
    if not detail:
        return {}
    if len(detail) > MAX_DETAIL_KEYS:
        raise InvalidInput("event detail has too many keys", code="invalid_event")
    out: dict[str, DetailValue] = {}
    for key, value in detail.items():
        if not isinstance(key, str):
            raise InvalidInput("event detail keys are strings", code="invalid_event")
        if isinstance(value, str):
            value = _clip(value, MAX_DETAIL_STRING_LENGTH)
        elif not (value is None or isinstance(value, bool | int | float)) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            # NaN and infinities are not JSON; PostgreSQL and browsers would refuse them later.
            raise InvalidInput("event detail values are flat JSON scalars", code="invalid_event")
        out[_clip(key, MAX_DETAIL_KEY_LENGTH)] = value
    # Keys and strings are capped, so this holds; checked anyway since the column is bounded.
    if len(json.dumps(out, ensure_ascii=False).encode()) > MAX_DETAIL_BYTES:
        raise InvalidInput("event detail is too large", code="invalid_event")
    return out


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """One recorded event. ``id`` grows with insertion order within a store."""

    id: int
    kind: EventKind
    at: float
    user_id: str | None
    ip: str | None = None
    user_agent: str | None = None
    detail: Mapping[str, DetailValue] = field(default_factory=lambda: MappingProxyType({}))


@runtime_checkable
class EventStore(Protocol):
    """Where events are kept. ``append`` assigns the id."""

    async def append(
        self,
        kind: EventKind,
        at: float,
        *,
        user_id: str | None,
        ip: str | None,
        user_agent: str | None,
        detail: Mapping[str, DetailValue],
    ) -> SecurityEvent:
        """Store one already-cleaned event and return it with its id."""
        ...

    async def list_for_user(self, user_id: str, limit: int = 50) -> builtins.list[SecurityEvent]:
        """The user's events, newest first."""
        ...

    async def delete_before(self, when: float) -> int:
        """Remove events older than ``when`` (retention); the count."""
        ...


class MemoryEventStore:
    """A bounded in-memory :class:`EventStore` (the oldest events fall off at ``max_events``)."""

    __slots__ = ("_events", "_next_id")

    def __init__(self, max_events: int = 10_000) -> None:
        self._events: deque[SecurityEvent] = deque(maxlen=max_events)
        self._next_id = 1

    async def append(
        self,
        kind: EventKind,
        at: float,
        *,
        user_id: str | None,
        ip: str | None,
        user_agent: str | None,
        detail: Mapping[str, DetailValue],
    ) -> SecurityEvent:
        event = SecurityEvent(
            id=self._next_id,
            kind=kind,
            at=at,
            user_id=user_id,
            ip=ip,
            user_agent=user_agent,
            detail=MappingProxyType(dict(detail)),
        )
        self._next_id += 1
        self._events.append(event)
        return event

    async def list_for_user(self, user_id: str, limit: int = 50) -> builtins.list[SecurityEvent]:
        mine = [e for e in self._events if e.user_id == user_id]
        mine.sort(key=lambda e: (e.at, e.id), reverse=True)
        return mine[:limit]

    async def delete_before(self, when: float) -> int:
        keep = [e for e in self._events if e.at >= when]
        removed = len(self._events) - len(keep)
        self._events.clear()
        self._events.extend(keep)
        return removed


class EventLog:
    """Records security events with the clock's time and every field bounded."""

    __slots__ = ("_clock", "_store")

    def __init__(self, store: EventStore, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._clock = clock

    async def record(
        self,
        kind: EventKind,
        *,
        user_id: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        detail: Mapping[str, DetailValue] | None = None,
    ) -> SecurityEvent:
        """Append one event, stamped with ``clock.now()``."""
        return await self._store.append(
            EventKind(kind),
            self._clock.now(),
            user_id=user_id,
            ip=clean_text(ip, MAX_IP_LENGTH),
            user_agent=clean_text(user_agent, MAX_USER_AGENT_LENGTH),
            detail=clean_detail(detail),
        )

    async def list_for_user(self, user_id: str, limit: int = 50) -> builtins.list[SecurityEvent]:
        """The user's most recent events, newest first."""
        if limit <= 0:
            raise InvalidInput("limit must be positive", code="invalid_limit")
        return await self._store.list_for_user(user_id, limit)
