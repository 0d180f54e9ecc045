"""The live key ring: rotations written by another process reach a running server."""

from __future__ import annotations

from tessera.clock import FakeClock
from tessera.keys import KeyUse
from tessera.keys_live import LiveKeyRing
from tessera.keys_store import rotate_keys
from tessera.stores.keys import MemoryKeyStore


async def test_reload_picks_up_a_rotation_made_elsewhere(clock: FakeClock) -> None:
    store = MemoryKeyStore()
    live = await LiveKeyRing.open(store, clock, signing_alg="EdDSA")
    before = live.signing_key().kid
    rotation = await rotate_keys(store, clock, KeyUse.SIGN, "EdDSA", overlap=3600)
    assert live.signing_key().kid == before
    await live.reload()
    assert live.signing_key().kid == rotation.new.kid
    assert live.key_for_kid(before) is not None


async def test_unknown_kid_triggers_a_rate_limited_reload(clock: FakeClock) -> None:
    store = MemoryKeyStore()
    live = await LiveKeyRing.open(store, clock, signing_alg="EdDSA")
    clock.advance(10)
    rotation = await rotate_keys(store, clock, KeyUse.SIGN, "EdDSA", overlap=3600)
    assert await live.key_for_unknown_kid(rotation.new.kid) is not None
    second = await rotate_keys(store, clock, KeyUse.SIGN, "EdDSA", overlap=3600)
    assert await live.key_for_unknown_kid(second.new.kid) is None, "reloads are rate limited"
    clock.advance(6)
    assert await live.key_for_unknown_kid(second.new.kid) is not None


async def test_hmac_keys_follow_the_ring(clock: FakeClock) -> None:
    store = MemoryKeyStore()
    live = await LiveKeyRing.open(store, clock, signing_alg="EdDSA")
    old = live.hmac_keys()[0].kid
    await rotate_keys(store, clock, KeyUse.HMAC, None, overlap=3600)
    await live.reload()
    kids = [key.kid for key in live.hmac_keys()]
    assert kids[1] == old
    assert kids[0] != old
