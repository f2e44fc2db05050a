"""Storage guarantees: Parquet and DuckDB agree, upserts replace, re-runs change nothing."""
from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timedelta, timezone

import duckdb
import pandas as pd
import pytest

from conftest import land, rows
from warehouse import connect, load, schema
from warehouse.records import RawRecord
from warehouse.store import Warehouse, WarehouseBusy, WarehouseError


def _version(seed_bytes, job_id, version_id, status=10, n_params=1, create_time=1524189990635, **extra) -> bytes:
    payload = json.loads(seed_bytes)
    payload.update(job_id=job_id, version_id=version_id, status=status, create_time=create_time, **extra)
    payload["parameter"] = [{"label": f"p{i}", "value": i} for i in range(n_params)]
    return json.dumps(payload).encode()


def snapshot(root) -> dict[str, list]:
    con = duckdb.connect(str(root / "modelarts.duckdb"), read_only=True)
    try:
        return {t.name: sorted(con.execute(f"SELECT * EXCLUDE (load_id) FROM {t.name}" if t.name in
                                           ("raw_payloads", "rejected_payloads") else f"SELECT * FROM {t.name}"
                                           ).fetchall(), key=repr)
                for t in schema.ALL_TABLES}
    finally:
        con.close()


def assert_parquet_matches_duckdb(root):
    con = duckdb.connect(str(root / "modelarts.duckdb"), read_only=True)
    try:
        for table in schema.ALL_TABLES:
            glob = f"{root}/parquet/{table.name}/**/*.parquet"
            pq = f"SELECT * FROM read_parquet('{glob}', hive_partitioning=true)"
            for a, b in ((f"SELECT * FROM {table.name}", pq), (pq, f"SELECT * FROM {table.name}")):
                diff = con.execute(f"SELECT count(*) FROM ({a} EXCEPT ALL {b})").fetchall()[0][0]
                assert diff == 0, table.name
            frame = pd.read_parquet(root / "parquet" / table.name)
            assert len(frame) == con.execute(f"SELECT count(*) FROM {table.name}").fetchall()[0][0]
            assert list(frame.columns) == [c.name for c in table.columns] or table.name in (
                "raw_payloads", "rejected_payloads")
    finally:
        con.close()


def test_parquet_and_duckdb_hold_the_same_rows(wh_dir, seed_bytes):
    bodies = [_version(seed_bytes, j, v) for j in range(3) for v in range(2)] + [b"not json"]
    land(wh_dir, bodies, project_id="123")  # digits only: must stay VARCHAR, not become BIGINT
    land(wh_dir, [_version(seed_bytes, 9, 9)], project_id="other-proj")
    assert_parquet_matches_duckdb(wh_dir)
    assert rows(wh_dir, "SELECT DISTINCT typeof(project_id) FROM job_versions") == [("VARCHAR",)]


def test_reloading_a_version_replaces_all_its_rows(wh_dir, seed_bytes):
    land(wh_dir, [(_version(seed_bytes, 1, 1, status=8, n_params=5), "v1"), (_version(seed_bytes, 1, 2), "v2")])
    land(wh_dir, [(_version(seed_bytes, 1, 1, status=10, n_params=2), "v1")])
    assert rows(wh_dir, "SELECT version_id, status FROM job_versions ORDER BY 1") == [(1, 10), (2, 10)]
    assert rows(wh_dir, "SELECT version_id, count(*) FROM parameters GROUP BY 1 ORDER BY 1") == [(1, 2), (2, 1)]
    assert rows(wh_dir, "SELECT count(*) FROM system_metric_samples") == [(42,)]
    assert rows(wh_dir, "SELECT count(*) FROM raw_payloads") == [(3,)]  # both bodies of v1 kept
    for table in schema.TIDY_TABLES:
        key = ", ".join(table.key)
        assert rows(wh_dir, f"SELECT count(*) FROM (SELECT {key} FROM {table.name} GROUP BY ALL HAVING count(*) > 1)"
                    ) == [(0,)], table.name
    assert_parquet_matches_duckdb(wh_dir)


def test_loading_the_same_payloads_twice_changes_nothing(wh_dir, seed_bytes):
    bodies = [(_version(seed_bytes, j, 1), f"f{j}") for j in range(4)] + [(b"{", "bad")]
    land(wh_dir, bodies)
    before = snapshot(wh_dir)
    report = land(wh_dir, bodies)
    assert report.landed == 0 and report.duplicates == 5
    assert snapshot(wh_dir) == before


def test_last_copy_of_a_version_in_one_batch_wins(wh_dir, seed_bytes):
    land(wh_dir, [(_version(seed_bytes, 1, 1, status=8), "a"), (_version(seed_bytes, 1, 1, status=11), "b")])
    assert rows(wh_dir, "SELECT status FROM job_versions") == [(11,)]


