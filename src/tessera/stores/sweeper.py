"""The periodic expiry sweep the server runs beside any session store.

Stores already refuse expired sessions on every read; the sweep only reclaims their space, so a
failing sweep is logged and retried at the next tick rather than allowed to stop the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tessera.clock import Clock
from tessera.errors import ConfigError, StoreUnavailable
from tessera.stores.sessions import SessionStore

log = logging.getLogger("tessera.stores.sweeper")


async def run_periodic_sweep(
    store: SessionStore, clock: Clock, interval: float, stop_event: asyncio.Event
) -> int:
    """Call ``store.sweep(clock.now())`` every ``interval`` seconds until ``stop_event`` is set.

    Returns the number of sessions removed in total (for tests and a shutdown log line). The
    first sweep runs one interval after the start, not at once, so a restart loop does not turn
    into a sweep storm.
    """
    if interval <= 0:
        raise ConfigError("the sweep interval must be positive")
    total = 0
    while not stop_event.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), timeout=interval)
        if stop_event.is_set():
            break
        try:
            removed = await store.sweep(clock.now())
        except StoreUnavailable as exc:
            log.warning("session sweep skipped: %s", exc)
            continue
        total += removed
        if removed:
            log.debug("session sweep removed %d expired sessions", removed)
    return total
