"""What Dagster adds to a sync: the demo's two syncs through the CLI, through `dagster asset materialize`,
and launched from the UI (`dg dev`, GraphQL, the daemon's queue, a run worker), side by side.

    .venv/bin/python benchmarks/dagster_overhead.py [--rounds 3] [--ways cli,in_process,ui]

Each round and each way gets a fresh simulator world (the demo's: 40 v1 jobs and 15 v2 jobs in one
project, seed 7, its payload and transient faults) and a fresh warehouse; sync 1, the simulated clock moves 6 hours, sync 2.
The figure is the wall time of both syncs: for the CLI, each its own process, start to end;
in-process, `job.execute_in_process` as `make demo` runs it (imports not counted); from the UI,
launch to the run's end, through the queue and a run worker process (the UI's own start-up is
not counted: it is started once, as a user leaves it running); `ui_in_run` is the same two runs
from their worker's start (the run's startTime) to their end, i.e. without the launch, the queue
and the run worker's start-up, read from the run's own record. Ratios are
against the CLI, within the same round, since the machine is shared.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.dagster_ui import DagsterUI  # noqa: E402
from pipelines.demo import ADVANCE_HOURS, DAGSTER_YAML, SIM_JOBS, SIM_SEED, SIM_V2_JOBS  # noqa: E402
from pipelines.modelarts.simulator import DEFAULT_PROJECT_ID, SimulatorServer, TransientFaults, World  # noqa: E402
from pipelines.modelarts.simulator.v2_world import V2World  # noqa: E402

TOKEN = "bench-t0k"
BIN = Path(sys.executable).parent


class Worlds:
    """The demo's: its v1 world and faults, and its v2 jobs in the same project; advanced together."""

    def __init__(self):
        self.v1 = World(projects=[DEFAULT_PROJECT_ID], jobs=SIM_JOBS, seed=SIM_SEED, payload_fault_rate=0.06)
        self.faults = TransientFaults(rate=0.03, kinds=("throttle", "server_error", "drop"), seed=SIM_SEED,
                                      max_per_path=1, retry_after=0)
        self.v2 = V2World(projects=(DEFAULT_PROJECT_ID,), jobs=SIM_V2_JOBS, seed=SIM_SEED, payload_fault_rate=0.06,
                          secret_share=0.2)

    def advance(self, seconds: float) -> None:
        self.v1.advance(seconds)
        self.v2.advance(seconds, new_jobs=2)


def _env(sim_url: str, home: Path, warehouse: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELARTS_", "HUAWEICLOUD_"))}
    return {**env, "DAGSTER_HOME": str(home), "MODELARTS_ENDPOINT": sim_url, "MODELARTS_TOKEN": TOKEN,
            "MODELARTS_PROJECT_IDS": DEFAULT_PROJECT_ID, "MODELARTS_WAREHOUSE": str(warehouse),
            "MODELARTS_RATE": "0"}


def _home(tmp: Path) -> Path:
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    return home


def _timed_process(cmd: list[str], env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def two_syncs(way: str, tmp: Path) -> float:
    world = Worlds()
    home, warehouse = _home(tmp), tmp / "wh"
    with SimulatorServer(world.v1, token=TOKEN, faults=world.faults, v2=world.v2) as sim:
        env = _env(sim.url, home, warehouse)
        if way == "ui":
            with DagsterUI(env, log=tmp / "dg-dev.log") as ui:
                first = _ui_sync(ui)
                world.advance(ADVANCE_HOURS * 3600)
                return first + _ui_sync(ui)
        if way == "in_process":
            return _in_process_syncs(env, world)
        cmd = [str(BIN / "modelarts-etl"), "sync", "--project-id", DEFAULT_PROJECT_ID, "--rate", "0", "--quiet"]
        total = 0.0
        for _ in range(2):
            total += _timed_process(cmd, env)
            world.advance(ADVANCE_HOURS * 3600)
        return total


def _in_process_syncs(env: dict, world: Worlds) -> float:
    """As `make demo` runs them: the job executed in this process. The definitions read their
    settings when first imported, so this way runs in a child that imports them (not timed)."""
    code = (
        "import sys, time, json\n"
        "import dagster as dg\n"
        "from pipelines.definitions import defs\n"
        "job, instance = defs.resolve_job_def('sync_all_projects'), dg.DagsterInstance.get()\n"
        "quiet = {'loggers': {'console': {'config': {'log_level': 'WARNING'}}}}\n"
        "total = 0.0\n"
        "for n in range(2):\n"
        "    sys.stdin.readline()\n"
        "    started = time.perf_counter()\n"
        f"    ok = job.execute_in_process(instance=instance, partition_key='{DEFAULT_PROJECT_ID}', run_config=quiet,\n"
        "                                raise_on_error=False).success\n"
        "    print(json.dumps([ok, time.perf_counter() - started]), flush=True)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    total = 0.0
    for _ in range(2):
        child.stdin.write("go\n")
        child.stdin.flush()
        ok, seconds = json.loads(child.stdout.readline())
        if not ok:
            raise SystemExit("in-process run failed")
        total += seconds
        world.advance(ADVANCE_HOURS * 3600)
    child.stdin.close()
    child.wait()
    return total


IN_RUN: list[float] = []  # per UI run: its worker's start to its end, the part that is the run itself


def _ui_sync(ui: DagsterUI) -> float:
    started = time.perf_counter()
    run_id = ui.launch(job="sync_all_projects", partition=DEFAULT_PROJECT_ID)
    status = ui.wait_run(run_id)
    if status != "SUCCESS":
        raise SystemExit(f"UI run {run_id}: {status}")
    times = ui.run_times(run_id)
    IN_RUN.append(times["endTime"] - times["startTime"])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ways", default="cli,in_process,ui", help="comma-separated; cli is always run first")
    args = parser.parse_args()
    ways = ("cli",) + tuple(w for w in args.ways.split(",") if w in ("in_process", "ui"))
    shown = ways + (("ui_in_run",) if "ui" in ways else ())
    figures: dict[str, list[float]] = {w: [] for w in shown}
    ratios: dict[str, list[float]] = {w: [] for w in shown}
    for n in range(args.rounds):
        round_figures = {}
        for way in ways:
            with tempfile.TemporaryDirectory() as tmp:
                round_figures[way] = two_syncs(way, Path(tmp))
        if "ui" in ways:  # the two UI runs less the queue and the run worker's start
            round_figures["ui_in_run"] = sum(IN_RUN[-2:])
        for way in shown:
            figures[way].append(round_figures[way])
            ratios[way].append(round_figures[way] / round_figures["cli"])
        print(f"round {n + 1}: " + ", ".join(f"{w} {s:.1f} s" for w, s in round_figures.items()), flush=True)
    print(f"\nthe demo's two syncs ({SIM_JOBS} v1 and {SIM_V2_JOBS} v2 jobs), median of {args.rounds} rounds:")
    for way in shown:
        print(f"  {way:<12} {statistics.median(figures[way]):6.1f} s   "
              f"x{statistics.median(ratios[way]):.2f} of the CLI (range x{min(ratios[way]):.2f}-x{max(ratios[way]):.2f})")


if __name__ == "__main__":
    main()
