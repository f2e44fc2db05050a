"""The same ingest on the embedded lake and on PostgreSQL + S3 (SeaweedFS), and 4 parallel syncs
against 4 serial ones on the shared configuration, in one run.

    .venv/bin/python benchmarks/remote_lake.py [--payloads 20000] [--latency-ms 20]

Ingest: the benchmark corpus (benchmarks/make_corpus.py, the first N payloads) by
`modelarts-etl ingest`, wall time and peak RSS, embedded catalog vs. PostgreSQL catalog with
s3:// data. Syncs: 4 projects x ~500 versions from the simulator with the given latency per
request, 4 `modelarts-etl sync` processes at once vs. the same 4 one after another. The servers
are the tests' throwaway ones (tests/servers.py).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _harness import measure  # noqa: E402

from pipelines.modelarts.simulator import SimulatorServer, World  # noqa: E402
from tests.servers import postgres, s3_environment, seaweedfs  # noqa: E402

CORPUS = ROOT / "benchmarks" / "data" / "corpus-20000-s42.jsonl"
CLI = [sys.executable, "-m", "pipelines.cli"]


def lake_env(pg_url: str, s3: str) -> dict[str, str]:
    name = "lake_" + uuid.uuid4().hex[:8]
    base = pg_url.rsplit("/", 1)[0]
    subprocess.run(["psql", base + "/postgres", "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    return {"MODELARTS_CATALOG": f"{base}/{name}", "MODELARTS_DATA_PATH": f"s3://lake/{name}/", **s3_environment(s3)}


def ingest(corpus: Path, folder: Path, env: dict) -> str:
    run = measure(CLI + ["ingest", str(corpus), "--project-id", "bench", "--warehouse", str(folder)],
                  env={**os.environ, **env}, cwd=ROOT)
    if run.returncode:
        raise SystemExit(run.stderr[-2000:])
    return f"{run.wall_s:6.1f} s, peak {run.peak_rss_mb:5.0f} MB"


def syncs(sim, folder: Path, env: dict, projects: list[str], parallel: bool) -> float:
    full = {**os.environ, **env, "MODELARTS_TOKEN": "bench"}
    cmds = [CLI + ["sync", "--endpoint", sim.url, "--project-id", p, "--warehouse", str(folder), "--rate", "0",
                   "--quiet"] for p in projects]
    started = time.perf_counter()
    if parallel:
        procs = [subprocess.Popen(c, env=full, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for c in cmds]
        codes = [p.wait() for p in procs]
    else:
        codes = [subprocess.run(c, env=full, cwd=ROOT, capture_output=True).returncode for c in cmds]
    if any(codes):
        raise SystemExit(f"a sync failed: {codes}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payloads", type=int, default=20000)
    parser.add_argument("--latency-ms", type=float, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, postgres() as pg_url, seaweedfs() as s3:
        tmp = Path(tmp)
        corpus = tmp / "corpus.jsonl"
        with open(CORPUS, "rb") as src, open(corpus, "wb") as dst:
            dst.writelines(islice(src, args.payloads))
        print(f"ingest of {args.payloads:,} payloads ({corpus.stat().st_size / 1e6:.0f} MB):")
        print(f"  embedded (SQLite catalog, local data)   {ingest(corpus, tmp / 'embedded', {})}")
        print(f"  PostgreSQL catalog, s3:// (SeaweedFS)   {ingest(corpus, tmp / 'remote', lake_env(pg_url, s3))}")

        projects = [f"proj-{n}" for n in range(4)]
        world = World(projects=projects, jobs=100, versions_per_job=(4, 6), seed=31)
        print(f"\n4 projects x ~500 versions ({world.version_count()} in all), simulator latency "
              f"{args.latency_ms:g} ms per request, PostgreSQL + SeaweedFS:")
        with SimulatorServer(world, token="bench", latency=args.latency_ms / 1000) as sim:
            serial = syncs(sim, tmp / "serial", lake_env(pg_url, s3), projects, parallel=False)
            parallel = syncs(sim, tmp / "parallel", lake_env(pg_url, s3), projects, parallel=True)
        print(f"  one after another  {serial:6.1f} s\n  4 at once          {parallel:6.1f} s   "
              f"(x{serial / parallel:.2f} faster)")


if __name__ == "__main__":
    main()
