"""Access-token verification throughput: PyJWT's jwt.decode vs Tessera, cache off and warm.

Run: ``.venv/bin/python bench/tokens_verify.py [--algs EdDSA,HS256,ES256] [--seconds 1.0]``

Columns, all in one process on one token per algorithm:

(a) ``jwt.decode_complete`` with the same checks Tessera makes: the algorithm list pinned to
    the key's, signature, ``aud``, ``iss``, ``exp``/``iat``/``nbf`` with 30 s leeway, required
    claims, then the ``typ`` header check (PyJWT has no typ option). PyJWT is handed the key
    directly, so it does not even pay for a kid lookup.
(b) ``TokenVerifier.verify`` without cache (kid lookup, revocation view consulted).
(c) ``TokenVerifier.verify`` with the cache warm (revocation view still consulted).

Targets (issue text): (b) >= 1.0x (a), (c) >= 10x (a). The best of several rounds is kept, so
noise from other processes on a shared machine lowers every column rather than one.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

import jwt

from tessera.clock import SYSTEM_CLOCK
from tessera.keys import KeyRing, new_key
from tessera.stores.revocations import MemoryRevocationStore
from tessera.tokens import (
    RevocationView,
    TokenIssuer,
    TokenVerifier,
    VerifiedTokenCache,
)

ISS = "https://id.example"
AUD = "https://api.example"
REQUIRED = ["exp", "iat", "iss", "aud", "sub", "jti"]


def _batch(fn: Callable[[], object]) -> int:
    """Calls per timing slice: enough for about 10 ms, so the timer's cost is negligible."""
    batch = 1
    while True:
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        if time.perf_counter() - start > 0.01:
            return batch
        batch *= 2


def rates(fns: list[Callable[[], object]], seconds: float, rounds: int = 10) -> list[float]:
    """Best calls/second of each function; the functions take turns within every round, so a
    burst of load from other processes hits all columns alike instead of one."""
    batches = [_batch(fn) for fn in fns]
    best = [0.0] * len(fns)
    for _ in range(rounds):
        for i, (fn, batch) in enumerate(zip(fns, batches, strict=True)):
            count, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds / rounds:
                for _ in range(batch):
                    fn()
                count += batch
            best[i] = max(best[i], count / elapsed)
    return best


def bench(alg: str, seconds: float) -> tuple[float, float, float]:
    ring = KeyRing([new_key("sign", alg, SYSTEM_CLOCK.now() - 60)], SYSTEM_CLOCK)
    key = ring.signing_key()
    token, _ = TokenIssuer(ring, ISS, AUD, 600, SYSTEM_CLOCK).issue("user-1", "sid", "read", "app")
    view = RevocationView(MemoryRevocationStore(), SYSTEM_CLOCK, max_token_lifetime=600)
    asyncio.run(view.revoke_user("someone-else"))  # a non-empty view, as in production
    material = key.verification_material

    def pyjwt() -> object:
        decoded = jwt.decode_complete(
            token,
            material,
            algorithms=[alg],
            audience=AUD,
            issuer=ISS,
            leeway=30,
            options={"require": REQUIRED},
        )
        if decoded["header"].get("typ", "").lower() not in ("at+jwt", "application/at+jwt"):
            raise ValueError("typ")
        return decoded["payload"]

    cold = TokenVerifier(ring, ISS, AUD, SYSTEM_CLOCK, revocations=view)
    warm = TokenVerifier(ring, ISS, AUD, SYSTEM_CLOCK, revocations=view, cache=VerifiedTokenCache())
    for verify in (pyjwt, lambda: cold.verify(token), lambda: warm.verify(token)):
        verify()  # every path works, and the warm cache holds the token
    a, b, c = rates([pyjwt, lambda: cold.verify(token), lambda: warm.verify(token)], seconds)
    return a, b, c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algs", default="EdDSA,HS256,ES256")
    parser.add_argument("--seconds", type=float, default=1.0, help="time per column")
    args = parser.parse_args()
    a, b, r, c, rc = "(a) PyJWT/s", "(b) cold/s", "b/a", "(c) warm/s", "c/a"
    print(f"{'alg':<6} {a:>12} {b:>12} {r:>6} {c:>12} {rc:>7}")
    for alg in args.algs.split(","):
        a, b, c = bench(alg, args.seconds)
        print(f"{alg:<6} {a:>12,.0f} {b:>12,.0f} {b / a:>5.2f}x {c:>12,.0f} {c / a:>6.1f}x")


if __name__ == "__main__":
    main()
