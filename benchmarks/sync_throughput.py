"""Sync throughput: 2,000 versions from the simulator, 50 ms latency per request, concurrency 16.

Prints the elapsed time next to the ideal `requests x latency / concurrency` (every
request waits its latency, `concurrency` of them at a time, nothing else costs time)
and their ratio; the target is at most 1.3x. A second sync with nothing changed is
timed too (list calls only).

The simulator runs in its own process, as a remote server would, so that its Python
does not compete with the client's for one interpreter lock.

    .venv/bin/python benchmarks/sync_throughput.py [--versions 2000] [--latency-ms 50] [--concurrency 16]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.modelarts.auth import StaticToken  # noqa: E402
from pipelines.modelarts.sync import Target, sync_projects  # noqa: E402
from warehouse.store import Warehouse  # noqa: E402

TOKEN = "bench-token"


def start_simulator(args) -> tuple[subprocess.Popen, str, str]:
    jobs = args.versions // args.versions_per_job
    command = [
        sys.executable, "-m", "pipelines.cli_sync", "simulate", "--port", "0", "--jobs", str(jobs),
        "--versions-per-job", str(args.versions_per_job), "--latency-ms", str(args.latency_ms),
        "--running-share", "0", "--seed", "1", "--page-cap", str(args.page_cap), "--duration", "600", "--prewarm",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT), MODELARTS_SIMULATOR_TOKEN=TOKEN)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    url = proc.stdout.readline().split()[-1]
    project_id = proc.stdout.readline().split(";")[0].split()[-1]
    return proc, url, project_id


def timed_sync(root: Path, url: str, project_id: str, args):
    """The sync's own elapsed time: listing, fetching, landing and deriving.

    Opening the warehouse (lock, DDL) is setup, not sync, and is left out.
    """
    with Warehouse.open(root) as wh:
        started = time.perf_counter()
        report = sync_projects(wh, [Target(url, project_id)], StaticToken(TOKEN), concurrency=args.concurrency,
                               rate=None, per_page=args.per_page)
        return report, time.perf_counter() - started


def describe(title: str, report, elapsed: float, args) -> None:
    latency = args.latency_ms / 1000
    ideal = report.requests * latency / args.concurrency
    print(f"{title}: {report.requests} requests ({report.fetched} details), elapsed {elapsed:.2f} s, "
          f"ideal {report.requests} x {latency * 1000:g} ms / {args.concurrency} = {ideal:.2f} s, "
          f"ratio {elapsed / ideal:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=2000)
    parser.add_argument("--versions-per-job", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--per-page", type=int, default=100)
    parser.add_argument("--page-cap", type=int, default=100)
    args = parser.parse_args()

    proc, url, project_id = start_simulator(args)
    try:
        with tempfile.TemporaryDirectory(prefix="sync-bench-") as tmp:
            root = Path(tmp) / "warehouse"
            full, elapsed = timed_sync(root, url, project_id, args)
            assert full.ok and full.fetched == args.versions and full.failed == 0, full.summary()
            describe("full sync", full, elapsed, args)
            again, elapsed_again = timed_sync(root, url, project_id, args)
            assert again.fetched == 0, again.summary()
            print(f"re-run, nothing changed: {again.requests} requests (job list pages only), "
                  f"{again.fetched} details, elapsed {elapsed_again:.2f} s")
            ratio = elapsed / (full.requests * args.latency_ms / 1000 / args.concurrency)
            print(f"target <= 1.30x: {'met' if ratio <= 1.3 else 'NOT met'} ({ratio:.2f}x)")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
