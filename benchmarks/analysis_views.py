"""What the analysis views, the Dagster summary and the report cost, next to the ingest they follow.

    python benchmarks/analysis_views.py                  # the 20,000-payload corpus (make_corpus.py)
    python benchmarks/analysis_views.py --corpus FILE.jsonl

The views are plain SQL views: an ingest does not compute them, so they add nothing to its wall
time (their DDL is one statement each, once per lake). What they cost is query time, so this times
an ingest of the corpus, then each view read in full (`CREATE TEMP TABLE AS SELECT *`, so every
column is computed), the Dagster summary's metadata (`assets/marts.py`, run after each sync) and the
HTML report, and prints each as a share of the ingest's wall time.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _harness import BIN, measure  # noqa: E402
from make_corpus import corpus_path  # noqa: E402


def _default_corpus() -> Path:
    mine = corpus_path()
    shared = Path("/work/main/benchmarks/data") / mine.name
    return mine if mine.exists() else shared if shared.exists() else mine


def _timed(label: str, action, rows: list) -> float:
    started = time.perf_counter()
    action()
    elapsed = time.perf_counter() - started
    rows.append((label, elapsed))
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=None)
    args = parser.parse_args()
    corpus = args.corpus or _default_corpus()
    if not corpus.exists():
        print(f"no corpus at {corpus}: run benchmarks/make_corpus.py first")
        return 1
    work = Path(tempfile.mkdtemp(prefix="analysis-bench-"))
    try:
        warehouse = work / "wh"
        ingest = measure([str(BIN / "modelarts-etl"), "ingest", str(corpus), "--project-id", "bench0project",
                          "--warehouse", str(warehouse)])
        if ingest.returncode != 0:
            print(ingest.stderr[-2000:])
            return 1
        print(f"corpus {corpus.name}: ingest {ingest.wall_s:.1f} s wall ({ingest.stdout.strip()})")
        report_rows = measure_reads(warehouse, work)
        print(f"\n| step | seconds | share of the ingest's {ingest.wall_s:.1f} s |\n|---|---:|---:|")
        for label, seconds in report_rows:
            print(f"| {label} | {seconds:.2f} | {100 * seconds / ingest.wall_s:.1f} % |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def measure_reads(warehouse: Path, work: Path) -> list[tuple[str, float]]:
    from assets.marts import version_summary_metadata
    from warehouse import analysis, connect
    from warehouse.report import build_report

    rows: list[tuple[str, float]] = []
    con = connect(warehouse)
    try:
        for view in analysis.ANALYSIS_VIEWS:
            _timed(f"view {view.name} (read in full)",
                   lambda: con.execute(f'CREATE OR REPLACE TEMP TABLE t AS SELECT * FROM "{view.name}"'), rows)
        con.execute("DROP TABLE temp.t")
        _timed("Dagster version_summary metadata (assets/marts.py)", lambda: version_summary_metadata(con), rows)
    finally:
        con.close()
    _timed("modelarts-etl report (HTML, 4 charts)", lambda: build_report(warehouse, work / "report.html"), rows)
    return rows


if __name__ == "__main__":
    sys.exit(main())
