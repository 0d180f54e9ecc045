"""The key ring a running server uses, reloaded from its store so rotations reach every instance.

``tessera keys rotate`` writes to the shared store; each server instance picks the change up on
its next reload (every ``reload_interval`` seconds, and at once when a token names a kid this
instance has not seen, rate limited so forged kids cannot turn into a database flood).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from tessera.clock import Clock
from tessera.keys import HmacKey, KeyRing, SigningKey
from tessera.keys_store import load_keyring_from
from tessera.stores.keys import KeyStore

log = logging.getLogger("tessera.keys")


class LiveKeyRing:
    """A :class:`KeyRing` that can be swapped for a newer one while requests use it."""

    def __init__(
        self,
        ring: KeyRing,
        store: KeyStore,
        clock: Clock,
        *,
        signing_alg: str,
        reload_interval: float = 60.0,
        min_reload_gap: float = 5.0,
    ) -> None:
        self.ring = ring
        self._store = store
        self._clock = clock
        self._alg = signing_alg
        self.reload_interval = reload_interval
        self._min_gap = min_reload_gap
        self._last_reload = clock.now()

    @classmethod
    async def open(
        cls, store: KeyStore, clock: Clock, *, signing_alg: str, reload_interval: float = 60.0
    ) -> LiveKeyRing:
        ring = await load_keyring_from(store, clock, signing_alg)
        return cls(ring, store, clock, signing_alg=signing_alg, reload_interval=reload_interval)

    def hmac_keys(self) -> Sequence[HmacKey]:
        return self.ring.hmac_keys()

    def signing_key(self) -> SigningKey:
        return self.ring.signing_key()

    def verification_keys(self) -> Sequence[SigningKey]:
        return self.ring.verification_keys()

    def key_for_kid(self, kid: str) -> SigningKey | None:
        return self.ring.key_for_kid(kid)

    async def reload(self) -> None:
        """Read the store again (errors are logged; the current ring stays in use)."""
        self._last_reload = self._clock.now()
        try:
            self.ring = await load_keyring_from(self._store, self._clock, self._alg)
        except Exception:  # a reload failure must not take the server down with it
            log.exception("key ring reload failed; keeping the current keys")

    async def key_for_unknown_kid(self, kid: str) -> SigningKey | None:
        """Look ``kid`` up, reloading first if it is unknown and no reload happened lately."""
        key = self.ring.key_for_kid(kid)
        if key is None and self._clock.now() - self._last_reload >= self._min_gap:
            await self.reload()
            key = self.ring.key_for_kid(kid)
        return key

    async def run(self, stop: asyncio.Event) -> None:
        """Reload every ``reload_interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.reload_interval)
            except TimeoutError:
                await self.reload()
