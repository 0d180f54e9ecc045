"""Login throttling per account and per client IP, with exponential backoff.

The model, per key (one account, one IP):

* Failures are counted in a window that slides with the latest failure: the count goes back to
  zero once ``window`` seconds pass without a failure on that key.
* Once the count reaches the limit (5 per account, 20 per IP by default), every further attempt
  is refused until ``last_failure + base_delay * 2**(count - limit)``, capped at ``max_delay``:
  1 s, 2 s, 4 s ... 15 min. ``max_delay <= window`` is required, so a key is never still
  blocked after its count was forgotten. An attacker retrying the moment Retry-After allows
  gets about ``limit + log2(max_delay / base_delay)`` guesses per window and account (14 with
  the defaults), and the per-IP limit bounds spraying many accounts from one address.
* A successful login resets the account's count, never the IP's: otherwise an attacker with one
  account of their own could wipe the IP counter between guesses on other accounts.

Keys are SHA-256 digests (``a:<hex>`` for accounts, ``i:<hex>`` for IPs), so the shared store
(Redis, SQL) never holds usernames or addresses in plain text. The stores are dumb counters;
the policy lives here once, and every time is read from the injected clock and passed down.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tessera.clock import SYSTEM_CLOCK, Clock
from tessera.errors import ConfigError
from tessera.metrics import Metrics

__all__ = [
    "LoginThrottle",
    "ThrottleDecision",
    "ThrottlePolicy",
    "ThrottleState",
    "ThrottleStore",
    "account_throttle_key",
    "ip_throttle_key",
]


@dataclass(frozen=True, slots=True)
class ThrottleState:
    """What a store keeps per key."""

    failures: int
    last_failure: float


@runtime_checkable
class ThrottleStore(Protocol):
    """Failure counters shared by every instance. Each method is one round trip."""

    async def get(self, keys: Sequence[str]) -> list[ThrottleState | None]:
        """The state of each key (None when absent), in the order of ``keys``.

        States may be stale (older than the window); the caller judges them with its clock.
        """
        ...

    async def add_failure(self, keys: Sequence[str], now: float, window: float) -> list[int]:
        """Count one failure at ``now`` on each key; the new counts, in order.

        Atomically per key: when the last failure is ``window`` or more seconds before ``now``
        (or there is none) the count restarts at 1. The state may be forgotten once ``window``
        seconds pass after ``now``.
        """
        ...

    async def reset(self, key: str) -> None:
        """Forget the key's failures."""
        ...

    async def sweep(self, now: float) -> int:
        """Remove states whose window is over at ``now``; the count (0 where a TTL does it)."""
        ...


@dataclass(frozen=True, slots=True)
class ThrottleDecision:
    """Whether an attempt may go ahead; ``retry_after`` is whole seconds (for Retry-After)."""

    allowed: bool
    retry_after: int = 0


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """The limits. All durations in seconds."""

    account_limit: int = 5
    ip_limit: int = 20
    window: float = 15 * 60
    base_delay: float = 1.0
    max_delay: float = 15 * 60

    def __post_init__(self) -> None:
        if self.account_limit < 1 or self.ip_limit < 1:
            raise ConfigError("throttle limits must be at least 1")
        if not 0 < self.base_delay <= self.max_delay <= self.window:
            raise ConfigError("throttle delays need 0 < base_delay <= max_delay <= window")

    def delay(self, failures: int, limit: int) -> float:
        """Seconds an attempt is refused after the last of ``failures`` failures."""
        if failures < limit:
            return 0.0
        # Cap the exponent first: 2**huge would overflow a float long before the cap matters.
        excess = min(failures - limit, 64)
        return min(self.max_delay, self.base_delay * 2.0**excess)


def account_throttle_key(account: str) -> str:
    """The store key of an account: a digest of its case-folded name."""
    return "a:" + hashlib.sha256(account.casefold().encode("utf-8", "surrogatepass")).hexdigest()


def ip_throttle_key(ip: str) -> str:
    """The store key of a client address."""
    return "i:" + hashlib.sha256(ip.strip().lower().encode("utf-8", "surrogatepass")).hexdigest()


class LoginThrottle:
    """Decides whether a login attempt may be tried, and records outcomes."""

    __slots__ = ("_clock", "_metrics", "_store", "policy")

    def __init__(
        self,
        store: ThrottleStore,
        clock: Clock = SYSTEM_CLOCK,
        policy: ThrottlePolicy | None = None,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self.policy = policy or ThrottlePolicy()
        self._metrics = metrics

    def _keys(self, account: str, ip: str | None) -> list[tuple[str, int]]:
        keys = [(account_throttle_key(account), self.policy.account_limit)]
        if ip:
            keys.append((ip_throttle_key(ip), self.policy.ip_limit))
        return keys

    async def check(self, account: str, ip: str | None) -> ThrottleDecision:
        """May an attempt on ``account`` from ``ip`` be tried now? One store round trip."""
        keys = self._keys(account, ip)
        states = await self._store.get([k for k, _ in keys])
        now = self._clock.now()
        wait = 0.0
        for (_, limit), state in zip(keys, states, strict=True):
            if state is None or now - state.last_failure >= self.policy.window:
                continue
            until = state.last_failure + self.policy.delay(state.failures, limit)
            wait = max(wait, until - now)
        if wait <= 0:
            return ThrottleDecision(True)
        if self._metrics is not None:
            self._metrics.incr("login.throttled")
        # Round up: a client that waits exactly Retry-After seconds must be let in.
        return ThrottleDecision(False, max(1, math.ceil(wait)))

    async def record_failure(self, account: str, ip: str | None) -> ThrottleDecision:
        """Count a failed attempt; returns what :meth:`check` would now say."""
        keys = self._keys(account, ip)
        now = self._clock.now()
        counts = await self._store.add_failure([k for k, _ in keys], now, self.policy.window)
        wait = max(
            self.policy.delay(count, limit) for (_, limit), count in zip(keys, counts, strict=True)
        )
        if self._metrics is not None:
            self._metrics.incr("login.failed")
        return ThrottleDecision(True) if wait <= 0 else ThrottleDecision(False, math.ceil(wait))

    async def record_success(self, account: str, ip: str | None) -> None:
        """Reset the account's count (the IP's stays: see the module docstring)."""
        await self._store.reset(account_throttle_key(account))
