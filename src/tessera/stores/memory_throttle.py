"""Login-throttle counters in process memory: the library default and the test double.

Bounded: at most ``max_keys`` states are kept; beyond that the least recently failed key is
dropped, so a spray of attempts from random addresses cannot exhaust memory (at worst it makes
the oldest counters forget early, which is the price of a bound).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from tessera.identity.throttle import ThrottleState

__all__ = ["MemoryThrottleStore"]


class MemoryThrottleStore:
    """A :class:`tessera.identity.throttle.ThrottleStore` in a bounded ordered dict."""

    __slots__ = ("_max_keys", "_states")

    def __init__(self, max_keys: int = 100_000) -> None:
        self._max_keys = max_keys
        # key -> (state, expires_at); ordered by last failure, oldest first.
        self._states: OrderedDict[str, tuple[ThrottleState, float]] = OrderedDict()

    async def get(self, keys: Sequence[str]) -> list[ThrottleState | None]:
        return [entry[0] if (entry := self._states.get(k)) else None for k in keys]

    async def add_failure(self, keys: Sequence[str], now: float, window: float) -> list[int]:
        counts = []
        for key in keys:
            entry = self._states.pop(key, None)
            if entry is None or now - entry[0].last_failure >= window:
                count = 1
            else:
                count = entry[0].failures + 1
            self._states[key] = (ThrottleState(count, now), now + window)
            counts.append(count)
        while len(self._states) > self._max_keys:
            self._states.popitem(last=False)
        return counts

    async def reset(self, key: str) -> None:
        self._states.pop(key, None)

    async def sweep(self, now: float) -> int:
        # Entries are ordered by last failure; with one window (as LoginThrottle uses) the
        # expired ones lead, so this stops at the first live one: O(expired), not O(all).
        removed = 0
        while self._states:
            key, (_, expires_at) = next(iter(self._states.items()))
            if expires_at > now:
                break
            del self._states[key]
            removed += 1
        return removed
