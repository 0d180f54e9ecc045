"""The warm-cache fast path of AuthMiddleware (``TokenVerifier.cached_entry``): a token accepted
before is served without re-verifying its signature, yet every check that can change since is
made again on each request: lifetime, key liveness, session and user revocation. Whatever the
fast path does not accept takes the full path, which explains the refusal."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from tessera.asgi.auth import MAX_AUTHORIZATION, AuthMiddleware, Principal
from tessera.clock import SYSTEM_CLOCK, FakeClock
from tessera.keys import KeyRing, ManagedKey, new_key
from tessera.metrics import Metrics
from tessera.stores.revocations import MemoryRevocationStore
from tessera.tokens import RevocationView, TokenIssuer, TokenVerifier, VerifiedTokenCache
from tessera.tokens.cache import token_digest

ISS = "https://id.example"
AUD = "https://api.example"
TTL = 300
LEEWAY = 30.0


class Kit:
    def __init__(self, key: ManagedKey | None = None, *, cache: bool = True) -> None:
        self.clock = FakeClock()
        key = key or new_key("sign", "EdDSA", self.clock.now() - 60)
        self.ring = KeyRing([key], self.clock)
        self.revocations = RevocationView(
            MemoryRevocationStore(), self.clock, max_token_lifetime=TTL
        )
        self.cache = VerifiedTokenCache() if cache else None
        self.metrics = Metrics()
        self.issuer = TokenIssuer(self.ring, ISS, AUD, TTL, self.clock)
        self.verifier = TokenVerifier(
            self.ring,
            ISS,
            AUD,
            self.clock,
            leeway=LEEWAY,
            revocations=self.revocations,
            cache=self.cache,
            metrics=self.metrics,
        )
        self.seen: list[Any] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            self.seen.append(scope["tessera.principal"])
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        self.middleware = AuthMiddleware(app, verifier=self.verifier)

    def token(self, sub: str = "u1", sid: str = "s1") -> str:
        return self.issuer.issue(sub, sid, "read write", "cli")[0]

    async def call(self, authorization: bytes) -> tuple[int, dict[str, Any]]:
        """Status of one GET, and its body's JSON when refused."""
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "headers": [(b"host", b"x"), (b"authorization", authorization)],
        }
        await self.middleware(scope, None, send)  # type: ignore[arg-type]
        status = sent[0]["status"]
        if status == 200:
            return status, {}
        return status, json.loads(sent[1]["body"])


def bearer(token: str) -> bytes:
    return b"Bearer " + token.encode()


async def test_a_warm_token_reuses_its_principal_and_counts_one_hit_per_request() -> None:
    kit = Kit()
    token, other = kit.token(), kit.token(sub="u2", sid="s2")
    assert kit.cache is not None
    for _ in range(3):
        assert (await kit.call(bearer(token)))[0] == 200
    assert (await kit.call(bearer(other)))[0] == 200
    first, second, third, fourth = kit.seen
    assert isinstance(first, Principal)
    assert first is second is third  # one Principal per cache entry
    assert (first.user_id, first.session_id, first.method) == ("u1", "s1", "bearer")
    assert first.scopes == frozenset({"read", "write"})
    assert (fourth.user_id, fourth.session_id) == ("u2", "s2")
    assert (kit.cache.misses, kit.cache.hits) == (2, 2)


async def test_a_token_verified_outside_the_middleware_is_served_warm_and_counted_once() -> None:
    """An entry cached by a direct verify() has no Principal yet: it is built, not re-verified."""
    kit = Kit()
    assert kit.cache is not None
    token = kit.token()
    kit.verifier.verify(token)
    assert (kit.cache.misses, kit.cache.hits) == (1, 0)
    for _ in range(2):
        assert (await kit.call(bearer(token)))[0] == 200
    assert (kit.cache.misses, kit.cache.hits) == (1, 2)
    assert kit.seen[0] is kit.seen[1]
    assert kit.seen[0].user_id == "u1"


async def test_a_warm_token_expires_at_exp_plus_leeway() -> None:
    kit = Kit()
    token = kit.token()
    assert (await kit.call(bearer(token)))[0] == 200
    kit.clock.advance(TTL + LEEWAY - 1)
    assert (await kit.call(bearer(token)))[0] == 200
    kit.clock.advance(1)
    status, body = await kit.call(bearer(token))
    assert (status, body["reason"]) == (401, "expired")
    assert kit.metrics.get("tokens.invalid.expired") == 1


