"""The revocation store contract: "everything of this session / user issued before T is dead".

Marks are tiny and short-lived: a mark only matters while an access token issued before it can
still be valid, so every mark carries an ``expires_at`` (its instant plus the longest access
token lifetime) after which stores drop it. Stores keep the latest instant per subject.
:class:`~tessera.tokens.revocation.RevocationView` holds them in memory for the hot path.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


class MarkKind(enum.StrEnum):
    SESSION = "session"
    USER = "user"


def _time(value: object) -> float:
    if (type(value) is not int and type(value) is not float) or not math.isfinite(value):
        raise ValueError("revocation mark times are finite numbers")
    return float(value)


@dataclass(frozen=True, slots=True)
class RevocationMark:
    """Tokens of ``subject`` (a session's public handle, or a user id) issued at or before ``at``
    are revoked. Times are Unix seconds."""

    kind: MarkKind
    subject: str
    at: float
    expires_at: float

    def to_json(self) -> str:
        return json.dumps(
            {"k": self.kind.value, "s": self.subject, "at": self.at, "exp": self.expires_at},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> RevocationMark:
        """Parse a published mark; ``ValueError`` for anything that is not one."""
        data: Any = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a revocation mark is a JSON object")
        kind, subject = data.get("k"), data.get("s")
        if not isinstance(kind, str) or not isinstance(subject, str) or not subject:
            raise ValueError("a revocation mark names a kind and a subject")
        return cls(MarkKind(kind), subject, _time(data.get("at")), _time(data.get("exp")))


@runtime_checkable
class RevocationStore(Protocol):
    """Where marks live so that a restarted instance (and every other one) knows them."""

    async def add(self, mark: RevocationMark) -> None:
        """Store a mark (keeping the later one of two for a subject) and tell other instances."""
        ...

    async def load_live(self, now: float) -> list[RevocationMark]:
        """Every mark not expired at ``now``."""
        ...

    async def sweep(self, now: float) -> int:
        """Drop expired marks; the count (or 0 where the backend expires them itself)."""
        ...


@runtime_checkable
class RevocationFeed(Protocol):
    """Marks added by other instances, as they happen (Redis pub/sub)."""

    def listen(
        self, on_subscribed: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[RevocationMark]:
        """Subscribe, await ``on_subscribed`` (so the caller can load what came before without
        a gap), then yield every mark published from then on, forever."""
        ...


class MemoryRevocationStore:
    """Marks in a dict: one process, or tests. No feed: there is nobody else to tell."""

    __slots__ = ("_marks",)

    def __init__(self) -> None:
        self._marks: dict[tuple[MarkKind, str], RevocationMark] = {}

    def __repr__(self) -> str:
        return f"<MemoryRevocationStore {len(self._marks)} marks>"

    async def add(self, mark: RevocationMark) -> None:
        key = (mark.kind, mark.subject)
        known = self._marks.get(key)
        if known is None or known.at < mark.at:
            self._marks[key] = mark

    async def load_live(self, now: float) -> list[RevocationMark]:
        return [m for m in self._marks.values() if m.expires_at > now]

    async def sweep(self, now: float) -> int:
        dead = [key for key, m in self._marks.items() if m.expires_at <= now]
        for key in dead:
            del self._marks[key]
        return len(dead)
