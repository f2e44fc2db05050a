"""v2 jobs through Dagster: their assets, and the checks that score them, against the simulator over HTTP.

Real parts: a temporary DagsterInstance, a real lake, the simulator serving v2 with unknown fields
and -1 ("no data") metric samples. Then the lake is broken on purpose and the checks say where.
"""
from __future__ import annotations

import dagster as dg
import pytest

from assets.checks import ALL_CHECKS
from assets.extract import raw_payloads
from assets.tables import V2_DETAIL_NAMES, derive_tables
from pipelines.modelarts.simulator import SimulatorServer, World
from pipelines.modelarts.simulator.v2_world import V2World
from pipelines.resources import ModelArtsResource, WarehouseResource
from warehouse.store import Warehouse

PROJECT = "proj-a"  # one of the partitions tests/conftest.py pins for Dagster
TOKEN = "v2-dagster-t0k"
ASSETS = [raw_payloads, derive_tables, *ALL_CHECKS]


@pytest.fixture
def synced(tmp_path, monkeypatch):
    world = V2World(projects=(PROJECT,), jobs=10, seed=5, payload_fault_rate=0.4, payload_faults=("unknown_fields",))
    monkeypatch.setenv("V2_DAGSTER_TOKEN", TOKEN)
    with SimulatorServer(World(projects=[PROJECT], jobs=1), token=TOKEN, v2=world) as sim, \
            dg.instance_for_test() as instance:
        resources = {
            "modelarts": ModelArtsResource(endpoint=sim.url, project_ids=[PROJECT], rate=0, max_retries=1,
                                           token=dg.EnvVar("V2_DAGSTER_TOKEN"), api="both"),
            "warehouse": WarehouseResource(folder=str(tmp_path / "wh")),
        }
        result = dg.materialize(ASSETS, partition_key=PROJECT, instance=instance, resources=resources)
        yield result, resources, instance


def _checks(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations() if e.check_name == "quality"}


def _metadata(result, table: str) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events()
                if e.materialization.asset_key.path[-1] == table]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_a_v2_sync_reports_its_jobs_details_and_warns_only_about_new_fields(synced):
    result, resources, _ = synced
    assert result.success
    with Warehouse(resources["warehouse"].folder) as wh:
        details = dict(wh.con.execute(" UNION ALL ".join(
            f"SELECT '{t}', count(*) FROM \"{t}\"" for t in V2_DETAIL_NAMES)).fetchall())
        minus_ones = wh.con.execute("SELECT count(*) FROM (SELECT unnest(samples) AS v FROM v2_metric_series) "
                                    "WHERE v = -1").fetchone()[0]
    assert _metadata(result, "v2_jobs")["detail_rows"] == details and details["v2_job_listings"] == 10
    checks = _checks(result)
    assert {t for t, e in checks.items() if not e.passed} == {"v2_field_issues"}
    assert checks["v2_field_issues"].severity == dg.AssetCheckSeverity.WARN
    assert checks["v2_field_issues"].metadata["no_new_unknown_fields"].value > 0
    assert minus_ones > 0 and checks["v2_metric_samples"].metadata["no_negative_samples"].value == 0
    assert {k for k in checks["v2_jobs"].metadata} >= {"unique_key", "details_unique_key", "details_have_job"}


def test_the_v2_checks_find_a_broken_lake(synced):
    _, resources, instance = synced
    with Warehouse(resources["warehouse"].folder, source="test") as wh:
        wh.con.execute("UPDATE v2_metric_series SET samples = list_prepend(-5.0, samples[2:]) "
                       "WHERE rowid = (SELECT min(rowid) FROM v2_metric_series)")
        wh.con.execute("INSERT INTO v2_tasks (project_id, training_job_id, position) VALUES (?, 'ghost', 0)",
                       [PROJECT])
        wh.con.execute("INSERT INTO v2_running_records SELECT * FROM v2_running_records LIMIT 1")
    result = dg.materialize(ASSETS, selection=dg.AssetSelection.checks(*[
        dg.AssetCheckKey(dg.AssetKey(["modelarts", t]), "quality") for t in ("v2_metric_samples", "v2_tasks", "v2_jobs")
    ]), resources=resources, instance=instance, raise_on_error=False)
    checks = _checks(result)
    assert not result.success and all(e.severity == dg.AssetCheckSeverity.ERROR for e in checks.values())
    assert checks["v2_metric_samples"].metadata["no_negative_samples"].value == 1
    assert checks["v2_tasks"].metadata["has_job"].value == 1
    assert checks["v2_jobs"].metadata["details_unique_key"].value == 1
    assert checks["v2_jobs"].metadata["detail"].value == {"details_unique_key": {"v2_running_records": 1}}
