"""kill -9 an ingest at every step of a write: every reader sees exactly the last committed
snapshot at once (no repair step), and the next run ends exactly where an uninterrupted run would."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import rows
from test_storage import assert_every_row_is_in_parquet
from warehouse import connect, schema

VOLATILE = {"extracted_at", "fetched_at", "rejected_at", "load_id"}
N_PAYLOADS = 300
BATCH = 100


def _ingest(corpus, wh, failpoint=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MODELARTS_FAILPOINT": failpoint} if failpoint else dict(os.environ)
    env.pop("MODELARTS_FAILPOINT", None) if not failpoint else None
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "ingest", str(corpus), "--project-id", "p1", "--warehouse", str(wh),
         "--batch-size", str(BATCH)], capture_output=True, text=True, env=env, timeout=120)


def stable_snapshot(root) -> dict[str, list]:
    con = connect(root)
    try:
        out = {}
        for table in schema.ALL_TABLES:
            cols = ", ".join(f'"{c}"' for c in table.column_names if c not in VOLATILE)
            out[table.name] = sorted(con.execute(f"SELECT {cols} FROM {table.name}").fetchall(), key=repr)
        return out
    finally:
        con.close()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    seed = json.loads((__import__("conftest").DATA / "seed_example.json").read_bytes())
    path = tmp_path_factory.mktemp("corpus") / "c.jsonl"
    with path.open("w") as fh:
        for i in range(N_PAYLOADS):
            payload = dict(seed, job_id=i // 4, version_id=i, status=10 if i % 3 else 8)
            payload["parameter"] = [{"label": f"p{k}", "value": k} for k in range(i % 5)]
            fh.write(json.dumps(payload) + "\n" if i % 50 else "{broken\n")
    return path


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    wh = tmp_path_factory.mktemp("ref") / "wh"
    assert _ingest(corpus, wh).returncode == 0
    return stable_snapshot(wh)


def _assert_no_partial_version(root):
    """Every stored version has exactly its child rows: 21 samples, i % 5 parameters, 2 volumes."""
    assert rows(root, "SELECT count(*) FROM job_versions v WHERE "
                      "(SELECT count(*) FROM system_metric_samples s WHERE s.job_id = v.job_id "
                      " AND s.version_id = v.version_id) <> 21 OR "
                      "(SELECT count(*) FROM parameters p WHERE p.version_id = v.version_id) <> v.version_id % 5 OR "
                      "(SELECT count(*) FROM volumes p WHERE p.version_id = v.version_id) <> 2") == [(0,)]
    for table in schema.TIDY_TABLES:
        orphans = rows(root, f"SELECT count(*) FROM {table.name} t ANTI JOIN job_versions v "
                             "USING (project_id, job_id, version_id)")
        assert orphans == [(0,)], table.name


def _assert_exactly_the_committed_snapshots(root):
    """What a reader sees is what the committed snapshots say was written, no more, no less."""
    assert rows(root, "SELECT count(*) FROM raw_payloads") == rows(
        root, "SELECT coalesce(sum(landed), 0) FROM loads WHERE step = 'raw'")
    assert rows(root, "SELECT count(*) FROM job_versions") == rows(
        root, "SELECT coalesce(sum(versions_loaded), 0) FROM loads WHERE step = 'derive'")


@pytest.mark.parametrize("failpoint", [
    "raw_before_commit:2", "raw_committed:2", "derive_before_commit:2", "derive_committed:2",
    "derive_before_commit:1", "raw_committed:3",
])
def test_kill_9_then_rerun_matches_an_uninterrupted_run(corpus, reference, tmp_path, failpoint):
    wh = tmp_path / "wh"
    crashed = _ingest(corpus, wh, failpoint)
    assert crashed.returncode == -9, crashed.stderr
    # before any writer opens the warehouse again: readers see the last committed snapshot, whole
    _assert_no_partial_version(wh)
    _assert_exactly_the_committed_snapshots(wh)
    assert_every_row_is_in_parquet(wh)
    done = _ingest(corpus, wh)
    assert done.returncode == 0, done.stderr
    assert stable_snapshot(wh) == reference
    assert rows(wh, "SELECT count(*) FROM (SELECT project_id, source, payload_sha256 FROM raw_payloads "
                    "GROUP BY ALL HAVING count(*) > 1)") == [(0,)]


def test_two_cli_writers_at_once_are_serialised(corpus, tmp_path):
    wh = tmp_path / "wh"
    other = tmp_path / "other.jsonl"
    seed = json.loads((__import__("conftest").DATA / "seed_example.json").read_bytes())
    other.write_text("".join(json.dumps(dict(seed, job_id=10_000 + i, version_id=i)) + "\n" for i in range(50)))
    cmd = [sys.executable, "-m", "pipelines.cli", "ingest", "--project-id", "p1", "--warehouse", str(wh)]
    procs = [subprocess.Popen(cmd + [str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for path in (corpus, other)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert rows(wh, "SELECT count(*) FROM job_versions") == [(N_PAYLOADS - N_PAYLOADS // 50 + 50,)]


@pytest.mark.parametrize("failpoint", ["rebuild_batch_written:1", "rebuild_before_commit:1"])
def test_a_rebuild_killed_half_way_leaves_the_previous_snapshot(corpus, reference, tmp_path, failpoint):
    wh = tmp_path / "wh"
    assert _ingest(corpus, wh).returncode == 0
    env = {**os.environ, "MODELARTS_FAILPOINT": failpoint}
    crashed = subprocess.run([sys.executable, "-m", "pipelines.cli", "rebuild", "--warehouse", str(wh)],
                             capture_output=True, text=True, env=env, timeout=120)
    assert crashed.returncode == -9, crashed.stderr
    assert stable_snapshot(wh) == reference  # no writer has opened it since
    redone = subprocess.run([sys.executable, "-m", "pipelines.cli", "rebuild", "--warehouse", str(wh)],
                            capture_output=True, text=True, timeout=120)
    assert redone.returncode == 0, redone.stderr
    assert stable_snapshot(wh) == reference
