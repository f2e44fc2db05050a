"""Exports: one snapshot of every table as plain Parquet or a DuckDB file, equal to the lake,
and swapped in so that a reader never sees half of one."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import land
from warehouse import analysis, connect, schema
from warehouse.export import SNAPSHOT_FILE, export_duckdb, export_parquet
from warehouse.store import WarehouseError


def _version(seed_bytes, job_id, version_id, status=10, param=0) -> bytes:
    payload = json.loads(seed_bytes)
    payload.update(job_id=job_id, version_id=version_id, status=status)
    payload["parameter"] = [{"label": "seed", "value": param}]
    return json.dumps(payload).encode()


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> tuple[Path, int]:
    """Three loads (a digits-only project, a rejection, a running version finished later).
    Returns the folder and the first load's derive snapshot."""
    seed_bytes = (Path(__file__).parent / "data" / "seed_example.json").read_bytes()
    root = tmp_path_factory.mktemp("lake") / "wh"
    land(root, [(_version(seed_bytes, 1, 1, status=8), "a"), (_version(seed_bytes, 1, 2), "b"), (b"{", "bad")],
         project_id="12345")
    con = connect(root)
    first = con.execute("SELECT max(snapshot_id) FROM loads WHERE step = 'derive'").fetchone()[0]
    con.close()
    land(root, [(_version(seed_bytes, 1, 1, status=10, param=1), "a-done")], project_id="12345")
    land(root, [(_version(seed_bytes, 2, 1), "c")], project_id="proj-b")
    return root, first


def _differences(con, left: str, right: str) -> int:
    return sum(con.execute(f"SELECT count(*) FROM ({a} EXCEPT ALL {b})").fetchone()[0]
               for a, b in ((left, right), (right, left)))


def _assert_parquet_equals_lake(root: Path, dest: Path, snapshot: int | None = None) -> None:
    con = connect(root)
    at = f" AT (VERSION => {snapshot})" if snapshot else ""
    try:
        for table in schema.ALL_TABLES:
            files = f"read_parquet('{dest}/{table.name}/*.parquet')"
            assert _differences(con, f'SELECT * FROM "{table.name}"{at}', f"SELECT * FROM {files}") == 0, table.name
            described = con.execute(f"DESCRIBE SELECT * FROM {files}").fetchall()
            assert [(r[0], r[1].replace("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ")) for r in described] == [
                (c.name, c.duckdb_type) for c in table.columns], table.name
            frame = pd.read_parquet(dest / table.name)
            assert len(frame) == con.execute(f'SELECT count(*) FROM "{table.name}"{at}').fetchone()[0], table.name
            assert list(frame.columns) == table.column_names
    finally:
        con.close()


def test_parquet_export_equals_the_lake(lake, tmp_path):
    root, _ = lake
    report = export_parquet(root, tmp_path / "out")
    _assert_parquet_equals_lake(root, tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / SNAPSHOT_FILE).read_text())
    assert manifest["snapshot_id"] == report.snapshot_id and manifest["tables"] == report.tables
    assert report.tables["job_versions"] == 3 and report.tables["rejected_payloads"] == 1
    projects = pd.read_parquet(tmp_path / "out" / "job_versions").project_id
    assert sorted(set(projects)) == ["12345", "proj-b"] and all(isinstance(p, str) for p in projects)


def test_duckdb_export_equals_the_lake(lake, tmp_path):
    root, _ = lake
    report = export_duckdb(root, tmp_path / "out.duckdb")
    con = connect(root)
    try:
        con.execute(f"ATTACH '{tmp_path / 'out.duckdb'}' AS exported (READ_ONLY)")
        names = schema.ALL_TABLES + (schema.SYSTEM_METRIC_SERIES, schema.LOADS) + analysis.ANALYSIS_VIEWS
        for table in names:
            assert _differences(con, f'SELECT * FROM modelarts."{table.name}"',
                                f'SELECT * FROM exported."{table.name}"') == 0, table.name
        kinds = dict(con.execute("SELECT table_name, table_type FROM information_schema.tables "
                                 "WHERE table_catalog = 'exported'").fetchall())
        assert kinds == {t.name: "VIEW" if t.is_view and t is not schema.LOADS else "BASE TABLE" for t in names}
        assert con.execute("SELECT DISTINCT typeof(project_id) FROM exported.job_versions").fetchall() == [("VARCHAR",)]
        assert report.tables["loads"] == con.execute("SELECT count(*) FROM loads").fetchone()[0]
    finally:
        con.close()


