"""Dagster's two-step flow on the benchmark corpus: land the bodies raw, then derive them.

The `raw_payloads` asset lands a sync with `derive=False`; the `derive_tables` asset then calls
`derive_pending()` (as do `modelarts-etl rebuild` and crash repair). Each step runs in its own
process, as in two Dagster runs, and is timed with its peak RSS; `modelarts-etl ingest`, which
does both in one pass, is run beside them for comparison.

    .venv/bin/python benchmarks/two_step.py            # 20,000 payloads
    .venv/bin/python benchmarks/two_step.py -n 2000
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from _harness import OUT_DIR, ROOT, machine, measure, ours_cmd, table
from make_corpus import DEFAULT_PAYLOADS, DEFAULT_SEED, PROJECT_ID, make_corpus


def land_raw(corpus: Path, warehouse: Path) -> None:
    from warehouse.files import iter_file_records
    from warehouse.store import Warehouse

    with Warehouse.open(warehouse) as wh:
        report = wh.land(iter_file_records([corpus], PROJECT_ID), derive=False)
    print(f"landed {report.landed:,} bodies")


def derive(warehouse: Path) -> None:
    from warehouse.store import Warehouse

    with Warehouse.open(warehouse) as wh:
        report = wh.derive_pending()
    print(f"derived {report.versions_loaded:,} versions")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--payloads", type=int, default=DEFAULT_PAYLOADS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--step", choices=("land", "derive"), help=argparse.SUPPRESS)  # one step, in this process
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--warehouse", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        sys.path.insert(0, str(ROOT))
        land_raw(args.corpus, args.warehouse) if args.step == "land" else derive(args.warehouse)
        return

    corpus = make_corpus(args.payloads, args.seed)
    two_step, one_step = OUT_DIR / "two-step", OUT_DIR / "one-step"
    rows = []
    for label, cmd, warehouse in (
        ("land raw (derive=False)", ["--step", "land", "--corpus", str(corpus)], two_step),
        ("derive_pending()", ["--step", "derive"], two_step),
        ("modelarts-etl ingest (both at once)", None, one_step),
    ):
        if cmd is None or cmd[1] == "land":
            shutil.rmtree(warehouse, ignore_errors=True)
        full = ours_cmd(corpus, warehouse, PROJECT_ID) if cmd is None else \
            [sys.executable, __file__, *cmd, "--warehouse", str(warehouse)]
        run = measure(full, cwd=ROOT)
        if run.returncode != 0:
            sys.exit(f"{label} failed:\n{run.stderr[-3000:]}")
        rows.append([label, f"{args.payloads:,}", f"{run.wall_s:.1f}", f"{run.peak_rss_mb:,.0f}"])
    print(f"machine: {machine()}")
    print(table(rows, ["step", "payloads", "wall s", "peak RSS MB"]))


if __name__ == "__main__":
    main()