@pytest.mark.parametrize("kind", ["session", "user"])
async def test_revocation_beats_the_fast_path_at_once(kind: str) -> None:
    kit = Kit()
    token, bystander = kit.token(), kit.token(sub="u2", sid="s2")
    for _ in range(2):
        assert (await kit.call(bearer(token)))[0] == 200
        assert (await kit.call(bearer(bystander)))[0] == 200
    if kind == "session":
        await kit.revocations.revoke_session("s1")
    else:
        await kit.revocations.revoke_user("u1")
    status, body = await kit.call(bearer(token))
    assert (status, body["reason"]) == (401, "revoked")
    assert kit.metrics.get("tokens.invalid.revoked") == 1
    assert (await kit.call(bearer(bystander)))[0] == 200
    # A token issued after the mark (a later second) is not caught by it.
    kit.clock.advance(1)
    fresh = kit.token()
    assert (await kit.call(bearer(fresh)))[0] == 200


async def test_a_warm_token_dies_with_its_key() -> None:
    """A static ring's key retires by the clock: the fast path notices within a second."""
    clock = FakeClock()
    key = new_key("sign", "EdDSA", clock.now() - 60)
    kit = Kit(replace(key, retiring_at=clock.now() + 10, retired_at=clock.now() + 100))
    token = kit.token()
    assert (await kit.call(bearer(token)))[0] == 200
    kit.clock.advance(50)  # retiring: still verifies
    assert (await kit.call(bearer(token)))[0] == 200
    kit.clock.advance(51)
    status, body = await kit.call(bearer(token))
    assert (status, body["reason"]) == (401, "unknown_key")


async def test_a_ring_swapped_by_the_provider_is_seen_by_the_fast_path() -> None:
    kit = Kit()
    holder = {"ring": kit.ring}
    verifier = TokenVerifier(
        lambda: holder["ring"], ISS, AUD, kit.clock, cache=VerifiedTokenCache()
    )
    token = kit.token()
    verifier.verify(token)
    assert verifier.cached_entry(bearer(token)) is not None
    holder["ring"] = KeyRing([new_key("sign", "EdDSA", kit.clock.now())], kit.clock)
    assert verifier.cached_entry(bearer(token)) is None  # same second: the ring is new


@pytest.mark.parametrize(
    "header",
    [
        b"bearer %s",
        b"BEARER %s",
        b"Bearer  %s",
        b"Bearer %s ",
        b"Bearer %s\t",
    ],
)
async def test_other_spellings_take_the_full_path_and_agree(header: bytes) -> None:
    kit = Kit()
    token = kit.token()
    assert (await kit.call(bearer(token)))[0] == 200  # warm
    assert (await kit.call(header % token.encode()))[0] == 200
    assert kit.seen[0] == kit.seen[1]


async def test_a_warm_token_changed_in_any_byte_is_refused() -> None:
    """The cache key is a digest of the whole token: no part of it is spared the check."""
    kit = Kit()
    token = kit.token()
    assert (await kit.call(bearer(token)))[0] == 200
    for i in (0, len(token) // 2, len(token) - 1):
        flipped = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        assert (await kit.call(bearer(flipped)))[0] == 401
    assert (await kit.call(bearer(token) + b"x"))[0] == 401


async def test_an_oversized_header_is_refused_as_oversized() -> None:
    kit = Kit()
    status, body = await kit.call(b"Bearer " + b"a" * MAX_AUTHORIZATION)
    assert (status, body["reason"]) == (401, "oversized")


async def test_without_a_cache_every_request_takes_the_full_path() -> None:
    kit = Kit(cache=False)
    token = kit.token()
    assert kit.verifier.cached_entry(bearer(token)) is None
    for _ in range(2):
        assert (await kit.call(bearer(token)))[0] == 200
    assert kit.seen[0] == kit.seen[1]


def test_cached_entry_needs_a_verified_token_and_counts_nothing_else() -> None:
    kit = Kit()
    assert kit.cache is not None
    token = kit.token()
    assert kit.verifier.cached_entry(bearer(token)) is None  # never verified
    claims = kit.verifier.verify(token)
    entry = kit.verifier.cached_entry(bearer(token))
    assert entry is not None
    assert entry.claims == claims
    assert entry is kit.cache._entries[token_digest(token)]
    assert (kit.cache.misses, kit.cache.hits) == (1, 1)
    for other in (token.encode(), b"bearer " + token.encode(), bearer(token) + b" "):
        assert kit.verifier.cached_entry(other) is None  # only the exact header form hits
    assert (kit.cache.misses, kit.cache.hits) == (1, 1)


def test_a_verifier_on_the_system_clock_serves_warm_tokens() -> None:
    """On the system clock the verifier reads time.time itself; the same checks apply."""
    ring = KeyRing([new_key("sign", "EdDSA", SYSTEM_CLOCK.now() - 60)], SYSTEM_CLOCK)
    token = TokenIssuer(ring, ISS, AUD, TTL, SYSTEM_CLOCK).issue("u", "s", "", "app")[0]
    verifier = TokenVerifier(ring, ISS, AUD, SYSTEM_CLOCK, cache=VerifiedTokenCache())
    assert verifier.verify(token).sub == "u"
    assert verifier.cached_entry(bearer(token)) is not None
