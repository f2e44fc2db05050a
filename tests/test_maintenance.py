"""Maintenance keeps a lake of many small loads small, without changing a row or losing the
snapshot the writer resumes from."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from warehouse import lake, schema
from warehouse.maintenance import _expire, maintain, parse_retention
from pipelines.modelarts.records import RawRecord
from warehouse.store import Warehouse, WarehouseError

LOADS = 30
RUNNING_JOB = 999  # re-loaded by every load with new bytes: each reload deletes its previous rows


def _version(seed_bytes, job_id, version_id, status=10, param=0) -> bytes:
    payload = json.loads(seed_bytes)
    payload.update(job_id=job_id, version_id=version_id, status=status)
    payload["parameter"] = [{"label": "seed", "value": param}]
    return json.dumps(payload).encode()


def _records(bodies, project_id="proj1"):
    return [RawRecord(body=b, project_id=project_id, source=s) for b, s in bodies]


def _one_load(seed_bytes, n: int):
    bodies = [(_version(seed_bytes, n, 1), f"job{n}"), (_version(seed_bytes, n, 2, status=8), f"job{n}v2"),
              (_version(seed_bytes, RUNNING_JOB, 1, status=8, param=n), f"running-{n}")]
    if n % 7 == 0:
        bodies.append((b"{not json %d" % n, f"broken-{n}"))
    if n % 5 == 0 and n:  # an earlier load's running version finished
        bodies.append((_version(seed_bytes, n - 5, 2, status=10), f"job{n - 5}v2-done"))
    return _records(bodies)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """~30 small loads, built once; each test works on its own copy."""
    seed_bytes = (Path(__file__).parent / "data" / "seed_example.json").read_bytes()
    root = tmp_path_factory.mktemp("lake") / "wh"
    with Warehouse.open(root) as wh:
        for n in range(LOADS):
            wh.land(_one_load(seed_bytes, n))
    return root


@pytest.fixture
def lake_copy(built, tmp_path) -> Path:
    root = tmp_path / "wh"
    shutil.copytree(built, root)
    return root


def contents(con, at: str = "") -> dict[str, list]:
    """Every row of every table and view (and the stored series), plus raw_payloads' rowids:
    `raw_through` counts in them."""
    out = {t.name: sorted(con.execute(f'SELECT * FROM "{t.name}" {at}').fetchall(), key=repr)
           for t in schema.ALL_TABLES + (schema.SYSTEM_METRIC_SERIES,)}
    out["raw rowids"] = con.execute(f"SELECT rowid, source, payload_sha256 FROM raw_payloads {at} ORDER BY 1").fetchall()
    return out


def files_on_disk(root: Path) -> set[str]:
    return {str(p) for p in (root / "data").rglob("*") if p.is_file()}


def files_in_catalog(con) -> set[str]:
    """Data and delete files of every snapshot left (from the one that made the tables on), and
    checks none is waiting for cleanup."""
    listed = set()
    for (snap,) in con.execute("SELECT snapshot_id FROM ducklake_snapshots('modelarts') "
                               "WHERE snapshot_id >= (SELECT min(snapshot_id) FROM loads)").fetchall():
        for table in schema.STORED_TABLES:
            for data, delete in con.execute(
                    "SELECT data_file, delete_file FROM ducklake_list_files('modelarts', ?, snapshot_version => ?)",
                    [table.name, snap]).fetchall():
                listed |= {data} | ({delete} if delete else set())
    waiting = con.execute("SELECT count(*) FROM __ducklake_metadata_modelarts.ducklake_files_scheduled_for_deletion")
    assert waiting.fetchone() == (0,)
    return listed


def _plant_orphan(root: Path) -> Path:
    """What a writer killed between writing a Parquet file and committing it leaves behind."""
    orphan = root / "data" / "main" / "job_versions" / "ducklake-00000000-dead-7000-8000-000000000000.parquet"
    con = lake.new_connection()
    con.execute(f"COPY (SELECT 1 AS job_id) TO '{orphan}' (FORMAT parquet)")
    con.close()
    return orphan


def test_maintenance_with_no_retention_keeps_every_row_and_few_files(lake_copy, seed_bytes):
    orphan = _plant_orphan(lake_copy)
    with Warehouse.open(lake_copy) as wh:
        before, resume = contents(wh.con), wh.raw_through()
        report = maintain(wh, retention=timedelta(0))
        assert contents(wh.con) == before
        assert wh.raw_through() == resume
        assert files_on_disk(lake_copy) == files_in_catalog(wh.con)
        snapshots = wh.con.execute("SELECT snapshot_id FROM ducklake_snapshots('modelarts')").fetchall()
        current = wh.snapshot_id()
    assert not orphan.exists()
    assert report.files_before > 5 * LOADS  # every load wrote a file per table, and delete files
    assert report.files_after <= len(schema.STORED_TABLES)  # one merged file per table with rows
    assert report.live_files == report.files_after
    assert report.snapshots_expired >= 2 * LOADS and report.files_deleted >= report.files_before - report.files_after
    assert report.catalog_bytes and report.catalog_bytes > 0
    assert snapshots == [(current,)]  # the only one left is also the one the writer resumes from

    with Warehouse.open(lake_copy) as wh:  # the writer carries on where it was
        report = wh.land(_records([(_version(seed_bytes, RUNNING_JOB, 1, status=10), "finished"),
                                   (_version(seed_bytes, 5000, 1), "fresh")]))
        assert report.versions_loaded == 2 and report.landed == 2
        assert wh.con.execute(f"SELECT status FROM job_versions WHERE job_id = {RUNNING_JOB}").fetchall() == [(10,)]
        assert wh.con.execute("SELECT count(*) FROM job_versions").fetchone()[0] == \
            len(before["job_versions"]) + 1
        assert wh.con.execute("SELECT count(*) FROM raw_payloads").fetchone()[0] == len(before["raw_payloads"]) + 2
        assert maintain(wh, retention=timedelta(0)).files_after <= len(schema.STORED_TABLES)
        assert files_on_disk(lake_copy) == files_in_catalog(wh.con)


def test_maintenance_within_retention_keeps_time_travel(lake_copy):
    with Warehouse.open(lake_copy) as wh:
        con = wh.con
        old = [s for (s,) in con.execute("SELECT snapshot_id FROM loads WHERE step = 'derive' ORDER BY 1").fetchall()]
        picks = [old[0], old[len(old) // 2], old[-1]]
        before = {s: contents(con, f"AT (VERSION => {s})") for s in picks}
        report = maintain(wh, retention=timedelta(hours=1))
        assert report.snapshots_expired == 0
        assert report.files_merged > 0 and report.live_files <= 2 * len(schema.STORED_TABLES)
        for s in picks:
            assert contents(con, f"AT (VERSION => {s})") == before[s], s
        assert files_on_disk(lake_copy) == files_in_catalog(con)


def test_the_snapshot_the_writer_resumes_from_is_never_expired(lake_copy, seed_bytes):
    with Warehouse.open(lake_copy) as wh:
        wh.land(_records([(_version(seed_bytes, 6000, 1), "landed-only")]), derive=False)
        resume, newest = wh.raw_through(), wh.snapshot_id()
        derive_snapshot = wh.con.execute("SELECT max(snapshot_id) FROM loads WHERE raw_through IS NOT NULL").fetchone()[0]
        assert derive_snapshot < newest  # the newest snapshot is the raw-only one
        _expire(wh.con, datetime.now(timezone.utc) + timedelta(days=1))  # expire everything it may
        left = {s for (s,) in wh.con.execute("SELECT snapshot_id FROM ducklake_snapshots('modelarts')").fetchall()}
        assert left == {derive_snapshot, newest}
        assert wh.raw_through() == resume
        assert wh.derive_pending().versions_loaded == 1  # exactly the body landed after it
        assert wh.con.execute("SELECT count(*) FROM job_versions WHERE job_id = 6000").fetchone() == (1,)


def test_retention_text():
    assert parse_retention("7d") == timedelta(days=7)
    assert parse_retention("12h") == timedelta(hours=12)
    assert parse_retention("0") == timedelta(0)
    assert parse_retention("90s") == timedelta(seconds=90)
    for bad in ("7", "7x", "-1d", "", "d"):
        with pytest.raises(WarehouseError, match="not a duration"):
            parse_retention(bad)


def test_maintain_command(lake_copy, tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "pipelines.cli", "maintain", *map(str, args)],
                              capture_output=True, text=True, timeout=120)

    done = cli("--warehouse", lake_copy, "--retention", "0")
    assert done.returncode == 0, done.stderr
    assert "data files" in done.stdout and "snapshots expired" in done.stdout and len(done.stdout.splitlines()) <= 2
    for args, message in ((("--warehouse", lake_copy, "--retention", "a week"), "not a duration"),
                          (("--warehouse", tmp_path / "nowhere"), "no warehouse")):
        failed = cli(*args)
        assert failed.returncode == 1 and message in failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1 and "Traceback" not in failed.stderr
    assert not (tmp_path / "nowhere").exists()  # refusing did not create a warehouse
    assert "--retention" in cli("--help").stdout and "7d" in cli("--help").stdout
