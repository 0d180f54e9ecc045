"""Per-operation cost of the SQL session store: its statements on the driver against SQLAlchemy.

    cd bench && ../.venv/bin/python sql_store_ops.py [--ops 1000] [--rounds 3]

``SqlSessionStore`` sends its per-request statements (load, update...) on the pooled
connection's driver; ``on_driver=False`` sends them through SQLAlchemy's execution, as before
that change: the baseline. Both run in the same process against the same database, one load
and one update at a time, alternating by round, on SQLite (a temporary file) and on PostgreSQL
(a database of the bench's own on 127.0.0.1, dropped afterwards). Reported: microseconds per
operation, wall clock and this process's CPU (the best round by wall clock), and the speed-up of
the driver over SQLAlchemy.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable

from _harness import postgres_admin, postgres_url, table

from tessera.stores.sessions import SessionRecord
from tessera.stores.sql import create_engine, ensure_schema
from tessera.stores.sql_sessions import SqlSessionStore


async def per_op(op: Callable[[], Awaitable[object]], count: int) -> tuple[float, float]:
    """Wall-clock and CPU microseconds per call of ``op``, called ``count`` times in a row.

    CPU counts this process alone (the driver's threads included, the database server not).
    """
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        await op()
    return (
        (time.perf_counter() - started) / count * 1e6,
        (time.process_time() - cpu) / count * 1e6,
    )


async def measure(url: str, ops: int, rounds: int) -> dict[tuple[str, bool], tuple[float, float]]:
    """The best round's (wall, CPU) microseconds per load and per update, on the driver and
    not (best by wall clock)."""
    engine = create_engine(url)
    best: dict[tuple[str, bool], tuple[float, float]] = {}
    try:
        await ensure_schema(engine)
        now = time.time()
        record = SessionRecord(
            id_hash=hashlib.sha256(secrets.token_bytes(32)).hexdigest(),
            data=b'{"visits":1}',
            created_at=now,
            last_seen=now,
            idle_timeout=1800.0,
            absolute_expires_at=now + 43200.0,
        )
        await SqlSessionStore(engine).create(record)
        for _ in range(rounds):
            for on_driver in (True, False):
                store = SqlSessionStore(engine, on_driver=on_driver)
                load = await per_op(
                    lambda s=store: s.load(record.id_hash, time.time(), 60.0),
                    ops,
                )
                update = await per_op(
                    lambda s=store: s.update(record, time.time()),
                    ops,
                )
                for name, value in (("load", load), ("update", update)):
                    key = (name, on_driver)
                    best[key] = min(best.get(key, value), value)
    finally:
        await engine.dispose()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    database = f"t_bench_{secrets.token_hex(4)}"
    urls = {
        "SQLite": f"sqlite:///{tempfile.mkdtemp(prefix='tessera-bench-')}/sessions.db",
        "PostgreSQL": postgres_url(database),
    }
    postgres_admin(f'CREATE DATABASE "{database}"')
    rows = []
    try:
        for label, url in urls.items():
            best = asyncio.run(measure(url, args.ops, args.rounds))
            for op in ("load", "update"):
                (through, through_cpu), (on, on_cpu) = best[op, False], best[op, True]
                rows.append(
                    (
                        label,
                        op,
                        f"{through:,.0f} ({through_cpu:,.0f})",
                        f"{on:,.0f} ({on_cpu:,.0f})",
                        f"{through / on:.2f}x ({through_cpu / on_cpu:.2f}x)",
                    )
                )
    finally:
        postgres_admin(f'DROP DATABASE "{database}" WITH (FORCE)')
    header = (
        "database",
        "operation",
        "SQLAlchemy, µs (CPU)",
        "on the driver, µs (CPU)",
        "speed-up (CPU)",
    )
    print(table(rows, header))


if __name__ == "__main__":
    main()
