"""Requests per second of one protected endpoint: unprotected, Bearer token, cookie session.

    .venv/bin/python bench/tokens_http.py [--seconds 5] [--connections 32] [--rounds 3]

Every variant of ``bench/apps_tokens.py`` is served by the same uvicorn settings (one worker)
and loaded with wrk in the same run; rounds alternate the variants so that machine noise hits
them alike, and the best round of each is kept. The Bearer variant is measured with the
verification cache warm (one token, as an app sends it on every request); the cookie variant
loads its session from the memory store on every request. Target: Bearer >= 0.8x unprotected.

``bare_header`` is the unprotected app sent the same Authorization header as the Bearer run:
a 700-byte header costs wrk and uvicorn something to carry whoever checks it, and the gap
between it and ``bearer`` is what authentication itself costs.
"""

from __future__ import annotations

import argparse

import httpx
from _harness import compare, serve, wrk

VARIANTS = {
    "bare": "unprotected (baseline)",
    "bare_header": "unprotected, sent the same Authorization header (its transport cost)",
    "bearer": "Bearer token (AuthMiddleware + require_user, cached verifier)",
    "cookie": "session cookie (SessionMiddleware, memory store + AuthMiddleware)",
}


def local_token() -> str:
    """An access token shaped like the bearer variant's, for the unprotected app to ignore."""
    import secrets

    from tessera.clock import SYSTEM_CLOCK
    from tessera.keys import KeyRing, new_key
    from tessera.tokens import TokenIssuer

    ring = KeyRing([new_key("sign", "EdDSA", SYSTEM_CLOCK.now() - 60)], SYSTEM_CLOCK)
    issuer = TokenIssuer(ring, "https://id.example", "tessera", 600, SYSTEM_CLOCK)
    return issuer.issue(secrets.token_hex(16), secrets.token_hex(32), "account", "tessera-app")[0]


def credentials(variant: str, url: str) -> list[str]:
    """The header that authenticates every request of the run (and warms what it warms)."""
    if variant == "bare_header":
        return [f"Authorization: Bearer {local_token()}"]
    if variant == "bearer":
        token = httpx.get(url + "/token").raise_for_status().text
        header = f"Authorization: Bearer {token}"
        httpx.get(url + "/me", headers={"authorization": f"Bearer {token}"}).raise_for_status()
        return [header]
    if variant == "cookie":
        response = httpx.get(url + "/login").raise_for_status()
        cookie = response.headers["set-cookie"].split(";", 1)[0]
        httpx.get(url + "/me", headers={"cookie": cookie}).raise_for_status()
        return [f"Cookie: {cookie}"]
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()

    def measure(variant: str) -> float:
        app_variant = "bare" if variant == "bare_header" else variant
        served = serve("apps_tokens:app", {"BENCH_VARIANT": app_variant})
        try:
            return wrk(
                served.url + "/me",
                seconds=args.seconds,
                connections=args.connections,
                headers=credentials(variant, served.url),
            )
        finally:
            served.stop()

    result = compare(
        VARIANTS,
        args.only,
        rounds=args.rounds,
        measure=measure,
        baseline="bare",
        ratio_label="ratio to unprotected",
    )
    print()
    print(result)


if __name__ == "__main__":
    main()
