"""Requests per second of a read-and-write session endpoint, Tessera against the baselines.

    .venv/bin/python bench/sessions_http.py [--seconds 5] [--connections 32] [--rounds 2]
        [--only VARIANT ...]

Every variant of ``bench/apps_sessions.py`` is served by the same uvicorn settings (one worker)
and loaded with wrk in the same run; rounds alternate the variants so that machine noise hits
them alike, and the best round of each is kept. Every variant is sent the same request: those
with sessions their own valid session cookie (so the hot path is measured: a session loaded,
changed and saved), those without one a Cookie header of a session cookie's size. The
calibration variants (``ideal-memory``, ``ideal-redis``: the least any server-side session layer
can cost, the ceiling for Tessera's) run only when named with ``--only``. Needs wrk (``apt-get
install wrk``), Redis and PostgreSQL on 127.0.0.1 for those variants.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile

import httpx
from _harness import compare, postgres_admin, postgres_url, serve, wrk

VARIANTS = {
    "bare": "no sessions (baseline)",
    "empty": "an empty pure-ASGI middleware (no sessions: the floor)",
    "starlette": "Starlette SessionMiddleware (signed cookie)",
    "memory": "Tessera, memory store",
    "sqlite": "Tessera, SQLite store",
    "postgres": "Tessera, PostgreSQL store",
    "redis": "Tessera, Redis store",
    "ideal-memory": "ideal server-side session, memory (calibration: irreducible work only)",
    "ideal-redis": "ideal server-side session, Redis (calibration: irreducible work only)",
}
CALIBRATION = ("ideal-memory", "ideal-redis")
"""Not sessions (no expiry, no eviction, no safety): run only when asked for with --only."""
DEFAULT = [variant for variant in VARIANTS if variant not in CALIBRATION]


def session_cookie(url: str) -> str | None:
    """The Cookie header that makes the next requests reuse one session (None: no sessions)."""
    response = httpx.get(url + "/hit")
    response.raise_for_status()
    set_cookie = response.headers.get("set-cookie")
    if not set_cookie:
        return None
    cookie = set_cookie.split(";", 1)[0]
    # The cookie must load that session, or wrk would measure sessions being created.
    again = httpx.get(url + "/hit", headers={"Cookie": cookie})
    again.raise_for_status()
    if again.json()["n"] != response.json()["n"] + 1:
        raise RuntimeError(f"{url}: the session cookie does not bring its session back")
    return cookie


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS), default=DEFAULT)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="tessera-bench-")
    database = f"t_bench_{secrets.token_hex(4)}"
    env_common = {
        "BENCH_DATABASE_URL": f"sqlite:///{tmp}/sessions.db",
        "BENCH_REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    }
    if "postgres" in args.only:
        postgres_admin(f'CREATE DATABASE "{database}"')

    def measure(variant: str) -> float:
        env = {**env_common, "BENCH_VARIANT": variant}
        if variant == "postgres":
            env["BENCH_DATABASE_URL"] = postgres_url(database)
        served = serve("apps_sessions:app", env)
        try:
            # Variants without sessions are sent a cookie of a session cookie's size all the
            # same: every variant gets the same request, so what differs is the machinery.
            cookie = session_cookie(served.url) or f"session={secrets.token_urlsafe(32)}"
            return wrk(
                served.url + "/hit",
                seconds=args.seconds,
                connections=args.connections,
                headers=[f"Cookie: {cookie}"],
            )
        finally:
            served.stop()

    try:
        result = compare(
            VARIANTS,
            args.only,
            rounds=args.rounds,
            measure=measure,
            baseline="bare",
            ratio_label="ratio to no sessions",
        )
    finally:
        if "postgres" in args.only:
            postgres_admin(f'DROP DATABASE "{database}" WITH (FORCE)')
    print()
    print(result)


if __name__ == "__main__":
    main()