def test_jobs_summarise_their_latest_version(wh_dir, seed_bytes):
    land(wh_dir, [
        _version(seed_bytes, 5, 1, status=10, create_time=1000, job_name="old"),
        _version(seed_bytes, 5, 3, status=8, create_time=3000, job_name="new"),
        _version(seed_bytes, 5, 2, status=11, create_time=3000, job_name="tie"),
    ])
    assert rows(wh_dir, "SELECT job_name, latest_version_id, latest_status_name, latest_is_final, version_count, "
                        "epoch_ms(first_create_time), epoch_ms(last_create_time) FROM jobs") == [
        ("new", 3, "RUNNING", False, 3, 1000, 3000)]


def test_deriving_more_raw_than_duckdbs_memory_limit_streams_in_landing_order(tmp_path, seed_bytes):
    """The Dagster path lands a whole sync, then derives it: the bodies must be read a batch at a
    time, not sorted in DuckDB's memory all at once (a 20,000-version sync ran out at 128 MB)."""
    bulk = "d" * 100_000  # an unknown field: in the raw body whole, in field_issues cut to 1,000 characters
    loads = [[(_version(seed_bytes, 1, v, bulk=bulk), f"v{v}") for v in range(700)],  # 70 MB of JSON
             [(_version(seed_bytes, 1, 7, status=11, bulk=bulk), "v7-later")]]
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for root, derive in ((tmp_path / "later", False), (tmp_path / "direct", True)):
        with Warehouse.open(root, memory_limit="64MB") as wh:
            for n, bodies in enumerate(loads):
                wh.land([RawRecord(body=b, project_id="proj1", source=s, fetched_at=start + timedelta(days=n))
                         for b, s in bodies], derive=derive)
            if not derive:
                assert wh.derive_pending().versions_loaded == 701
    later, direct = snapshot(tmp_path / "later"), snapshot(tmp_path / "direct")
    # raw rows landed without flattening cannot know a file payload's ids: the only difference
    assert {k: v for k, v in later.items() if k != "raw_payloads"} == {k: v for k, v in direct.items() if k != "raw_payloads"}
    assert rows(tmp_path / "later", "SELECT status FROM job_versions WHERE version_id = 7") == [(11,)]


def test_version_states_drive_incremental_sync(wh_dir, seed_bytes):
    land(wh_dir, [_version(seed_bytes, 1, 1, status=10), _version(seed_bytes, 1, 2, status=8)])
    with Warehouse.open(wh_dir) as wh:
        assert wh.version_states("proj1") == {(1, 1): True, (1, 2): False}
        assert wh.version_states("nope") == {}


def test_invalid_project_id_is_a_clear_error(wh_dir, seed_bytes):
    for bad in ("../etc", "a'b", "x; DROP TABLE jobs", "", "a/b"):
        with pytest.raises(WarehouseError, match="invalid project id"):
            land(wh_dir, [seed_bytes], project_id=bad)
    assert not any(p.name != "wh" for p in wh_dir.parent.iterdir() if p.is_dir() and p.name not in ("wh",))


def test_second_writer_waits_then_stops_with_a_clear_message(wh_dir, seed_bytes):
    with Warehouse.open(wh_dir):
        with pytest.raises(WarehouseBusy, match="another writer is using the warehouse"):
            with Warehouse.open(wh_dir, lock_timeout=0.2):
                pass


def test_writers_are_serialised(wh_dir, seed_bytes):
    errors = []

    def write(job):
        try:
            land(wh_dir, [_version(seed_bytes, job, 1)])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(j,)) for j in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert rows(wh_dir, "SELECT count(*) FROM job_versions") == [(4,)]
    assert_parquet_matches_duckdb(wh_dir)


def test_readers_fall_back_to_parquet_while_a_writer_holds_the_file(wh_dir, seed_bytes):
    land(wh_dir, [_version(seed_bytes, 1, 1)])
    with Warehouse.open(wh_dir) as wh:
        wh.land([RawRecord(body=_version(seed_bytes, 2, 1), project_id="proj1", source="x")], derive=False)
        frame = load("job_versions", wh_dir)  # the writer holds the file: last export is read
        assert frame["job_id"].tolist() == [1]
        with connect(wh_dir) as con:
            fallback_series = con.execute("SELECT * FROM system_metric_series ORDER BY ALL").fetchall()
        wh.derive_pending()
    assert sorted(load("job_versions", wh_dir)["job_id"]) == [1, 2]
    assert fallback_series == rows(wh_dir, "SELECT * FROM system_metric_series WHERE job_id = 1 ORDER BY ALL")
    assert fallback_series
    con = connect(wh_dir)
    with pytest.raises(duckdb.Error):
        con.execute("DELETE FROM jobs")
    con.close()


