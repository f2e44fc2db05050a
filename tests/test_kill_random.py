"""Issue 13, item 3: after random kill -9 of a sync, every committed raw key has its body.

A body and its key are one row of one DuckLake commit, so this holds by construction; the test
kills a real sync subprocess at random moments against the simulator and then reads every
raw_payloads row back: its bytes are there and hash to its sha256.
"""
from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import time

from pipelines.modelarts.simulator import SimulatorServer, World
from test_sync_crash import CREDENTIAL_VARS, TOKEN, run_sync
from warehouse import connect
from warehouse.store import WarehouseError

import pytest


@pytest.fixture(scope="module")
def sim():
    world = World(jobs=30, versions_per_job=(1, 8), seed=72, running_share=0.3, payload_fault_rate=0.1)
    with SimulatorServer(world, token=TOKEN, page_cap=25, latency=0.002) as server:
        yield server


def test_random_kill_9_of_a_sync_leaves_every_raw_key_with_its_body(sim, tmp_path):
    wh = tmp_path / "wh"
    rng = random.Random(13)
    kills = 0
    for _ in range(4):
        proc = _start(sim, wh)
        time.sleep(rng.uniform(0.8, 2.5))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait(timeout=60)
        _assert_every_body_readable(wh)
    assert kills >= 2
    done = run_sync(sim, wh)
    assert done.returncode == 0, done.stderr
    _assert_every_body_readable(wh)


def _start(sim, wh) -> subprocess.Popen:
    """The sync of test_sync_crash.run_sync, in the background."""
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}
    env["MODELARTS_TOKEN"] = TOKEN
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "sync", "--endpoint", sim.url, "--project-id",
         sim.world.project_ids[0], "--warehouse", str(wh), "--rate", "0", "--concurrency", "4", "--per-page", "25",
         "--batch-size", "20", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def _assert_every_body_readable(wh) -> None:
    if not (wh / "catalog.sqlite").exists():
        return  # killed before the warehouse was made
    try:
        con = connect(wh)
    except WarehouseError as exc:  # killed while the first load made its catalog: no warehouse yet
        assert "no warehouse at" in str(exc), exc
        return
    try:
        rows = con.execute("SELECT payload, payload_sha256, byte_size FROM raw_payloads").fetchall()
    finally:
        con.close()
    for payload, sha, size in rows:
        assert payload is not None and len(payload) == size
        assert hashlib.sha256(payload).hexdigest() == sha
