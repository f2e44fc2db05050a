"""Storage guarantees: Parquet and DuckDB agree, upserts replace, re-runs change nothing."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from conftest import land, rows
from warehouse import analysis, connect, load, schema
from pipelines.modelarts.records import RawRecord
from warehouse.store import Warehouse, WarehouseBusy, WarehouseError


def _version(seed_bytes, job_id, version_id, status=10, n_params=1, create_time=1524189990635, **extra) -> bytes:
    payload = json.loads(seed_bytes)
    payload.update(job_id=job_id, version_id=version_id, status=status, create_time=create_time, **extra)
    payload["parameter"] = [{"label": f"p{i}", "value": i} for i in range(n_params)]
    return json.dumps(payload).encode()


def snapshot(root) -> dict[str, list]:
    con = connect(root)
    try:
        return {t.name: sorted(con.execute(f"SELECT * EXCLUDE (load_id) FROM {t.name}" if t.name in
                                           ("raw_payloads", "rejected_payloads") else f"SELECT * FROM {t.name}"
                                           ).fetchall(), key=repr)
                for t in schema.ALL_TABLES}
    finally:
        con.close()


def assert_every_row_is_in_parquet(root):
    """Data inlining is off: no table keeps rows in the catalog, and every data file the lake
    lists is a Parquet file under the warehouse's data folder."""
    con = connect(root)
    try:
        assert con.execute("SELECT count(*) FROM __ducklake_metadata_modelarts.ducklake_inlined_data_tables"
                           ).fetchall() == [(0,)]
        for table in schema.STORED_TABLES:
            files = [f for (f,) in con.execute(f"SELECT data_file FROM ducklake_list_files('modelarts', '{table.name}')"
                                               ).fetchall()]
            assert all(f.startswith(str(root.absolute() / "data")) and f.endswith(".parquet") for f in files), files
            if files:
                listed = con.execute(f"SELECT count(*) FROM read_parquet({files!r})").fetchall()[0][0]
                deleted = con.execute(f"SELECT count(*) FROM ducklake_list_files('modelarts', '{table.name}') "
                                      "WHERE delete_file IS NOT NULL").fetchall()[0][0]
                stored = con.execute(f'SELECT count(*) FROM "{table.name}"').fetchall()[0][0]
                assert listed == stored or deleted, table.name
    finally:
        con.close()


def test_every_table_is_a_ducklake_table_with_its_rows_in_parquet(wh_dir, seed_bytes):
    bodies = [_version(seed_bytes, j, v) for j in range(3) for v in range(2)] + [b"not json"]
    land(wh_dir, bodies, project_id="123")  # digits only: must stay VARCHAR, not become BIGINT
    land(wh_dir, [_version(seed_bytes, 9, 9)], project_id="other-proj")
    assert_every_row_is_in_parquet(wh_dir)
    assert rows(wh_dir, "SELECT DISTINCT typeof(project_id) FROM job_versions") == [("VARCHAR",)]
    assert rows(wh_dir, "SELECT count(*) FROM job_versions") == [(7,)]
    assert rows(wh_dir, "SELECT count(*) FROM rejected_payloads") == [(1,)]
    shown = {name for (name,) in rows(wh_dir, "SHOW TABLES")}
    assert shown == {t.name for t in schema.ALL_TABLES} | {"system_metric_series", "loads"} | set(analysis.VIEWS)


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
    assert_every_row_is_in_parquet(wh_dir)


def test_loading_the_same_payloads_twice_changes_nothing(wh_dir, seed_bytes):
    bodies = [(_version(seed_bytes, j, 1), f"f{j}") for j in range(4)] + [(b"{", "bad")]
    land(wh_dir, bodies)
    before = snapshot(wh_dir)
    report = land(wh_dir, bodies)
    assert report.landed == 0 and report.duplicates == 5
    assert snapshot(wh_dir) == before
    assert rows(wh_dir, "SELECT step FROM loads WHERE load_id = ?", [report.load_id]) == []  # not even a snapshot


def test_a_fresh_version_costs_no_delete(wh_dir, seed_bytes):
    land(wh_dir, [_version(seed_bytes, 1, v) for v in range(3)])
    land(wh_dir, [_version(seed_bytes, 1, v) for v in range(3, 6)])
    assert rows(wh_dir, "SELECT count(*) FROM ducklake_list_files('modelarts', 'job_versions') "
                        "WHERE delete_file IS NOT NULL") == [(0,)]
    land(wh_dir, [(_version(seed_bytes, 1, 4, status=8), "again")])
    assert rows(wh_dir, "SELECT count(*) FROM ducklake_list_files('modelarts', 'job_versions') "
                        "WHERE delete_file IS NOT NULL") == [(1,)]


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
    time, not sorted in DuckDB's memory all at once (a 20,000-version sync once ran out at 128 MB)."""
    bulk = "d" * 100_000  # an unknown field: in the raw body whole, in field_issues cut to 1,000 characters
    loads = [[(_version(seed_bytes, 1, v, bulk=bulk), f"v{v}") for v in range(900)],  # 90 MB of JSON
             [(_version(seed_bytes, 1, 7, status=11, bulk=bulk), "v7-later")]]
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for root, derive in ((tmp_path / "later", False), (tmp_path / "direct", True)):
        with Warehouse.open(root, memory_limit="80MB") as wh:  # reading and committing a batch at once fit
            for n, bodies in enumerate(loads):
                wh.land([RawRecord(body=b, project_id="proj1", source=s, fetched_at=start + timedelta(days=n))
                         for b, s in bodies], derive=derive)
            if not derive:
                assert wh.derive_pending(batch_records=100).versions_loaded == 901
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


