"""Instructions the server executes per HTTP request, per variant: a measure noise cannot move.

    .venv/bin/python bench/instructions_http.py [VARIANT ...] [--requests 500]

On a shared machine requests/s and CPU time swing by 30% between runs; the number of
instructions does not. Each variant of ``bench/apps_sessions.py`` is served by uvicorn under
valgrind (cachegrind, no cache simulation) and sent requests one after another on one keep-alive
connection; two runs, with 100 and with 100 + ``--requests`` requests, are subtracted so
start-up and shutdown cancel out. Kernel work (sockets) is not counted, so the ratios overstate
what a variant costs in requests/s; compare variants with each other, not with wrk's ratios.
The calibration variants (``ideal-memory``, ``ideal-redis``: the least any server-side session
layer can cost) run only when named. Needs valgrind; Redis and PostgreSQL on 127.0.0.1 for those
variants.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import ROOT, free_port
from sessions_http import VARIANTS

BASE_REQUESTS = 100


def instructions(variant: str, requests: int) -> int:
    """Instructions of one server run answering ``requests`` session requests."""
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="tessera-ir-")) / "valgrind.log"
    env = {
        **os.environ,
        "BENCH_VARIANT": variant,
        "BENCH_DATABASE_URL": f"sqlite:///{log.parent}/sessions.db",
    }
    server = subprocess.Popen(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            f"--log-file={log}",
            sys.executable,
            "-m",
            "uvicorn",
            "apps_sessions:app",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--app-dir",
            str(ROOT / "bench"),
        ],
        env=env,
        cwd=str(ROOT),
    )
    try:
        deadline = time.monotonic() + 120
        while True:  # valgrind makes start-up slow
            try:
                probe = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                probe.request("GET", "/ready")
                probe.getresponse().read()
                probe.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{variant} did not start") from None
                time.sleep(0.5)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/hit")
        first = conn.getresponse()
        first.read()
        set_cookie = first.getheader("set-cookie")
        # The same request for every variant: those without sessions get a cookie of the size.
        cookie = set_cookie.split(";", 1)[0] if set_cookie else f"session={'A' * 43}"
        headers = {"Cookie": cookie}
        for _ in range(requests):
            conn.request("GET", "/hit", headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{variant}: status {response.status}")
        conn.close()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=120)
    match = re.search(r"I\s+refs:\s+([\d,]+)", log.read_text())
    if match is None:
        raise RuntimeError(f"no instruction count in {log}")
    return int(match.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "variants",
        nargs="*",
        metavar="VARIANT",
        default=["bare", "empty", "starlette", "memory", "redis"],
        help=f"any of {', '.join(VARIANTS)}",
    )
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    # Checked here: argparse checks a list default of a positional against its choices.
    unknown = [variant for variant in args.variants if variant not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s): {', '.join(unknown)}")
    per_request: dict[str, float] = {}
    for variant in args.variants:
        few = instructions(variant, BASE_REQUESTS)
        many = instructions(variant, BASE_REQUESTS + args.requests)
        per_request[variant] = (many - few) / args.requests
        base = per_request.get("bare")
        extra = f"  (+{per_request[variant] - base:,.0f} over bare)" if base else ""
        print(f"{variant:12s} {per_request[variant]:>10,.0f} instructions/request{extra}")


if __name__ == "__main__":
    main()
