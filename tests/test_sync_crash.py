"""kill -9 a `modelarts-etl sync` while it fetches, while it loads DuckDB and while it writes Parquet.

The sync runs as a real subprocess against the simulator served by a thread of this
test process; the failpoints (pipelines/modelarts/failpoints.py, and `sync_detail_fetched` in
the fetch loop) make the process SIGKILL itself at an exact moment. Afterwards the
warehouse must open, Parquet and DuckDB must agree, no version may be partly visible,
and the next sync must end with exactly the tables of a sync that was never interrupted.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ledger import ledger, no_orphans
from pipelines.modelarts.simulator import SimulatorServer, World
from test_crash import stable_snapshot
from test_storage import assert_every_row_is_in_parquet  # noqa: E402
from warehouse import connect
from warehouse.store import Warehouse

TOKEN = "crash-sync-token-88e1"
BATCH = 40  # answers per warehouse transaction: several batches, so a kill lands mid-load
CREDENTIAL_VARS = ("MODELARTS_TOKEN", "HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "MODELARTS_IAM_USER",
                   "MODELARTS_IAM_PASSWORD", "MODELARTS_FAILPOINT", "MODELARTS_PROJECT_ID", "MODELARTS_ENDPOINT")


@pytest.fixture(scope="module")
def sim():
    world = World(jobs=30, versions_per_job=(1, 8), seed=71, running_share=0.3, payload_fault_rate=0.1)
    with SimulatorServer(world, token=TOKEN, page_cap=25) as server:
        yield server


def run_sync(sim, wh, failpoint: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}
    env["MODELARTS_TOKEN"] = TOKEN
    if failpoint:
        env["MODELARTS_FAILPOINT"] = failpoint
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "sync", "--endpoint", sim.url, "--project-id",
         sim.world.project_ids[0], "--warehouse", str(wh), "--rate", "0", "--concurrency", "4", "--per-page", "25",
         "--batch-size", str(BATCH), "--quiet"],
        capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def reference(sim, tmp_path_factory):
    wh = tmp_path_factory.mktemp("ref") / "wh"
    done = run_sync(sim, wh)
    assert done.returncode == 0, done.stderr
    return stable_snapshot(wh)


def _assert_whole(root, world) -> None:
    """What a crash may leave: fewer versions, never part of one."""
    con = connect(root)
    try:
        problems = ledger(con, world, world.project_ids[0], complete=False) + no_orphans(con)
    finally:
        con.close()
    assert problems == []


@pytest.mark.parametrize("failpoint", [
    "sync_detail_fetched:90",  # during fetch: batches landed, more answers in flight
    "raw_before_commit:3",  # raw bodies written to Parquet, not committed
    "raw_committed:2",  # raw snapshot committed, its tidy rows not yet
    "derive_before_commit:2",  # tidy rows written to Parquet, not committed
])
def test_kill_9_during_a_sync_then_the_next_sync_ends_as_if_never_interrupted(sim, reference, tmp_path, failpoint):
    wh = tmp_path / "wh"
    crashed = run_sync(sim, wh, failpoint)
    assert crashed.returncode == -9, (crashed.stdout, crashed.stderr)
    _assert_whole(wh, sim.world)
    with Warehouse.open(wh):
        pass  # the next writer repairs what the crash left
    _assert_whole(wh, sim.world)
    done = run_sync(sim, wh)
    assert done.returncode == 0, done.stderr
    assert stable_snapshot(wh) == reference
    assert_every_row_is_in_parquet(wh)
