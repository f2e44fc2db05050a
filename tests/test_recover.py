"""Issue 13, item 2: raw bodies are recoverable without the catalog.

DuckLake writes whole rows, so each raw_payloads data file holds every column of its bodies;
`modelarts-etl recover` rebuilds a warehouse from those files alone.
"""
from __future__ import annotations

import hashlib
import shutil

import pyarrow.parquet as pq
import pytest

from conftest import rows
from test_crash import stable_snapshot
from warehouse import connect, load, schema
from warehouse.store import WarehouseError
from warehouse_world import cli, ingest, one_line_error, write_corpus


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    base = tmp_path_factory.mktemp("recover")
    corpus = write_corpus(base / "c.jsonl")
    wh = base / "wh"
    assert ingest(corpus, wh).returncode == 0
    # a second load re-fetches 40 versions with a new status: two bodies for them, the later wins
    assert ingest(write_corpus(base / "later.jsonl", n=40, status=8), wh).returncode == 0
    return corpus, wh, stable_snapshot(wh)


@pytest.fixture
def world(pristine, tmp_path):
    corpus, wh, reference = pristine
    copy = tmp_path / "wh"
    shutil.copytree(wh, copy)
    return corpus, copy, reference


def test_raw_data_files_are_self_describing(world):
    _, wh, _ = world
    files = sorted((wh / "data" / "main" / "raw_payloads").glob("*.parquet"))
    table = pq.read_table(files[0])  # pyarrow alone, no catalog
    assert set(schema.RAW_PAYLOADS.column_names) <= set(table.column_names)
    for row in table.to_pylist():
        assert row["project_id"] == "p1" and row["source"] and row["fetched_at"] is not None
        assert hashlib.sha256(row["payload"]).hexdigest() == row["payload_sha256"]


@pytest.mark.parametrize("loss", ["deleted", "corrupt"])
def test_a_lost_catalog_is_one_line_naming_recover_and_recover_restores_every_version(world, loss):
    corpus, wh, reference = world
    catalog = wh / "catalog.sqlite"
    if loss == "deleted":
        for suffix in ("", "-wal", "-shm"):
            (wh / f"catalog.sqlite{suffix}").unlink(missing_ok=True)
    else:
        catalog.write_bytes(b"this is not a database" * 200)
        for suffix in ("-wal", "-shm"):
            (wh / f"catalog.sqlite{suffix}").unlink(missing_ok=True)
    with pytest.raises(WarehouseError, match="modelarts-etl recover"):
        connect(wh)
    with pytest.raises(WarehouseError, match="modelarts-etl recover"):
        load("job_versions", wh)
    for command in (("snapshots",), ("rebuild",), ("check",)):
        assert "modelarts-etl recover" in one_line_error(cli(*command, "--warehouse", str(wh))), command
    assert "modelarts-etl recover" in one_line_error(ingest(corpus, wh))  # and lands nothing twice

    done = cli("recover", "--warehouse", str(wh))
    assert done.returncode == 0, done.stderr
    assert "recovered 340 raw bodies (300 versions)" in done.stdout
    assert (wh / "pre-recover" / "data").is_dir()  # the old files are kept aside
    assert rows(wh, "SELECT count(*), count(DISTINCT (project_id, source, payload_sha256)) FROM raw_payloads") == [(340, 340)]
    recovered = stable_snapshot(wh)
    for table in schema.ALL_TABLES:
        if table.name != "loads":
            assert recovered[table.name] == reference[table.name], table.name
    again = ingest(corpus, wh)  # re-ingesting after recovery lands nothing twice
    assert "landed 0 payloads (300 already stored)" in again.stdout


def test_recover_run_again_after_a_crash_reads_the_earlier_aside_folder(world):
    _, wh, reference = world
    (wh / "catalog.sqlite").unlink()
    assert cli("recover", "--warehouse", str(wh)).returncode == 0
    assert cli("recover", "--warehouse", str(wh)).returncode == 0  # as a recover killed half-way would be
    assert rows(wh, "SELECT count(*) FROM raw_payloads") == [(340,)]
    assert stable_snapshot(wh)["job_versions"] == reference["job_versions"]


def test_recover_of_a_folder_with_nothing_in_it_is_one_line(tmp_path):
    assert "nothing to recover" in one_line_error(cli("recover", "--warehouse", str(tmp_path / "none")))
