"""`modelarts-etl ingest` against dlt, pandas and DuckDB SQL on the same corpus, each in its own process.

    python benchmarks/ingest_vs_peers.py                       # 20,000 payloads; dlt -> DuckDB on the first 1,000
    python benchmarks/ingest_vs_peers.py --dlt-duckdb-payloads 20000   # the full corpus there too (~10 min, >10 GB)
    python benchmarks/ingest_vs_peers.py --only ours           # just our ingest
    python benchmarks/ingest_vs_peers.py --skip dlt-parquet,pandas

Prints wall time (process start to exit, imports included), payloads/s, MB/s of JSONL
input, peak RSS of the process tree, and each tool's time and memory relative to ours.
A peer run on fewer payloads (dlt -> DuckDB by default) is compared by throughput,
which flatters it: its memory grows with the input.
Peers come from the `bench` extra: pip install -e '.[dev,bench]'.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from _harness import OUT_DIR, ROOT, machine, measure, ours_cmd, table
from make_corpus import DEFAULT_PAYLOADS, DEFAULT_SEED, PROJECT_ID, make_corpus

PEERS = ("dlt-parquet", "dlt-duckdb", "pandas", "duckdb-sql")
LABELS = {
    "ours": "modelarts-etl ingest (DuckLake)",
    "dlt-parquet": "dlt -> filesystem Parquet",
    "dlt-duckdb": "dlt -> DuckDB (default loader)",
    "pandas": "pandas json_normalize -> Parquet",
    "duckdb-sql": "DuckDB read_json -> unnest -> Parquet",
}


def _count_lines(path: Path, limit: int | None) -> tuple[int, int]:
    n = size = 0
    with path.open("rb") as fh:
        for line in fh:
            if limit is not None and n >= limit:
                break
            n += 1
            size += len(line)
    return n, size


def run_tool(tool: str, corpus: Path, limit: int | None) -> dict:
    out = OUT_DIR / tool
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    source = corpus
    if tool == "ours":
        if limit is not None:  # our CLI reads whole files: give it the first `limit` lines
            source = out / "input.jsonl"
            with corpus.open("rb") as src, source.open("wb") as dst:
                for n, line in enumerate(src):
                    if n >= limit:
                        break
                    dst.write(line)
        cmd = ours_cmd(source, out / "warehouse", PROJECT_ID)
    else:
        cmd = [sys.executable, str(Path(__file__).parent / "peers.py"), tool, str(corpus), str(out)]
        if limit is not None:
            cmd += ["--limit", str(limit)]
    payloads, size = _count_lines(corpus, limit)
    print(f"running {tool} on {payloads:,} payloads ...", file=sys.stderr, flush=True)
    run = measure(cmd, cwd=ROOT)
    if run.returncode != 0:
        print(f"{tool} failed (exit {run.returncode}):\n{run.stderr[-3000:]}", file=sys.stderr)
    else:
        print(f"  {run.wall_s:.1f} s, {run.peak_rss_mb:.0f} MB: {run.stdout.strip()[-300:]}", file=sys.stderr)
    if tool == "ours" and limit is not None:
        source.unlink()
    return {"tool": tool, "payloads": payloads, "bytes": size, "run": run}


def report(results: list[dict]) -> str:
    ours = next((r for r in results if r["tool"] == "ours" and r["run"].returncode == 0), None)
    rows = []
    for r in results:
        run = r["run"]
        if run.returncode != 0:
            rows.append([LABELS[r["tool"]], f"{r['payloads']:,}", "failed", "", "", "", "", ""])
            continue
        rate = r["payloads"] / run.wall_s
        mbs = r["bytes"] / 1e6 / run.wall_s
        if ours is None or r is ours:
            t_ratio = m_ratio = "1.0x" if r is ours else "-"
        else:
            ours_rate = ours["payloads"] / ours["run"].wall_s
            t_ratio = f"{ours_rate / rate:.1f}x" + ("*" if r["payloads"] != ours["payloads"] else "")
            m_ratio = f"{run.peak_rss_mb / ours['run'].peak_rss_mb:.1f}x"
        rows.append([LABELS[r["tool"]], f"{r['payloads']:,}", f"{run.wall_s:.1f}", f"{rate:,.0f}", f"{mbs:.1f}",
                     f"{run.peak_rss_mb:,.0f}", t_ratio, m_ratio])
    header = ["tool", "payloads", "wall s", "payloads/s", "MB/s", "peak RSS MB", "time vs ours", "RSS vs ours"]
    text = table(rows, header)
    if any(r["payloads"] != (ours or r)["payloads"] for r in results):
        text += "\n* run on fewer payloads; compared by throughput (payloads/s)"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--payloads", type=int, default=DEFAULT_PAYLOADS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--only", default=None, help="comma-separated tools to run (ours," + ",".join(PEERS) + ")")
    parser.add_argument("--skip", default="", help="comma-separated tools to skip")
    parser.add_argument("--dlt-duckdb-payloads", type=int, default=1000,
                        help="payloads for dlt -> DuckDB (its default loader needs ~10 min and >10 GB for 20,000; "
                             "0 skips it)")
    parser.add_argument("--repeat", type=int, default=1, help="run ours N times and keep the fastest")
    args = parser.parse_args()
    tools = ["ours", *PEERS] if args.only is None else args.only.split(",")
    skip = set(filter(None, args.skip.split(",")))
    if args.dlt_duckdb_payloads == 0:
        skip.add("dlt-duckdb")
    unknown = (set(tools) | skip) - {"ours", *PEERS}
    if unknown:
        parser.error(f"unknown tool(s): {', '.join(sorted(unknown))}")
    corpus = make_corpus(args.payloads, args.seed)
    results = []
    for tool in tools:
        if tool in skip:
            continue
        limit = min(args.dlt_duckdb_payloads, args.payloads) if tool == "dlt-duckdb" else None
        runs = [run_tool(tool, corpus, limit) for _ in range(args.repeat if tool == "ours" else 1)]
        results.append(min(runs, key=lambda r: (r["run"].returncode != 0, r["run"].wall_s)))
    _, size = _count_lines(corpus, None)
    print(f"corpus: {corpus.name}, {args.payloads:,} payloads, {size / 1e6:.1f} MB JSONL")
    print(f"machine: {machine()}")
    print(report(results))


if __name__ == "__main__":
    main()