def test_load_filters_and_rejects_unknown_tables(wh_dir, seed_bytes):
    land(wh_dir, [_version(seed_bytes, 1, 1), _version(seed_bytes, 2, 1)])
    assert load("parameters", wh_dir, where="job_id = 2")["job_id"].tolist() == [2]
    with pytest.raises(WarehouseError, match="unknown table"):
        load("nope", wh_dir)
    with pytest.raises(WarehouseError, match="no warehouse"):
        load("jobs", wh_dir / "missing")


def test_unexported_changes_are_exported_by_the_next_writer(wh_dir, seed_bytes):
    land(wh_dir, [_version(seed_bytes, 1, 1)])
    with Warehouse.open(wh_dir) as wh:
        wh.land([RawRecord(body=_version(seed_bytes, 2, 1), project_id="proj1", source="x")], derive=False)
        wh.derive_pending(export=False)  # the part files are written; `jobs` is left to export
        assert wh.con.execute("SELECT DISTINCT table_name FROM _dirty").fetchall() == [("jobs",)]
    with Warehouse.open(wh_dir):
        pass
    assert_parquet_matches_duckdb(wh_dir)


def test_landed_but_underived_payloads_are_derived_later(wh_dir, seed_bytes):
    with Warehouse.open(wh_dir) as wh:
        report = wh.land([RawRecord(body=_version(seed_bytes, 1, 1), project_id="proj1", source="x")], derive=False)
        assert report.landed == 1 and report.versions_loaded == 0
        assert wh.con.execute("SELECT count(*) FROM job_versions").fetchall() == [(0,)]
        assert wh.derive_pending("proj1").versions_loaded == 1
        assert wh.derive_pending("proj1").versions_loaded == 0
    assert_parquet_matches_duckdb(wh_dir)


def test_rebuild_reproduces_the_tables_exactly(wh_dir, seed_bytes):
    land(wh_dir, [(_version(seed_bytes, 1, 1, status=8), "a"), (b"{oops", "b")])
    land(wh_dir, [(_version(seed_bytes, 1, 1, status=10, n_params=3), "a"), (_version(seed_bytes, 2, 1), "c")])
    before = snapshot(wh_dir)
    with Warehouse.open(wh_dir) as wh:
        wh.con.execute("DELETE FROM parameters")  # as if a parser bug had lost them
        wh.rebuild()
    assert snapshot(wh_dir) == before
    assert_parquet_matches_duckdb(wh_dir)


def test_deferred_landing_waits_for_its_own_derive_step(wh_dir, seed_bytes):
    with Warehouse.open(wh_dir) as wh:
        wh.land([RawRecord(body=_version(seed_bytes, 1, 1), project_id="proj1", source="x")], derive=False)
    with Warehouse.open(wh_dir) as wh:  # another writer opening does not derive it behind the step's back
        assert wh.con.execute("SELECT count(*) FROM job_versions").fetchall() == [(0,)]
        assert wh.derive_pending("proj1").versions_loaded == 1


def test_a_new_warehouse_has_a_readable_file_for_every_table(wh_dir):
    with Warehouse.open(wh_dir):
        pass
    for table in schema.ALL_TABLES:
        assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{wh_dir}/parquet/{table.name}/**/*.parquet', "
                          "hive_partitioning=true)").fetchall() == [(0,)]
        assert len(pd.read_parquet(wh_dir / "parquet" / table.name)) == 0


def test_raw_bodies_are_landed_once_as_parquet_files_that_duckdb_reads(wh_dir, seed_bytes):
    land(wh_dir, [_version(seed_bytes, 1, v) for v in range(3)])
    files = sorted((wh_dir / "parquet" / "raw_payloads" / "proj1").glob("raw-*.parquet"))
    assert len(files) == 1
    landed = sorted(pd.read_parquet(files[0])["payload"])
    assert rows(wh_dir, "SELECT payload FROM raw_payloads ORDER BY payload") == [(b,) for b in landed]
    assert rows(wh_dir, "SELECT table_type FROM information_schema.tables WHERE table_name = 'raw_payloads'"
                ) == [("VIEW",)]  # the DuckDB file holds the keys, not a second copy of the bodies


def test_a_moved_warehouse_still_reads_its_raw_payloads(tmp_path, seed_bytes):
    land(tmp_path / "a", [_version(seed_bytes, 1, 1)])
    (tmp_path / "a").rename(tmp_path / "b")
    with connect(tmp_path / "b") as con:  # read-only: follows the folder without writing
        assert con.execute("SELECT count(*) FROM raw_payloads").fetchall() == [(1,)]
    land(tmp_path / "b", [_version(seed_bytes, 1, 2)])  # a writer points the stored view at the new place
    assert rows(tmp_path / "b", "SELECT count(*) FROM raw_payloads") == [(2,)]