def test_an_older_snapshot_exports_its_own_rows(lake, tmp_path):
    root, first = lake
    report = export_parquet(root, tmp_path / "old", snapshot=first)
    assert report.snapshot_id == first and report.tables["raw_payloads"] == 3
    _assert_parquet_equals_lake(root, tmp_path / "old", snapshot=first)
    assert pd.read_parquet(tmp_path / "old" / "job_versions").sort_values("version_id").status.tolist() == [8, 10]
    export_duckdb(root, tmp_path / "old.duckdb", snapshot=first)
    con = connect(root)
    try:
        con.execute(f"ATTACH '{tmp_path / 'old.duckdb'}' AS exported (READ_ONLY)")
        for table in schema.ALL_TABLES:
            assert _differences(con, f'SELECT * FROM "{table.name}" AT (VERSION => {first})',
                                f'SELECT * FROM exported."{table.name}"') == 0, table.name
        assert con.execute("SELECT max(snapshot_id) FROM exported.loads").fetchone() == (first,)
    finally:
        con.close()


def _consistent(folder: Path) -> int:
    """One resolved export folder checked against its own manifest; returns its snapshot id."""
    manifest = json.loads((folder / SNAPSHOT_FILE).read_text())
    for table, count in manifest["tables"].items():
        assert pq.ParquetDataset(folder / table).read().num_rows == count, (folder.name, table)
    samples = pq.read_table(folder / "system_metric_samples", columns=["project_id", "job_id", "version_id"])
    versions = {tuple(r.values()) for r in samples.to_pylist()}
    assert len(versions) == manifest["tables"]["job_versions"], folder.name
    return manifest["snapshot_id"]


def test_a_reader_never_sees_half_an_export(tmp_path, seed_bytes):
    root, dest = tmp_path / "wh", tmp_path / "export"
    land(root, [_version(seed_bytes, 1, 1)])
    export_parquet(root, dest)
    seen, problems, stop = set(), [], threading.Event()

    def reader():
        while not stop.is_set():
            folder = Path(os.path.realpath(dest))  # one export, resolved once
            try:
                seen.add(_consistent(folder))
            except FileNotFoundError:
                pass  # pruned two exports later while still being read: gone, not mixed
            except AssertionError as exc:
                problems.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(2, 6):
            land(root, [_version(seed_bytes, n, v) for v in range(n)]
                 + [(_version(seed_bytes, 1, 1, status=8, param=n), f"again-{n}")])
            export_parquet(root, dest)
    finally:
        stop.set()
        thread.join()
    assert not problems, problems[0]
    assert len(seen) >= 3  # the reader really read while the exports swapped
    versions = sorted(p.name for p in dest.with_name("export.versions").iterdir() if p.is_dir())
    assert len(versions) == 2  # the current export and the previous one
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary link left


def cli(*args):
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "export", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_export_refuses_what_it_did_not_make(lake, tmp_path):
    root, _ = lake
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(WarehouseError, match="not an export made by modelarts-etl"):
        export_parquet(root, mine)
    (tmp_path / "elsewhere").symlink_to(mine)
    with pytest.raises(WarehouseError, match="not an export"):
        export_parquet(root, tmp_path / "elsewhere")
    (tmp_path / "notes.duckdb").write_text("not a database")
    with pytest.raises(WarehouseError, match="not a DuckDB file"):
        export_duckdb(root, tmp_path / "notes.duckdb")
    failed = cli("--warehouse", root, "--parquet", mine)
    assert failed.returncode == 1 and len(failed.stderr.strip().splitlines()) == 1
    assert "not an export" in failed.stderr and "Traceback" not in failed.stderr
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (tmp_path / "notes.duckdb").read_text() == "not a database"


def test_export_command(lake, tmp_path):
    root, first = lake
    done = cli("--warehouse", root, "--parquet", tmp_path / "pq", "--duckdb", tmp_path / "db.duckdb",
               "--snapshot", first)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(f"exported snapshot {first}") == 2
    assert json.loads((tmp_path / "pq" / SNAPSHOT_FILE).read_text())["snapshot_id"] == first
    for args, message in ((("--parquet", tmp_path / "x", "--snapshot", "999999"), "no snapshot 999999"),
                          (("--parquet", tmp_path / "x", "--snapshot", "latest"), "not a snapshot id"),
                          ((), "--parquet DIR and/or --duckdb FILE")):
        failed = cli("--warehouse", root, *args)
        assert failed.returncode == 1 and message in failed.stderr, failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1 and "Traceback" not in failed.stderr
    assert not (tmp_path / "x").exists()
