"""Dagster as deployed: the daemon, on PostgreSQL instance storage (deploy/dagster.yaml as shipped),
fires the sync schedule against the simulator, and the scheduled run lands the project.

The daemon is its own process, as in production; the schedule runs every minute here, so the
test waits for the next minute's tick.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from pipelines.modelarts.simulator import SimulatorServer, World
from tests.servers import postgres
from warehouse import connect

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "proj-sched"
TOKEN = "sched-t0k"


pytestmark = pytest.mark.usefixtures("environment_restored")


def test_the_daemon_on_postgres_storage_fires_the_sync_schedule(tmp_path):
    with postgres() as pg_url:
        base = pg_url.rsplit("/", 1)[0]
        subprocess.run(["psql", base + "/postgres", "-qc", "CREATE DATABASE dagster"], check=True,
                       capture_output=True)
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
        world = World(projects=[PROJECT], jobs=3, versions_per_job=(1, 2), seed=9)
        with SimulatorServer(world, token=TOKEN) as sim:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELARTS_", "HUAWEICLOUD_"))}
            env.update(DAGSTER_HOME=str(home), DAGSTER_PG_URL=base.replace("postgresql://", "postgresql+psycopg2://") + "/dagster", MODELARTS_ENDPOINT=sim.url,
                       MODELARTS_TOKEN=TOKEN, MODELARTS_PROJECT_IDS=PROJECT, MODELARTS_WAREHOUSE=str(tmp_path / "wh"),
                       MODELARTS_RATE="0", MODELARTS_SYNC_CRON="* * * * *", MODELARTS_SYNC_SCHEDULE="running")
            daemon = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w",
                                       "workspace.yaml"], cwd=ROOT, env=env, stdout=open(tmp_path / "daemon.log", "wb"),
                                      stderr=subprocess.STDOUT, start_new_session=True)
            try:
                run = _first_scheduled_run(home, env, timeout=150)
            finally:
                os.killpg(daemon.pid, signal.SIGTERM)
                try:
                    daemon.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(daemon.pid, signal.SIGKILL)
            truth = {(t.job_id, t.version_id) for t in world.truth(PROJECT)}

    assert run.status == dg.DagsterRunStatus.SUCCESS, (tmp_path / "daemon.log").read_text()[-3000:]
    assert run.tags["dagster/partition"] == PROJECT and run.job_name == "sync_all_projects"
    with connect(tmp_path / "wh") as con:
        assert set(con.execute("SELECT job_id, version_id FROM job_versions").fetchall()) == truth


def _first_scheduled_run(home: Path, env: dict, timeout: float):
    """Poll the PostgreSQL instance until the schedule's first run has finished."""
    os.environ["DAGSTER_PG_URL"] = env["DAGSTER_PG_URL"]
    deadline = time.monotonic() + timeout
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            runs = instance.get_runs(dg.RunsFilter(tags={"dagster/schedule_name": "sync_all_projects_schedule"}))
            done = [r for r in runs if r.is_finished]
            if done:
                return done[0]
            time.sleep(1)
    raise AssertionError(f"no scheduled run finished within {timeout:.0f} s")