def _make_old_format(root):
    """Turn a warehouse into the layout of earlier releases: bodies and samples as DuckDB tables."""
    con = duckdb.connect(str(root / "modelarts.duckdb"))
    con.execute("CREATE TABLE old_raw AS SELECT * FROM raw_payloads")
    con.execute("CREATE TABLE old_samples AS SELECT * FROM system_metric_samples")
    con.execute("DROP VIEW raw_payloads")
    con.execute("DROP VIEW system_metric_samples")
    con.execute("DROP TABLE system_metric_series")
    con.execute("ALTER TABLE old_raw RENAME TO raw_payloads")
    con.execute("ALTER TABLE old_samples RENAME TO system_metric_samples")
    con.execute("DROP TABLE _raw_keys")
    con.close()
    for f in (root / "parquet" / "raw_payloads").rglob("raw-*.parquet"):
        f.rename(f.with_name(f.name.replace("raw-", "load-")))  # as the old export named them


def test_a_warehouse_of_the_earlier_layout_is_migrated_on_open(wh_dir, seed_bytes):
    land(wh_dir, [_version(seed_bytes, 1, v) for v in range(3)] + [b"not json"])
    before = snapshot(wh_dir)
    _make_old_format(wh_dir)
    with Warehouse.open(wh_dir):
        pass
    assert snapshot(wh_dir) == before
    assert_parquet_matches_duckdb(wh_dir)
    land(wh_dir, [_version(seed_bytes, 1, v) for v in range(3)])  # already stored: nothing new
    assert snapshot(wh_dir) == before


def test_a_folder_name_with_pattern_characters_reads_only_its_own_files(tmp_path, seed_bytes):
    land(tmp_path / "wh1", [_version(seed_bytes, 1, v) for v in range(3)])
    land(tmp_path / "wh[1]", [_version(seed_bytes, 1, 1)])  # as a pattern, "wh[1]" matches "wh1"
    assert rows(tmp_path / "wh[1]", "SELECT count(*) FROM raw_payloads") == [(1,)]
    with connect(tmp_path / "wh[1]") as con:
        assert con.execute("SELECT count(*) FROM raw_payloads").fetchall() == [(1,)]


def test_a_folder_name_duckdb_cannot_use_is_a_clear_error(tmp_path):
    with pytest.raises(WarehouseError, match="contains '\\?'"):
        Warehouse.open(tmp_path / "wh?x").__enter__()


def _raw_rows(root):
    return rows(root, "SELECT * FROM raw_payloads ORDER BY payload_sha256")


def _raw_files(root):
    return sorted(p.name for p in (root / "parquet" / "raw_payloads" / "proj1").glob("raw-*.parquet"))


def test_many_small_raw_files_are_merged_without_changing_a_row(wh_dir, seed_bytes, monkeypatch):
    monkeypatch.setattr("warehouse.store.RAW_COMPACT_FILES", 1000)
    for v in range(5):  # one load each, as hourly syncs: one small landing file each
        land(wh_dir, [_version(seed_bytes, 1, v)])
    before = _raw_rows(wh_dir)
    assert len(_raw_files(wh_dir)) == 5
    monkeypatch.setattr("warehouse.store.RAW_COMPACT_FILES", 3)
    with Warehouse.open(wh_dir) as wh:
        assert wh.compact_raw_files() == 5
    assert len(_raw_files(wh_dir)) == 1
    assert _raw_rows(wh_dir) == before
    for v in range(5):
        land(wh_dir, [_version(seed_bytes, 1, v)])  # still known as stored: nothing lands again
    assert _raw_rows(wh_dir) == before


def test_a_merge_killed_after_its_commit_is_finished_by_the_next_writer(wh_dir, seed_bytes, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setattr("warehouse.store.RAW_COMPACT_FILES", 1000)
    for v in range(4):
        land(wh_dir, [_version(seed_bytes, 1, v)])
    before = _raw_rows(wh_dir)
    code = ("import sys, warehouse.store as s; s.RAW_COMPACT_FILES = 2; "
            "w = s.Warehouse.open(sys.argv[1]); w.__enter__(); w.compact_raw_files()")
    crashed = subprocess.run([sys.executable, "-c", code, str(wh_dir)], capture_output=True, text=True,
                             env={**os.environ, "MODELARTS_FAILPOINT": "raw_merge_committed"}, timeout=60)
    assert crashed.returncode == -9, crashed.stderr
    with Warehouse.open(wh_dir):
        pass  # publishes the merged file, then deletes the files it replaced
    assert _raw_files(wh_dir) == [n for n in _raw_files(wh_dir) if n.startswith("raw-merged-")]
    assert _raw_rows(wh_dir) == before
