"""The long-lived objects one server process holds, opened at startup and closed at shutdown.

Kept in one small container so endpoints receive their dependencies explicitly (via
``request.app.state.services``) instead of reaching for globals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from tessera.clock import Clock
from tessera.config import Settings
from tessera.errors import StoreUnavailable
from tessera.metrics import Metrics

HealthCheck = Callable[[], Awaitable[None]]


@dataclass
class Services:
    """Everything the app needs at request time."""

    settings: Settings
    clock: Clock
    engine: AsyncEngine
    metrics: Metrics = field(default_factory=Metrics)
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

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
        for close in reversed(self.closers):
            await close()
        await self.engine.dispose()