def test_readers_see_the_last_commit_while_a_writer_is_open(wh_dir, seed_bytes):
    land(wh_dir, [_version(seed_bytes, 1, 1)])
    with Warehouse.open(wh_dir) as wh:
        wh.land([RawRecord(body=_version(seed_bytes, 2, 1), project_id="proj1", source="x")], derive=False)
        assert load("job_versions", wh_dir)["job_id"].tolist() == [1]  # landed, not derived yet
        assert len(load("raw_payloads", wh_dir)) == 2
        wh.derive_pending()
        assert sorted(load("job_versions", wh_dir)["job_id"]) == [1, 2]  # the writer is still open
    con = connect(wh_dir)
    with pytest.raises(duckdb.Error):
        con.execute("DELETE FROM job_versions")
    con.close()


def test_load_filters_and_rejects_unknown_tables(wh_dir, seed_bytes):
    land(wh_dir, [_version(seed_bytes, 1, 1), _version(seed_bytes, 2, 1)])
    assert load("parameters", wh_dir, where="job_id = 2")["job_id"].tolist() == [2]
    with pytest.raises(WarehouseError, match="unknown table"):
        load("nope", wh_dir)
    with pytest.raises(WarehouseError, match="no warehouse"):
        load("jobs", wh_dir / "missing")


def test_landed_but_underived_payloads_are_derived_later(wh_dir, seed_bytes):
    with Warehouse.open(wh_dir) as wh:
        report = wh.land([RawRecord(body=_version(seed_bytes, 1, 1), project_id="proj1", source="x")], derive=False)
        assert report.landed == 1 and report.versions_loaded == 0
        assert wh.con.execute("SELECT count(*) FROM job_versions").fetchall() == [(0,)]
        assert wh.derive_pending().versions_loaded == 1
        assert wh.derive_pending().versions_loaded == 0
    land(wh_dir, [(_version(seed_bytes, 1, 2), "y")])
    assert rows(wh_dir, "SELECT count(*) FROM job_versions") == [(2,)]


def test_rebuild_reproduces_the_tables_exactly(wh_dir, seed_bytes):
    land(wh_dir, [(_version(seed_bytes, 1, 1, status=8), "a"), (b"{oops", "b")])
    land(wh_dir, [(_version(seed_bytes, 1, 1, status=10, n_params=3), "a"), (_version(seed_bytes, 2, 1), "c")])
    before = snapshot(wh_dir)
    with Warehouse.open(wh_dir) as wh:
        wh.con.execute("DELETE FROM parameters")  # as if a parser bug had lost them
        snapshots = wh.snapshot_id()
        wh.rebuild(batch_records=1)  # a version in two batches of one transaction
        assert wh.snapshot_id() == snapshots + 1  # one snapshot
    assert snapshot(wh_dir) == before


def test_deferred_landing_waits_for_its_own_derive_step(wh_dir, seed_bytes):
    with Warehouse.open(wh_dir) as wh:
        wh.land([RawRecord(body=_version(seed_bytes, 1, 1), project_id="proj1", source="x")], derive=False)
    with Warehouse.open(wh_dir) as wh:  # another writer opening does not derive it behind the step's back
        assert wh.con.execute("SELECT count(*) FROM job_versions").fetchall() == [(0,)]
        assert wh.derive_pending().versions_loaded == 1


def test_a_new_warehouse_has_every_table(wh_dir):
    with Warehouse.open(wh_dir):
        pass
    assert len(load("job_versions", wh_dir)) == 0
    with connect(wh_dir) as con:  # one reader for every table: a connection each cost this test ~40 s
        for table in schema.ALL_TABLES:
            cur = con.execute(f'SELECT * FROM "{table.name}"')
            assert [d[0] for d in cur.description] == table.column_names and cur.fetchall() == []


