"""Issue 12, item 7: a folder that is not a warehouse is refused with one line, and a load that fails
before landing anything leaves no empty warehouse behind."""
from __future__ import annotations

import sqlite3

import pytest

from conftest import land
from pipelines.modelarts.records import RawRecord
from warehouse import connect, lake, load
from warehouse.store import Warehouse, WarehouseError
from warehouse_world import cli, ingest, one_line_error


@pytest.mark.parametrize("command", [("rebuild",), ("maintain",), ("snapshots",), ("check",),
                                     ("export", "--parquet", "OUT")])
def test_commands_refuse_a_folder_that_is_not_a_warehouse(tmp_path, command):
    typo = tmp_path / "wharehouse"
    command = tuple(str(tmp_path / "out") if part == "OUT" else part for part in command)
    line = one_line_error(cli(*command, "--warehouse", str(typo)))
    assert "no warehouse at" in line
    assert not typo.exists()


def test_readers_refuse_a_folder_that_is_not_a_warehouse(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "missing", tmp_path / "empty"):
        with pytest.raises(WarehouseError, match="no warehouse at"):
            connect(folder)
        with pytest.raises(WarehouseError, match="no warehouse at"):
            load("job_versions", folder)
    assert not (tmp_path / "missing").exists()


def test_a_writer_with_create_false_refuses_a_new_folder(tmp_path):
    with pytest.raises(WarehouseError, match="no warehouse at"):
        with Warehouse.open(tmp_path / "new", create=False):
            pass
    assert not (tmp_path / "new").exists()


def test_an_ingest_that_fails_before_landing_leaves_no_warehouse(tmp_path):
    wh = tmp_path / "wh"
    done = ingest(tmp_path / "no-such-file.json", wh)
    assert done.returncode == 1
    assert not wh.exists()


def test_a_load_that_fails_before_landing_removes_what_its_open_created_only(tmp_path, seed_bytes):
    def failing():
        raise RuntimeError("the source broke before its first body")
        yield

    wh = tmp_path / "wh"
    with pytest.raises(RuntimeError):
        with Warehouse.open(wh) as writer:
            writer.land(failing())
    assert not wh.exists()
    with Warehouse.open(wh) as writer:  # an existing warehouse is never removed
        writer.land([RawRecord(body=seed_bytes, project_id="p1", source="s")])
    with pytest.raises(RuntimeError):
        with Warehouse.open(wh) as writer:
            writer.land(failing())
    assert connect(wh).execute("SELECT count(*) FROM job_versions").fetchone() == (1,)


def test_discard_if_empty_removes_a_new_warehouse_a_failed_sync_made(tmp_path):
    wh = tmp_path / "wh"
    with Warehouse.open(wh) as writer:
        writer.discard_if_empty()  # what the sync command calls when its report is not ok
    assert not wh.exists()


def test_a_catalog_left_empty_by_a_killed_first_load_is_no_warehouse_yet_and_a_writer_makes_it_one(tmp_path,
                                                                                                    seed_bytes):
    wh = tmp_path / "wh"
    wh.mkdir()
    db = sqlite3.connect(wh / "catalog.sqlite")  # what a first load killed before DuckLake made its tables leaves
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    with pytest.raises(WarehouseError, match="no warehouse at .* yet .*first load was interrupted"):
        connect(wh)
    land(wh, [seed_bytes])
    with connect(wh) as con:
        assert con.execute("SELECT count(*) FROM job_versions").fetchone()[0] == 1


def test_python_sqlite3_never_opens_a_catalog_duckdb_may_hold_open(tmp_path, seed_bytes, monkeypatch):
    """Two SQLite libraries in one process drop each other's POSIX locks: a reader died of SIGBUS."""
    wh = tmp_path / "wh"
    land(wh, [seed_bytes])  # made the catalog (in WAL mode, with Python's sqlite3: nothing else had it open)
    opened = []
    real = lake.sqlite3.connect
    monkeypatch.setattr(lake.sqlite3, "connect", lambda *a, **k: opened.append(a) or real(*a, **k))
    with connect(wh) as reader:
        land(wh, [(seed_bytes, "again")])
        with connect(wh) as second:
            assert second.execute("SELECT count(*) FROM raw_payloads").fetchone()[0] == 2
        assert reader.execute("SELECT count(*) FROM job_versions").fetchone()[0] == 1
    assert opened == []
