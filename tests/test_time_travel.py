"""Snapshots are the load ledger: every table reads as of any snapshot or time, and `loads`
(and `modelarts-etl snapshots`) says which load made which snapshot."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from conftest import land
from warehouse import connect, load

RUNNING, COMPLETED = 8, 10


def _version(seed_bytes, status: int, params: list[str]) -> bytes:
    payload = json.loads(seed_bytes)
    payload.update(job_id=7, version_id=70, status=status)
    payload["parameter"] = [{"label": label, "value": n} for n, label in enumerate(params)]
    return json.dumps(payload).encode()


@pytest.fixture
def history(wh_dir, seed_bytes):
    """The same version landed twice: first running, then finished (other bytes, other source)."""
    first = land(wh_dir, [(_version(seed_bytes, RUNNING, ["lr", "epochs", "batch"]), "fetch-1")])
    time.sleep(0.3)  # a gap between the two loads for `at=`
    second = land(wh_dir, [(_version(seed_bytes, COMPLETED, ["lr"]), "fetch-2")])
    ledger = load("loads", wh_dir).sort_values("snapshot_id")
    return wh_dir, first, second, ledger


def _state(con, at: str = "") -> tuple:
    version = con.execute(f"SELECT status, status_name, is_final FROM job_versions {at}").fetchall()
    params = con.execute(f"SELECT label FROM parameters {at} ORDER BY position").fetchall()
    raw = con.execute(f"SELECT source FROM raw_payloads {at} ORDER BY source").fetchall()
    return version, [p for (p,) in params], [s for (s,) in raw]


OLD = ([(RUNNING, "RUNNING", False)], ["lr", "epochs", "batch"], ["fetch-1"])
NEW = ([(COMPLETED, "COMPLETED", True)], ["lr"], ["fetch-1", "fetch-2"])


def _derive_snapshot(ledger, report) -> int:
    mine = ledger[(ledger.load_id == report.load_id) & (ledger.step == "derive")]
    assert len(mine) == 1
    return int(mine.snapshot_id.iloc[0])


def test_a_snapshot_shows_the_version_as_it_was(history):
    root, first, second, ledger = history
    old = _derive_snapshot(ledger, first)
    con = connect(root, snapshot=old)
    try:
        assert _state(con) == OLD
        assert con.execute("SELECT latest_status_name FROM jobs").fetchall() == [("RUNNING",)]
        assert con.execute("SELECT count(DISTINCT metric) > 0 FROM system_metric_samples").fetchone() == (True,)
    finally:
        con.close()
    con = connect(root)
    try:
        assert _state(con) == NEW
        assert _state(con, f"AT (VERSION => {old})") == OLD  # SQL time travel agrees
        assert con.execute(f"SELECT latest_status_name FROM jobs AT (VERSION => {old})").fetchall() == [("RUNNING",)]
    finally:
        con.close()


def test_a_time_between_the_loads_shows_the_first(history):
    root, first, second, ledger = history
    old_time = ledger[ledger.snapshot_id == _derive_snapshot(ledger, first)].snapshot_time.iloc[0]
    next_time = ledger[(ledger.load_id == second.load_id) & (ledger.step == "raw")].snapshot_time.iloc[0]
    between = old_time + (next_time - old_time) / 2
    assert old_time < between < next_time
    con = connect(root, at=between.to_pydatetime())
    try:
        assert _state(con) == OLD
    finally:
        con.close()
    con = connect(root)
    try:
        assert _state(con, f"AT (TIMESTAMP => TIMESTAMPTZ '{between.isoformat()}')") == OLD
    finally:
        con.close()


def test_loads_lists_each_step_with_its_load_and_counts(history):
    root, first, second, ledger = history
    steps = ledger[ledger.step != "schema"]
    assert [(r.step, r.load_id, r.landed, r.versions_loaded) for r in steps.itertuples()] == [
        ("raw", first.load_id, 1, 0), ("derive", first.load_id, 0, 1),
        ("raw", second.load_id, 1, 0), ("derive", second.load_id, 0, 1)]
    # only derive snapshots say how far raw_payloads is derived (rowids 0, then 1)
    assert steps.raw_through.isna().tolist() == [True, False, True, False]
    assert steps[steps.step == "derive"].raw_through.astype(int).tolist() == [0, 1]
    assert set(steps.projects) == {"proj1"} and set(steps.source) == {"library"}


def test_snapshots_command_prints_the_ledger_newest_last(history):
    root, first, second, _ = history
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "snapshots", "--warehouse", str(root),
                           "--limit", "3"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["snapshot", "time", "(UTC)"]
    assert len(lines) == 4  # header + the newest 3
    assert [line.split()[3] for line in lines[1:]] == ["derive", "raw", "derive"]
    assert first.load_id in lines[1] and second.load_id in lines[3]


def test_a_missing_warehouse_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "snapshots", "--warehouse", str(tmp_path / "no")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and "no warehouse" in done.stderr
    assert "Traceback" not in done.stderr
