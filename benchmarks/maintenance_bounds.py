"""Do files and the catalog stay bounded over many small loads? With and without maintenance.

Each load is a small sync: a few new versions (some still running) and a few running versions
fetched again with new bytes, so every load deletes rows as well as adding them. One lake runs
`maintain(retention=0)` every `--every` loads, the other never does; after every `--every`
loads both print their Parquet file count (what the catalog tracks, and what is on disk), the
files the newest snapshot reads, the snapshots kept and the catalog's size.

    .venv/bin/python benchmarks/maintenance_bounds.py               # 200 loads of 10 payloads
    .venv/bin/python benchmarks/maintenance_bounds.py --loads 60 --every 10
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from warehouse.maintenance import catalog_bytes, live_files, maintain, tracked_files  # noqa: E402
from pipelines.modelarts.records import RawRecord  # noqa: E402
from warehouse.store import Warehouse  # noqa: E402

SEED = json.loads((ROOT / "tests" / "data" / "seed_example.json").read_bytes())


class Syncs:
    """A stream of small syncs over a growing set of jobs, some of which keep running."""

    def __init__(self, payloads: int, refetched: int, seed: int = 7):
        self.rng = random.Random(seed)
        self.payloads, self.refetched = payloads, refetched
        self.next_job, self.running, self.fetches = 0, [], 0

    def next_load(self) -> list[RawRecord]:
        again = [(job, self.rng.choice((8, 8, 10)))  # a third of the re-fetched ones have finished
                 for job in self.rng.sample(self.running, min(self.refetched, len(self.running)))]
        self.running = [job for job in self.running if (job, 10) not in again]
        bodies = [self._body(job, status) for job, status in again]
        while len(bodies) < self.payloads:
            job, self.next_job = self.next_job, self.next_job + 1
            status = 8 if self.rng.random() < 0.3 else 10
            if status == 8:
                self.running.append(job)
            bodies.append(self._body(job, status))
        return [RawRecord(body=b, project_id="bench", source=f"sync:{self.fetches}:{n}") for n, b in enumerate(bodies)]

    def _body(self, job: int, status: int) -> bytes:
        self.fetches += 1
        payload = dict(SEED, job_id=job, version_id=1, status=status, duration=self.fetches)
        return json.dumps(payload).encode()


def disk_files(root: Path) -> int:
    return sum(1 for p in (root / "data").rglob("*.parquet"))


def run(root: Path, loads: int, every: int, payloads: int, refetched: int, maintained: bool) -> None:
    syncs = Syncs(payloads, refetched)
    print(f"\nwith maintenance (retention 0, every {every} loads)" if maintained else "\nwithout maintenance")
    print(f"{'loads':>6} {'files':>7} {'on disk':>8} {'live':>6} {'snapshots':>10} {'catalog KiB':>12} "
          f"{'load s':>7} {'maint s':>8}")
    with Warehouse.open(root) as wh:
        load_s = 0.0
        for n in range(1, loads + 1):
            started = time.perf_counter()
            wh.land(syncs.next_load())
            load_s += time.perf_counter() - started
            if n % every:
                continue
            maint_s = ""
            if maintained:
                started = time.perf_counter()
                maintain(wh, retention=timedelta(0))
                maint_s = f"{time.perf_counter() - started:.2f}"
            snapshots = wh.con.execute("SELECT count(*) FROM ducklake_snapshots('modelarts')").fetchone()[0]
            print(f"{n:>6} {tracked_files(wh.con):>7} {disk_files(root):>8} {live_files(wh.con):>6} {snapshots:>10} "
                  f"{catalog_bytes(wh.config) / 1024:>12.0f} {load_s / every:>7.2f} {maint_s:>8}", flush=True)
            load_s = 0.0
        versions = wh.con.execute("SELECT count(*) FROM job_versions").fetchone()[0]
        print(f"{versions} versions stored, {syncs.fetches} payloads fetched")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loads", type=int, default=200)
    parser.add_argument("--every", type=int, default=20, help="maintain (and print) every N loads")
    parser.add_argument("--payloads", type=int, default=10, help="payloads per load")
    parser.add_argument("--refetched", type=int, default=3, help="of them, running versions fetched again")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="maintenance-bounds-"))
    try:
        print(f"{args.loads} loads of {args.payloads} payloads ({args.refetched} re-fetched running versions); "
              "'files' = Parquet data + delete files the catalog tracks, 'live' = what the newest snapshot reads")
        for maintained in (True, False):
            run(base / ("maintained" if maintained else "plain"), args.loads, args.every, args.payloads,
                args.refetched, maintained)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
