"""In-process counters for events worth watching (forged cookies, evictions, throttling).

A plain counter object injected into components, not a global registry, so tests read exactly
what their own component counted. Exporters (Prometheus, logs) can read :meth:`snapshot`.
"""

from __future__ import annotations

from collections import Counter


class Metrics:
    """Named monotonically increasing counters."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def incr(self, name: str, amount: int = 1) -> None:
        self._counts[name] += amount

    def get(self, name: str) -> int:
        return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        return dict(self._counts)
