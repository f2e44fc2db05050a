"""Issue 13, item 1: a damaged raw data file, then `rebuild`, `check` and the writers.

A throwaway real warehouse (made by `ingest`, 300 versions in 3 raw files) gets one raw
data file truncated or deleted, as a full disk or a bad copy would leave it.
"""
from __future__ import annotations

import os
import shutil

import pytest

from conftest import rows
from test_crash import VOLATILE, stable_snapshot
from warehouse import schema
from warehouse import connect
from warehouse.datafiles import data_files
from warehouse_world import cli, ingest, one_line_error, write_corpus


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    base = tmp_path_factory.mktemp("damage")
    corpus = write_corpus(base / "c.jsonl")
    wh = base / "wh"
    assert ingest(corpus, wh).returncode == 0
    return corpus, wh


@pytest.fixture
def world(pristine, tmp_path):
    corpus, wh = pristine
    copy = tmp_path / "wh"
    shutil.copytree(wh, copy)
    return corpus, copy


def raw_file(wh, n: int = 1):
    con = connect(wh)
    try:
        return data_files(con, "raw_payloads")[n]
    finally:
        con.close()


def tidy_snapshot(wh) -> dict[str, list]:
    """stable_snapshot without raw_payloads (a damaged raw file makes it unreadable)."""
    con = connect(wh)
    try:
        out = {}
        for table in ("job_versions", "parameters", "data_sources", "field_issues"):
            cols = ", ".join(f'"{c}"' for c in schema.TABLES[table].column_names if c not in VOLATILE)
            out[table] = sorted(con.execute(f"SELECT {cols} FROM {table}").fetchall(), key=repr)
        return out
    finally:
        con.close()


def snapshot_id(wh) -> int:
    return rows(wh, "SELECT id FROM modelarts.current_snapshot()")[0][0]


def test_check_reads_every_file_and_names_the_damaged_one(world):
    _, wh = world
    assert cli("check", "--warehouse", str(wh)).returncode == 0
    damaged = raw_file(wh)
    os.truncate(damaged.path, damaged.size // 2)
    done = cli("check", "--warehouse", str(wh))
    line = one_line_error(done)
    assert os.path.basename(damaged.path) in done.stdout and "100 rows" in done.stdout
    assert "1 of 21 data files damaged" in line and "100 raw bodies" in line and "modelarts-etl recover" in line
    assert cli("verify", "--warehouse", str(wh)).returncode == 1


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_rebuild_with_a_damaged_raw_file_rebuilds_the_rest_in_one_snapshot_and_reports_it(world, damage):
    _, wh = world
    before, first = tidy_snapshot(wh), snapshot_id(wh)
    damaged = raw_file(wh)
    os.truncate(damaged.path, damaged.size // 2) if damage == "truncate" else os.remove(damaged.path)
    done = cli("rebuild", "--warehouse", str(wh))
    line = one_line_error(done)
    assert "rebuilt without 100 raw bodies in 1 damaged file(s)" in line and "100 version(s)" in line
    assert os.path.basename(damaged.path) in done.stderr
    assert snapshot_id(wh) == first + 1  # one snapshot
    after = tidy_snapshot(wh)
    for table in after:
        assert after[table] == before[table], table  # readable bodies rebuilt, the others kept
    assert rows(wh, "SELECT count(*), count(DISTINCT (job_id, version_id)) FROM job_versions") == [(300, 300)]


def test_a_rebuild_that_fails_leaves_the_previous_snapshot(world):
    _, wh = world
    before, first = stable_snapshot(wh), snapshot_id(wh)
    tidy = connect(wh).execute("SELECT data_file FROM ducklake_list_files('modelarts', 'job_versions')").fetchone()[0]
    os.truncate(tidy, 100)  # a derived table's file: the rebuild cannot delete its rows
    line = one_line_error(cli("rebuild", "--warehouse", str(wh)))
    assert "damaged" in line and "modelarts-etl check" in line
    assert snapshot_id(wh) == first
    con = connect(wh)  # job_versions is unreadable now; the other tables are as before
    try:
        assert con.execute("SELECT count(*) FROM parameters").fetchone()[0] == len(before["parameters"])
    finally:
        con.close()


def test_writers_keep_working_and_a_re_ingest_lands_the_lost_bodies_again(world):
    corpus, wh = world
    damaged = raw_file(wh)
    os.remove(damaged.path)
    done = ingest(corpus, wh)
    assert done.returncode == 0, done.stderr
    assert "landed 100 payloads (200 already stored)" in done.stdout
    assert "modelarts-etl check" in done.stderr  # said once that raw files are damaged
    con = connect(wh, snapshot=None)
    try:
        assert con.execute("SELECT count(*), count(DISTINCT (job_id, version_id)) FROM job_versions").fetchone() == (300, 300)
    finally:
        con.close()
    assert ingest(corpus, wh).returncode == 0  # and again: nothing new
