"""Peak RSS of `modelarts-etl ingest` at 20,000 and at 200,000 payloads: it should not grow with the input.

    python benchmarks/memory_flat.py                    # 20,000 vs 200,000 (writes a 1.4 GB corpus once)
    python benchmarks/memory_flat.py --sizes 2000,20000 # quicker

Each size runs in a fresh process into an empty warehouse; the budget is 400 MB.
"""
from __future__ import annotations

import argparse
import shutil
import sys

from _harness import OUT_DIR, ROOT, machine, measure, ours_cmd, table
from make_corpus import DEFAULT_SEED, PROJECT_ID, make_corpus

BUDGET_MB = 400
TOLERANCE = 1.10  # the larger run may peak at most 10% above the smaller (allocator noise)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="20000,200000")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--keep", action="store_true", help="keep the warehouses under benchmarks/out/")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows, peaks = [], []
    for n in sizes:
        corpus = make_corpus(n, args.seed)
        warehouse = OUT_DIR / f"memory-{n}"
        shutil.rmtree(warehouse, ignore_errors=True)
        print(f"ingesting {n:,} payloads ...", file=sys.stderr, flush=True)
        run = measure(ours_cmd(corpus, warehouse, PROJECT_ID), cwd=ROOT)
        if run.returncode != 0:
            sys.exit(f"ingest of {n:,} payloads failed:\n{run.stderr[-3000:]}")
        size = corpus.stat().st_size
        peaks.append(run.peak_rss_mb)
        rows.append([f"{n:,}", f"{size / 1e6:,.0f}", f"{run.wall_s:.1f}", f"{n / run.wall_s:,.0f}",
                     f"{run.peak_rss_mb:,.0f}", "yes" if run.peak_rss_mb <= BUDGET_MB else "NO"])
        if not args.keep:
            shutil.rmtree(warehouse, ignore_errors=True)
    print(f"machine: {machine()}")
    print(table(rows, ["payloads", "JSONL MB", "wall s", "payloads/s", "peak RSS MB", f"<= {BUDGET_MB} MB"]))
    flat = all(p <= peaks[0] * TOLERANCE for p in peaks[1:])
    print(f"peak RSS {' -> '.join(f'{p:,.0f}' for p in peaks)} MB: "
          f"{'flat' if flat else 'GROWS with the input'} (largest / smallest = {max(peaks) / peaks[0]:.2f})")
    sys.exit(0 if flat and max(peaks) <= BUDGET_MB else 1)


if __name__ == "__main__":
    main()
