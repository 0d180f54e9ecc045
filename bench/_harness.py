"""Shared benchmark plumbing: serve an ASGI app with uvicorn in a subprocess, load it with wrk.

Every variant of a comparison is served with the same uvicorn settings (one worker, no access
log, httptools/uvloop when installed) and measured in the same run, so ratios are meaningful
even on a noisy machine. Nothing here is a test; timings never gate CI.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
"""Where the benchmarks create (and drop) PostgreSQL databases of their own."""


def postgres_admin(statement: str) -> None:
    """Run one statement on the PostgreSQL server (CREATE / DROP DATABASE of a benchmark's own)."""
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def postgres_url(database: str) -> str:
    """The URL of ``database`` on the server of :data:`POSTGRES_ADMIN`."""
    return POSTGRES_ADMIN.rsplit("/", 1)[0] + "/" + database


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    """A running uvicorn process serving one app variant."""

    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def serve(app: str, env: Mapping[str, str], *, ready_path: str = "/ready") -> Served:
    """Start ``uvicorn app`` (an import string) and wait until ``ready_path`` answers."""
    port = free_port()
    proc = subprocess.Popen(
        [
            *_pinned(SERVER_CPU),
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--app-dir",
            str(ROOT / "bench"),
        ],
        env={**os.environ, **env},
        cwd=str(ROOT),
    )
    served = Served(proc, port)
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(served.url + ready_path, timeout=1)
            return served
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                served.stop()
                raise RuntimeError(f"{app} did not start") from None
            time.sleep(0.1)


SERVER_CPU, LOAD_CPU = 1, 0
"""With two cores or more, the server and wrk get one each (``BENCH_PIN=0``: the scheduler
decides): left free, the scheduler moves them around and the same variant swings by 15%."""


def _pinned(cpu: int) -> list[str]:
    """The ``taskset`` prefix that keeps a process on ``cpu``, when pinning applies."""
    taskset = shutil.which("taskset")
    if os.environ.get("BENCH_PIN", "1") != "1" or taskset is None or (os.cpu_count() or 1) < 2:
        return []
    return [taskset, "-c", str(cpu)]


def wrk(url: str, *, seconds: int, connections: int, headers: Sequence[str] = ()) -> float:
    """Requests per second that wrk (one thread: the machine has two cores) measured."""
    exe = shutil.which("wrk")
    if exe is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    args = [exe, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for header in headers:
        args += ["-H", header]
    out = subprocess.run(
        [*_pinned(LOAD_CPU), *args, url], capture_output=True, text=True, check=True
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} failed responses\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return float(match.group(1))


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A Markdown table (what the README shows)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def compare(
    variants: Mapping[str, str],
    order: Sequence[str],
    *,
    rounds: int,
    measure: Callable[[str], float],
    baseline: str,
    ratio_label: str,
) -> str:
    """Measure ``order`` in alternating rounds; a Markdown table of two views of the result.

    Alternating (a b c, a b c, ...) rather than repeating each variant back to back spreads a
    noisy neighbour's bursts over all variants instead of penalising one. The table shows each
    variant's best round and its ratio to the baseline's best, and the median over rounds of
    the ratio to the baseline *of the same round*: on a shared machine whose speed drifts by
    tens of percent from one minute to the next, that one compares like with like.
    """
    best: dict[str, float] = {}
    ratios: dict[str, list[float]] = {variant: [] for variant in order}
    for round_ in range(rounds):
        measured: dict[str, float] = {}
        for variant in order:
            rps = measure(variant)
            measured[variant] = rps
            best[variant] = max(best.get(variant, 0.0), rps)
            print(f"round {round_ + 1}: {variant:11s} {rps:10.0f} req/s", flush=True)
        if measured.get(baseline):
            for variant, rps in measured.items():
                ratios[variant].append(rps / measured[baseline])
    base = best.get(baseline)
    rows = [
        [
            variants[v],
            f"{best[v]:,.0f}",
            f"{best[v] / base:.2f}x" if base else "-",
            f"{statistics.median(ratios[v]):.2f}x" if ratios[v] else "-",
        ]
        for v in order
    ]
    return table(
        rows,
        ["variant", "requests/s (best round)", ratio_label, "median of per-round ratios"],
    )