def test_raw_bodies_are_stored_once(wh_dir, seed_bytes):
    land(wh_dir, [_version(seed_bytes, 1, v) for v in range(3)])
    files = [f for (f,) in rows(wh_dir, "SELECT data_file FROM ducklake_list_files('modelarts', 'raw_payloads')")]
    assert len(files) == 1
    landed = sorted(pd.read_parquet(files[0])["payload"])
    assert rows(wh_dir, "SELECT payload FROM raw_payloads ORDER BY payload") == [(b,) for b in landed]
    data = sorted(str(p) for p in (wh_dir / "data").rglob("*.parquet"))
    assert sum(p.endswith(".parquet") and "raw_payloads" in p for p in data) == 1  # no second copy anywhere
    assert not (wh_dir / "parquet").exists()


def test_a_moved_warehouse_still_reads_its_raw_payloads(tmp_path, seed_bytes):
    land(tmp_path / "a", [_version(seed_bytes, 1, 1)])
    (tmp_path / "a").rename(tmp_path / "b")
    with connect(tmp_path / "b") as con:  # read-only: follows the folder without writing
        assert con.execute("SELECT count(*) FROM raw_payloads").fetchall() == [(1,)]
        assert con.execute("SELECT count(*) FROM parameters").fetchall() == [(1,)]
    land(tmp_path / "b", [_version(seed_bytes, 1, 2)])
    assert rows(tmp_path / "b", "SELECT count(*) FROM raw_payloads") == [(2,)]
    assert not (tmp_path / "a").exists()


def test_a_folder_name_with_pattern_characters_reads_only_its_own_files(tmp_path, seed_bytes):
    land(tmp_path / "wh1", [_version(seed_bytes, 1, v) for v in range(3)])
    land(tmp_path / "wh[1]", [_version(seed_bytes, 1, 1)])  # as a pattern, "wh[1]" matches "wh1"
    assert rows(tmp_path / "wh[1]", "SELECT count(*) FROM raw_payloads") == [(1,)]
    with connect(tmp_path / "wh[1]") as con:
        assert con.execute("SELECT count(*) FROM raw_payloads").fetchall() == [(1,)]


def test_a_folder_name_with_odd_characters_works(tmp_path, seed_bytes):
    for name in ("wh?x", "it's here", "wh%20"):
        land(tmp_path / name, [_version(seed_bytes, 1, 1)])
        assert rows(tmp_path / name, "SELECT count(*) FROM job_versions") == [(1,)]


def test_the_readmes_two_duckdb_cli_lines_attach_the_warehouse(tmp_path, seed_bytes, monkeypatch):
    from warehouse import lake

    land(tmp_path / "warehouse_data", [_version(seed_bytes, 1, 1), _version(seed_bytes, 1, 2)])
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("**From the DuckDB CLI**", 1)[1].split("```sql\n", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines() if line.strip()]
    assert len(lines) == 2
    monkeypatch.chdir(tmp_path)
    # a DuckDB like the CLI: nothing loaded by hand, extensions autoloaded from the folder the package links
    con = duckdb.connect(config={"extension_directory": str(lake.extension_directory()),
                                 "autoinstall_known_extensions": False})
    for line in lines:
        con.execute(line)
    assert con.execute("SELECT count(*) FROM job_versions").fetchall() == [(2,)]
    assert con.execute("SELECT count(*) FROM jobs").fetchall() == [(1,)]
    assert con.execute("SELECT count(*) FROM loads WHERE step = 'derive'").fetchall() == [(1,)]


def test_extensions_come_signed_from_the_pinned_packages_even_with_a_read_only_home(monkeypatch, tmp_path):
    from warehouse import lake

    monkeypatch.setenv("XDG_CACHE_HOME", "/proc/not-writable")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    con = lake.new_connection()
    assert con.execute("SELECT current_setting('allow_unsigned_extensions')").fetchone() == (False,)
    loaded = dict(con.execute("SELECT extension_name, install_path FROM duckdb_extensions() WHERE loaded "
                              "AND extension_name = 'ducklake'").fetchall())
    assert loaded["ducklake"].startswith(str(tmp_path))  # linked from the package, nothing downloaded
    assert con.execute("SELECT current_setting('autoinstall_known_extensions')").fetchone() == (False,)


def test_a_rejection_names_the_load_that_landed_its_body_and_a_rebuild_keeps_it(wh_dir, seed_bytes):
    first = land(wh_dir, [(b"{broken", "a")])
    second = land(wh_dir, [(b"[1, 2]", "b"), (_version(seed_bytes, 1, 1), "c")])
    expected = [("a", first.load_id), ("b", second.load_id)]
    assert rows(wh_dir, "SELECT source, load_id FROM rejected_payloads ORDER BY source") == expected
    assert rows(wh_dir, "SELECT r.source, r.load_id FROM raw_payloads r JOIN rejected_payloads j "
                        "USING (project_id, source, payload_sha256) ORDER BY 1") == expected
    with Warehouse.open(wh_dir) as wh:
        wh.rebuild()
    assert rows(wh_dir, "SELECT source, load_id FROM rejected_payloads ORDER BY source") == expected
