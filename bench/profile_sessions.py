"""Per-request cost of a session variant, calling the ASGI app directly (no HTTP, no wrk).

    .venv/bin/python bench/profile_sessions.py VARIANT [--requests 3000] [--concurrency 1]
                                               [--repeat 5] [--profile]

``VARIANT`` is one of ``bench/apps_sessions.py``'s (bare, empty, starlette, memory, sqlite,
postgres, redis). ``--concurrency`` runs that many clients at once, each with its own session,
as wrk's connections do: that is what lets the Redis store's auto-pipelining batch commands.
``postgres`` needs ``BENCH_DATABASE_URL`` naming a database of its own (``sqlite`` gets a
temporary file). ``--profile`` prints the functions that cost most under cProfile.
Wall-clock microseconds per request come from the whole run and include the store's round
trips; CPU microseconds count this process alone (steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


async def call(app: Any, cookie: bytes | None) -> bytes | None:
    """One GET /hit; the session cookie to send next time."""
    headers = [(b"host", b"localhost"), (b"user-agent", b"bench/1.0")]
    if cookie:
        headers.append((b"cookie", cookie))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/hit",
        "raw_path": b"/hit",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    if sent[0]["status"] != 200:
        raise RuntimeError(f"status {sent[0]['status']}")
    for key, value in sent[0]["headers"]:
        if key == b"set-cookie":
            return bytes(value.split(b";", 1)[0])
    return cookie


async def client(app: Any, requests: int) -> None:
    cookie = await call(app, None)
    for _ in range(requests):
        cookie = await call(app, cookie)


async def run(app: Any, requests: int, concurrency: int) -> tuple[float, float]:
    """Wall-clock and CPU seconds per request with ``concurrency`` clients sharing ``requests``.

    CPU time is this process's only: on a shared machine it is the steadier number, while wall
    time also counts waiting for the store (and for other processes).
    """
    each = max(1, requests // concurrency)
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client(app, each) for _ in range(concurrency)))
    total = each * concurrency
    return (time.perf_counter() - wall) / total, (time.process_time() - cpu) / total


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("variant")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best one is shown")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    os.environ["BENCH_VARIANT"] = args.variant
    if args.variant == "postgres" and not os.environ.get("BENCH_DATABASE_URL", "").startswith(
        "postgres"
    ):
        # Without it the app would fall back to SQLite and profile that under this name.
        parser.error("postgres needs BENCH_DATABASE_URL=postgresql://... (a database of its own)")
    os.environ.setdefault(
        "BENCH_DATABASE_URL", f"sqlite:///{tempfile.mkdtemp(prefix='tessera-prof-')}/s.db"
    )
    import apps_sessions

    app = apps_sessions.app
    async with app.router.lifespan_context(app):
        await run(app, 200, args.concurrency)  # warm up: connections, caches, scripts
        runs = [await run(app, args.requests, args.concurrency) for _ in range(args.repeat)]
        # The best run: noise from other processes only ever adds time.
        wall, cpu = min(w for w, _ in runs), min(c for _, c in runs)
        print(
            f"{args.variant}: {wall * 1e6:.1f} us/request wall, {cpu * 1e6:.1f} us CPU, "
            f"at concurrency {args.concurrency}"
        )
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await run(app, args.requests, args.concurrency)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    asyncio.run(main())
