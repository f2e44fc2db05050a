"""The notebook reader (`warehouse.dataset`, `load(columns=, limit=)`) and the reading commands
(`tables`, `sql`, `--version`) on a real lake."""
from __future__ import annotations

import csv
import io
import json
import time
from datetime import datetime, timezone

import orjson
import pyarrow as pa
import pytest
from click.testing import CliRunner
from conftest import land

from pipelines.cli import main
from warehouse import dataset, load
from warehouse.store import WarehouseError


def _version(seed_bytes: bytes, job_id: int, version_id: int, **fields) -> bytes:
    payload = orjson.loads(seed_bytes)
    payload.update(job_id=job_id, version_id=version_id, **fields)
    return orjson.dumps(payload)


@pytest.fixture
def lake(wh_dir, seed_bytes):
    land(wh_dir, [
        _version(seed_bytes, 1, 1, parameter=[{"label": "learning_rate", "value": 0.1},
                                             {"label": "optimizer", "value": "adam"}]),
        _version(seed_bytes, 2, 2, status=11, parameter=[{"label": "batch_size", "value": "64"}]),
        _version(seed_bytes, 3, 3, parameter=[]),
    ])
    return wh_dir


def test_tables_are_attributes_that_tab_complete(lake):
    with dataset(lake) as ds:
        assert {"job_versions", "version_summary", "best_versions", "utilisation_daily", "loads"} <= set(dir(ds))
        assert ds.job_versions.df()["job_id"].sort_values().tolist() == [1, 2, 3]
        failed = ds.version_summary.where("status_category = 'failed'")
        assert failed.select("job_id", "status_name").fetchall() == [(2, "FAILED")]
        assert isinstance(ds.parameters.arrow(), pa.Table) and ds.parameters.count() == 3
        assert ds.job_versions.columns[:3] == ["project_id", "job_id", "version_id"]
        assert ds["jobs"].limit(1).count() == 1
        assert ds.sql("SELECT count(*) AS n FROM version_summary").df()["n"].tolist() == [3]
        counts = dict(ds.row_counts().itertuples(index=False))
        assert counts["job_versions"] == 3 and counts["system_metric_samples"] == 63 and counts["best_versions"] == 2
        with pytest.raises(AttributeError, match="no attribute or table 'job_version'"):
            ds.job_version
        with pytest.raises(WarehouseError, match="query failed: .*nope"):
            ds.sql("SELECT nope FROM jobs").df()


def test_parameters_wide_has_one_row_per_version_and_one_column_per_label(lake):
    with dataset(lake) as ds:
        text = ds.parameters_wide().df()
        numeric = ds.parameters_wide(numeric=True).df()
        one = ds.parameters_wide(where="job_id = 1").df()
    assert list(text.columns) == ["project_id", "api_version", "run_id", "job_id", "version_id", "training_job_id",
                                  "batch_size", "learning_rate", "optimizer"]
    assert text["job_id"].tolist() == [1, 2, 3]  # the version without parameters has its row too
    assert text.loc[0, "learning_rate"] == "0.1" and text.loc[0, "optimizer"] == "adam"
    assert text.loc[1, "batch_size"] == "64" and text.iloc[2, 6:].isna().all()
    assert numeric.loc[0, "learning_rate"] == 0.1 and numeric["optimizer"].isna().all()
    assert one["job_id"].tolist() == [1]


def test_as_of_a_snapshot_or_a_time(lake, seed_bytes):
    with dataset(lake) as ds:
        before = ds.sql("SELECT max(snapshot_id) FROM loads").fetchall()[0][0]
    moment = datetime.now(timezone.utc)
    time.sleep(0.05)
    land(lake, [_version(seed_bytes, 4, 4)])
    with dataset(lake) as now, dataset(lake, as_of=before) as then, dataset(lake, as_of=moment) as at_time:
        assert now.version_summary.count() == 4
        assert then.version_summary.count() == 3 and at_time.version_summary.count() == 3
    with pytest.raises(WarehouseError, match="as_of must be a snapshot id or a time"):
        dataset(lake, as_of=1.5)
    with pytest.raises(WarehouseError, match="no warehouse"):
        dataset(lake / "missing")


def test_load_takes_columns_and_a_limit(lake):
    df = load("version_summary", lake, columns=["job_id", "status_category"], limit=2, where="job_id > 1")
    assert list(df.columns) == ["job_id", "status_category"] and df["job_id"].tolist() == [2, 3]
    assert len(load("job_versions", lake, limit=1)) == 1
    with pytest.raises(WarehouseError, match="job_versions has no column 'nope'"):
        load("job_versions", lake, columns=["job_id", "nope"])
    with pytest.raises(WarehouseError, match="limit must be"):
        load("job_versions", lake, limit=-1)


def test_tables_command_lists_rows_and_last_load(lake):
    result = CliRunner().invoke(main, ["tables", "--warehouse", str(lake)])
    assert result.exit_code == 0, result.output
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:5]]
             for line in result.output.splitlines() if line.startswith("| ") and "table " not in line[:8]}
    assert lines["job_versions"][:2] == ["table", "3"] and lines["version_summary"][:2] == ["view", "3"]
    assert lines["rejected_payloads"] == ["table", "0", "-"]
    assert "UTC" in lines["job_versions"][2]


def test_sql_command_pretty_csv_and_json(lake):
    query = "SELECT job_id, status_category FROM version_summary ORDER BY job_id"
    pretty = CliRunner().invoke(main, ["sql", query, "--warehouse", str(lake)])
    assert pretty.exit_code == 0 and "| job_id | status_category |" in pretty.output and "3 rows" in pretty.output
    as_csv = CliRunner().invoke(main, ["sql", query, "--warehouse", str(lake), "--csv"])
    assert list(csv.reader(io.StringIO(as_csv.output))) == [
        ["job_id", "status_category"], ["1", "succeeded"], ["2", "failed"], ["3", "succeeded"]]
    as_json = CliRunner().invoke(main, ["sql", "SELECT job_id, create_time FROM job_versions WHERE job_id = 1",
                                        "--warehouse", str(lake), "--json"])
    assert json.loads(as_json.output) == [{"job_id": 1, "create_time": "2018-04-20T02:06:30.635000+00:00"}]


def test_sql_mistakes_are_one_line(lake):
    for args in (["sql", "SELEC 1"], ["sql", "DELETE FROM job_versions"], ["sql", "SELECT 1", "--csv", "--json"]):
        result = CliRunner().invoke(main, args + ["--warehouse", str(lake)])
        assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
        assert result.output.startswith("Error: ")
    missing = CliRunner().invoke(main, ["sql", "SELECT 1", "--warehouse", str(lake / "nope")])
    assert missing.exit_code == 1 and missing.output.strip().splitlines() == [missing.output.strip()]
    assert "no warehouse" in missing.output


def test_version_option():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and "version 0.1.0" in result.output
