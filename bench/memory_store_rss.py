"""Peak RSS of the memory session store holding N live sessions, and the cost of a sweep.

Run: ``.venv/bin/python bench/memory_store_rss.py [N]`` (default 1,000,000). The records look
like the ones the session manager writes: a small JSON payload, a user agent and an IP built
per request (separate string objects, as a server would have), and a user id on half of them.
Prints the peak RSS of the process and the time of a sweep when 0% and when 1% are due.
"""

from __future__ import annotations

import asyncio
import hashlib
import resource
import sys
import time

from tessera.stores.memory_sessions import MemorySessionStore
from tessera.stores.sessions import SessionRecord

NOW = 1_800_000_000.0
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def record(i: int, due_early: bool) -> SessionRecord:
    # Created over the last ten minutes; the early ones idle out in (NOW + 600, NOW + 1200],
    # the others after NOW + 1200, so nothing is due while the store fills.
    created = NOW - float(i % 600)
    return SessionRecord(
        id_hash=hashlib.sha256(i.to_bytes(8, "big")).hexdigest(),
        data=b'{"visits":%d}' % (i % 1000),
        created_at=created,
        last_seen=created,
        idle_timeout=1200.0 if due_early else 1800.0,
        absolute_expires_at=created + 43200.0,
        user_id=f"user-{i}" if i % 2 else None,
        ip=f"10.{i % 7}.{i % 11}.{i % 13}",
        user_agent="".join(AGENTS[i % len(AGENTS)]),
    )


async def main(n: int) -> None:
    base = peak_rss_mb()
    store = MemorySessionStore(max_sessions=n + 1)
    in_store = 0.0
    for i in range(n):
        # One session in a hundred idles out earlier than the rest (see record()).
        entry = record(i, due_early=i % 100 == 0)
        started = time.perf_counter()
        await store.create(entry)
        in_store += time.perf_counter() - started
    print(
        f"{n:,} sessions created ({in_store / n * 1e6:.1f} us per create in the store); "
        f"peak RSS {peak_rss_mb():.0f} MB (interpreter and imports: {base:.0f} MB)"
    )
    started = time.perf_counter()
    swept = await store.sweep(NOW + 600)
    print(f"sweep with 0% due: removed {swept} in {(time.perf_counter() - started) * 1e3:.2f} ms")
    started = time.perf_counter()
    swept = await store.sweep(NOW + 1200)
    print(f"sweep with 1% due: removed {swept:,} in {(time.perf_counter() - started) * 1e3:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))
