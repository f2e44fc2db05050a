"""Every asset and check, materialized in-process through Dagster against the simulator over HTTP.

Real parts only: a temporary DagsterInstance, a real lake in a temporary folder, the
simulator on loopback with a token, the resources as definitions.py builds them.
"""
import os

os.environ.setdefault("MODELARTS_PROJECT_IDS", "proj-a,proj-b")  # before the code location loads: partitions

from pathlib import Path  # noqa: E402

import duckdb  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import dagster as dg  # noqa: E402

from assets.checks import ALL_CHECKS, ROW_RULES  # noqa: E402
from assets.conventions import key  # noqa: E402
from assets.export import parquet_export  # noqa: E402
from assets.extract import raw_payloads  # noqa: E402
from assets.maintenance import lake_maintenance  # noqa: E402
from assets.marts import version_summary  # noqa: E402
from assets.tables import TABLE_NAMES, derive_tables  # noqa: E402

from pipelines.modelarts.simulator import SimulatorServer, TransientFaults, World  # noqa: E402
from pipelines.partitions import project_partitions  # noqa: E402
from pipelines.resources import ModelArtsResource, WarehouseResource  # noqa: E402
from warehouse import connect, schema, schema_v2  # noqa: E402
from warehouse.store import Warehouse  # noqa: E402

PROJECTS = ["proj-a", "proj-b"]
TOKEN_VAR = "TEST_SIMULATOR_TOKEN"
REJECTING_FAULTS = {"invalid_json", "not_success"}
EVERYTHING = [raw_payloads, derive_tables, version_summary, parquet_export, *ALL_CHECKS]  # what the sync job runs
V2_ASSETS = 8 + 2  # v2_jobs and its seven child tables (the detail tables are reported on v2_jobs), runs, run_parameters
CHECK_COUNT = 2 * (1 + 9 + V2_ASSETS)  # quality and columns_match_contract on raw_payloads and every table
EXPORT_VAR = "TEST_EXPORT_PARQUET_DIR"


@pytest.fixture(autouse=True)
def _partitions_are_the_test_projects():
    """Partitions are read once, when pipelines.partitions is first imported."""
    keys = project_partitions.get_partition_keys()
    assert keys == PROJECTS, (f"partitions are {keys}: pipelines.partitions was imported before this module set "
                              "MODELARTS_PROJECT_IDS (set it in tests/conftest.py to make the order irrelevant)")


@pytest.fixture
def sim(monkeypatch):
    world = World(projects=PROJECTS, jobs=6, versions_per_job=(1, 4), seed=11, payload_fault_rate=0.35,
                  payload_faults=("invalid_json", "not_success", "unknown_fields"))
    faults = TransientFaults(rate=0.05, kinds=("throttle", "server_error"), seed=3, max_per_path=1, retry_after=0)
    monkeypatch.setenv(TOKEN_VAR, "t0k")
    with SimulatorServer(world, token="t0k", faults=faults) as server:
        yield server


@pytest.fixture
def resources(sim, tmp_path):
    return {
        "modelarts": ModelArtsResource(endpoint=sim.url, project_ids=PROJECTS, token=dg.EnvVar(TOKEN_VAR), rate=0),
        "warehouse": WarehouseResource(folder=str(tmp_path / "wh")),
    }


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def materialize(project, resources, instance, **kwargs) -> dg.ExecuteInProcessResult:
    result = dg.materialize(EVERYTHING, partition_key=project, resources=resources, instance=instance, **kwargs)
    assert result.success
    return result


def metadata(result, name: str) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events()
                if e.materialization.asset_key == key(name)]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def checks(result) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}


def rule_counts(evaluation: dg.AssetCheckEvaluation) -> dict[str, int]:
    """A quality check's metadata: one entry per rule of its table, the rows breaking it."""
    rules = {rule.name for rule in ROW_RULES}
    return {k: v.value for k, v in evaluation.metadata.items() if k in rules}


def db(resources) -> duckdb.DuckDBPyConnection:
    return connect(resources["warehouse"].folder)


def materialized(result, name: str) -> bool:
    return any(e.materialization.asset_key == key(name) for e in result.get_asset_materialization_events())


def test_two_partitions_materialize_every_table_with_metadata_and_checks(sim, resources, instance):
    results = {p: materialize(p, resources, instance) for p in PROJECTS}

    con = db(resources)
    for project, result in results.items():
        truth = sim.world.truth(project)
        rejected = {(t.job_id, t.version_id) for t in truth if REJECTING_FAULTS & set(t.faults)}
        raw = metadata(result, "raw_payloads")
        assert raw["versions_listed"] == raw["versions_fetched"] == len(truth)
        assert raw["versions_skipped_final"] == 0 and raw["versions_not_fetched"] == 0
        assert raw["requests_retried"] >= 0 and len(raw["load_ids"]) >= 1

        # the tables hold exactly the simulator's versions, less the rejected ones, with their status
        stored = dict(((j, v), final) for j, v, final in con.execute(
            "SELECT job_id, version_id, is_final FROM job_versions WHERE project_id = ?", [project]).fetchall())
        assert stored == {(t.job_id, t.version_id): t.is_final for t in truth if (t.job_id, t.version_id) not in rejected}
        assert rejected and con.execute("SELECT count(*) FROM rejected_payloads WHERE project_id = ?",
                                        [project]).fetchone()[0] == len(rejected)

        for table in TABLE_NAMES:
            meta = metadata(result, table)
            count = con.execute(f'SELECT count(*) FROM "{table}" WHERE project_id = ?', [project]).fetchone()[0]
            assert meta["dagster/row_count"] == count, table
            assert [c.name for c in meta["dagster/column_schema"].columns] == schema.TABLES[table].column_names
            assert "|" in meta["preview"] or "no rows" in meta["preview"]
        assert metadata(result, "job_versions")["versions_in_run"] == len(stored)
        assert metadata(result, "rejected_payloads")["rejected_in_run"] == len(rejected)

        # structural checks pass; the faults injected show as WARN, not as errors
        evaluations = checks(result)
        assert len(evaluations) == CHECK_COUNT
        failed = {k for k, e in evaluations.items() if not e.passed}
        assert failed == {("rejected_payloads", "quality"), ("field_issues", "quality")}
        assert all(evaluations[k].severity == dg.AssetCheckSeverity.WARN for k in failed)
        assert rule_counts(evaluations[("rejected_payloads", "quality")]) == {
            "unique_key": 0, "no_new_rejections": len(rejected)}
        assert rule_counts(evaluations[("field_issues", "quality")])["no_new_unknown_fields"] > 0

        # the metadata names the snapshot it was read at, and that snapshot still gives the same count
        snapshot = metadata(result, "job_versions")["snapshot_id"]
        with connect(resources["warehouse"].folder, snapshot=snapshot) as then:
            assert then.execute("SELECT count(*) FROM job_versions WHERE project_id = ?",
                                [project]).fetchone()[0] == len(stored)

    summary = metadata(results[PROJECTS[-1]], "version_summary")  # every project, after the last run
    assert summary["dagster/row_count"] == con.execute("SELECT count(*) FROM version_summary").fetchone()[0]
    assert "data:image/png;base64," in summary["utilisation_chart"]

    stored_as = {k.path[-1]: spec.metadata["stored_as"] for k, spec in derive_tables.specs_by_key.items()}
    assert stored_as["jobs"] == stored_as["system_metric_samples"] == "view" and stored_as["volumes"] == "table"

    # both projects are stored; every snapshot the runs committed is in the ledger as Dagster's
    assert con.execute("SELECT count(DISTINCT project_id) FROM job_versions").fetchone()[0] == 2
    steps = dict(con.execute("SELECT step, count(*) FROM loads WHERE source = 'dagster' GROUP BY 1").fetchall())
    assert steps.keys() == {"raw", "derive"}
    assert con.execute("SELECT count(*) FROM loads WHERE step IN ('raw', 'derive') AND source <> 'dagster'"
                       ).fetchone()[0] == 0
    con.close()


def test_second_sync_is_incremental_and_warns_only_about_new_problems(sim, resources, instance):
    project = PROJECTS[0]
    materialize(project, resources, instance)
    changes = sim.world.advance(6 * 3600, new_versions=2, new_jobs=1)
    result = materialize(project, resources, instance)

    raw = metadata(result, "raw_payloads")
    truth = sim.world.truth(project)
    new_or_changed = {k[1:] for k in changes.changed if k[0] == project}
    rejected_before = {(t.job_id, t.version_id) for t in truth
                       if REJECTING_FAULTS & set(t.faults) and (t.job_id, t.version_id) not in new_or_changed}
    assert raw["versions_listed"] == len(truth)
    # final versions are never fetched again; rejected ones are (they are not stored), and land as duplicates
    assert raw["versions_fetched"] == len(new_or_changed) + len(rejected_before)
    assert raw["versions_skipped_final"] == len(truth) - raw["versions_fetched"]

    new_rejections = {k for k in new_or_changed
                      if any(REJECTING_FAULTS & set(t.faults) for t in truth if (t.job_id, t.version_id) == k)}
    evaluation = checks(result)[("rejected_payloads", "quality")]
    assert evaluation.passed == (not new_rejections)
    assert metadata(result, "rejected_payloads")["rejected_in_run"] == len(new_rejections)


def test_checks_fail_on_a_broken_warehouse(sim, resources, instance):
    project = PROJECTS[0]
    materialize(project, resources, instance)
    with Warehouse(resources["warehouse"].folder, source="test") as wh:  # the lake, broken on purpose
        con = wh.con
        con.execute("INSERT INTO parameters SELECT * FROM parameters LIMIT 1")  # a duplicate key
        con.execute("INSERT INTO volumes (project_id, job_id, version_id, position) VALUES (?, 1, 2, 0)", [project])
        con.execute("UPDATE class_metrics SET recall = 1.5 WHERE rowid = (SELECT min(rowid) FROM class_metrics)")
        con.execute("UPDATE system_metric_series SET samples = list_prepend(-1.0, samples[2:]) "
                    "WHERE rowid = (SELECT min(rowid) FROM system_metric_series)")
        con.execute("INSERT INTO system_metric_series SELECT * FROM system_metric_series "
                    "WHERE rowid = (SELECT max(rowid) FROM system_metric_series)")  # its samples twice
        con.execute("ALTER TABLE data_sources ADD COLUMN surprise VARCHAR")
        # a view as an older version of the code would have left it: a column short
        con.execute(f"CREATE OR REPLACE VIEW jobs AS SELECT * EXCLUDE (job_desc) FROM ({schema.JOBS.view_sql})")
        # v2: an event of a job that is not stored, and a detail row twice (of a job not stored either)
        con.execute("INSERT INTO v2_events (project_id, training_job_id, time_text, level, source, message) "
                    "VALUES (?, 'ghost-job', 't', 'Info', 'x', 'y')", [project])
        for _ in range(2):
            con.execute("INSERT INTO v2_environments (project_id, training_job_id, position, name) "
                        "VALUES (?, 'ghost-job', 0, 'A')", [project])

    # the checks alone, as "Execute checks" in the UI runs them: unpartitioned, over every project.
    # ERROR checks are blocking, so the run fails (and says which checks), after scoring every one
    result = dg.materialize(EVERYTHING, selection=dg.AssetSelection.all_asset_checks(), resources=resources,
                            instance=instance, raise_on_error=False)
    assert not result.success
    assert len(checks(result)) == CHECK_COUNT
    failed = {k: e for k, e in checks(result).items() if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR}
    assert set(failed) == {
        ("parameters", "quality"), ("volumes", "quality"), ("class_metrics", "quality"),
        ("system_metric_samples", "quality"), ("data_sources", "columns_match_contract"),
        ("jobs", "columns_match_contract"),
        ("run_parameters", "quality"),  # the unified view over parameters shows its duplicate too
        ("v2_events", "quality"), ("v2_jobs", "quality"),  # the detail tables are checked on v2_jobs
    }
    failed_rules = {k[0]: {r for r, bad in rule_counts(e).items() if bad}
                    for k, e in failed.items() if k[1] == "quality"}
    assert failed_rules == {"parameters": {"unique_key"}, "volumes": {"has_version"}, "run_parameters": {"unique_key"},
                            "class_metrics": {"class_metrics_in_unit_interval"},
                            "system_metric_samples": {"no_negative_samples", "unique_key"},
                            "v2_events": {"has_job"}, "v2_jobs": {"details_unique_key", "details_have_job"}}
    assert failed[("v2_jobs", "quality")].metadata["detail"].value == {
        "details_unique_key": {"v2_environments": 1}, "details_have_job": {"v2_environments": 2}}
    assert "has_version" in failed[("volumes", "quality")].description
    assert failed[("data_sources", "columns_match_contract")].metadata["detail"].value == {"unexpected": ["surprise"]}
    assert failed[("jobs", "columns_match_contract")].metadata["detail"].value == {"missing": ["job_desc"]}
    assert failed[("volumes", "quality")].metadata["samples"].value == {
        "has_version": [{"project_id": project, "job_id": 1, "version_id": 2}]}


def test_secrets_reach_the_resource_only_as_environment_variable_references():
    env = {"MODELARTS_ENDPOINT": "https://modelarts.cn-north-4.myhuaweicloud.com", "MODELARTS_TOKEN": "s3cret-token",
           "HUAWEICLOUD_SDK_AK": "AKID", "HUAWEICLOUD_SDK_SK": "s3cret-sk", "MODELARTS_CONCURRENCY": "4"}
    resource = ModelArtsResource.from_env(env)
    assert resource.token == dg.EnvVar("MODELARTS_TOKEN") and isinstance(resource.token, dg.EnvVar)
    assert isinstance(resource.secret_key, dg.EnvVar) and resource.iam_password is None  # unset: not referenced
    assert resource.concurrency == 4
    assert "s3cret" not in repr(resource)



def test_a_refused_token_fails_the_partition_with_one_readable_line(sim, resources, instance, monkeypatch):
    monkeypatch.setenv(TOKEN_VAR, "wrong")
    result = dg.materialize(EVERYTHING, partition_key=PROJECTS[0], resources=resources, instance=instance,
                            raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.user_failure_data
    assert "401" in error.description or "token" in error.description.lower()
    assert "wrong" not in error.description  # never the secret itself
    assert not Path(resources["warehouse"].folder).exists()  # and no empty warehouse left behind


def test_checks_read_while_a_writer_holds_the_lock(sim, resources, instance):
    """Readers take no lock: a check runs to the end while a sync (here: an open writer) holds it."""
    materialize(PROJECTS[0], resources, instance)
    with Warehouse(resources["warehouse"].folder, lock_timeout=0):
        result = dg.materialize(EVERYTHING, selection=dg.AssetSelection.all_asset_checks(), resources=resources,
                                instance=instance)
    assert result.success and len(result.get_asset_check_evaluations()) == CHECK_COUNT


def test_export_after_sync_is_off_by_default_and_does_nothing(sim, resources, instance, tmp_path):
    assert resources["warehouse"].export_parquet_dir is None
    result = materialize(PROJECTS[0], resources, instance)
    assert not materialized(result, "parquet_export")
    assert any(e.is_step_success and e.step_key == "modelarts__parquet_export" for e in result.all_events)  # ran, did nothing
    assert list(tmp_path.iterdir()) == [Path(resources["warehouse"].folder)]  # the lake, and no export beside it


def test_export_after_sync_writes_a_readable_export_of_the_latest_snapshot(sim, resources, instance, tmp_path,
                                                                          monkeypatch):
    dest = tmp_path / "export"
    monkeypatch.setenv(EXPORT_VAR, str(dest))
    resources = {**resources, "warehouse": WarehouseResource(folder=resources["warehouse"].folder,
                                                             export_parquet_dir=dg.EnvVar(EXPORT_VAR))}
    for project in PROJECTS:
        result = materialize(project, resources, instance)

    meta = metadata(result, "parquet_export")  # the second run's export: both projects
    con = db(resources)
    try:
        assert meta["snapshot_id"] == con.execute("SELECT max(snapshot_id) FROM loads").fetchone()[0]
        assert meta["row_counts"].keys() == schema.TABLES.keys()
        for table in schema.ALL_TABLES:
            stored = con.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()[0]
            assert meta["row_counts"][table.name] == stored, table.name
            exported = pd.read_parquet(dest / table.name)
            assert len(exported) == stored and list(exported.columns) == table.column_names, table.name
        assert meta["total_rows"] == sum(meta["row_counts"].values())
        versions = pd.read_parquet(dest / "job_versions")
        assert sorted(versions["project_id"].unique()) == PROJECTS
    finally:
        con.close()


def test_maintenance_merges_the_small_files_of_several_syncs(sim, resources, instance):
    for project in PROJECTS:
        materialize(project, resources, instance)
    sim.world.advance(6 * 3600, new_versions=2, new_jobs=1)
    materialize(PROJECTS[0], resources, instance)

    result = dg.materialize([lake_maintenance], resources={"warehouse": resources["warehouse"]}, instance=instance,
                            run_config={"ops": {"modelarts__lake_maintenance": {"config": {"retention_days": 0}}}})
    assert result.success
    meta = metadata(result, "lake_maintenance")
    assert meta["retention_days"] == 0
    assert meta["files_before"] > meta["files_after"] > 0
    assert meta["snapshots_expired"] > 0 and meta["files_deleted"] > 0
    assert meta["catalog_bytes"] > 0
    data = Path(resources["warehouse"].folder) / "data"
    assert len([p for p in data.rglob("*.parquet")]) == meta["files_after"]  # what the report says is on disk

    # the lake reads the same, and the checks still pass on it
    checks_after = dg.materialize(EVERYTHING, selection=dg.AssetSelection.all_asset_checks(), resources=resources,
                                  instance=instance)
    errors = {k for k, e in checks(checks_after).items() if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR}
    assert errors == set()


def test_maintenance_with_a_negative_retention_fails_with_one_readable_line(tmp_path, instance):
    warehouse = WarehouseResource(folder=str(tmp_path / "wh"))
    result = dg.materialize([lake_maintenance], resources={"warehouse": warehouse}, instance=instance,
                            run_config={"ops": {"modelarts__lake_maintenance": {"config": {"retention_days": -1}}}},
                            raise_on_error=False)
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "negative" in failure.step_failure_data.user_failure_data.description


def test_a_failing_error_check_blocks_the_export_downstream(sim, resources, instance, tmp_path, monkeypatch):
    monkeypatch.setenv(EXPORT_VAR, str(tmp_path / "export"))
    resources = {**resources, "warehouse": WarehouseResource(folder=resources["warehouse"].folder,
                                                             export_parquet_dir=dg.EnvVar(EXPORT_VAR))}
    materialize(PROJECTS[0], resources, instance)
    with Warehouse(resources["warehouse"].folder, source="test") as wh:
        wh.con.execute("INSERT INTO parameters SELECT * FROM parameters LIMIT 1")  # a duplicate key

    result = dg.materialize(EVERYTHING, partition_key=PROJECTS[0], resources=resources, instance=instance,
                            raise_on_error=False)
    assert not result.success
    assert not checks(result)[("parameters", "quality")].passed
    assert not materialized(result, "parquet_export")
    assert not any(e.is_step_success and e.step_key == "modelarts__parquet_export" for e in result.all_events)


def test_one_table_materializes_alone_and_reports_only_itself(sim, resources, instance):
    project = PROJECTS[0]
    dg.materialize(EVERYTHING, selection=[key("raw_payloads")], partition_key=project, resources=resources,
                   instance=instance)
    result = dg.materialize(EVERYTHING, selection=[key("job_versions")], partition_key=project,
                            resources=resources, instance=instance)
    assert [e.materialization.asset_key for e in result.get_asset_materialization_events()] == [key("job_versions")]
    truth = sim.world.truth(project)
    rejected = {(t.job_id, t.version_id) for t in truth if REJECTING_FAULTS & set(t.faults)}
    assert metadata(result, "job_versions")["dagster/row_count"] == len(truth) - len(rejected)


def test_one_check_executes_alone_against_what_is_stored(sim, resources, instance):
    materialize(PROJECTS[0], resources, instance)
    check = dg.AssetCheckKey(key("volumes"), "quality")
    result = dg.materialize(EVERYTHING, selection=dg.AssetSelection.checks(check), resources=resources,
                            instance=instance)
    assert list(checks(result)) == [("volumes", "quality")]
    assert result.get_asset_materialization_events() == []
    assert checks(result)[("volumes", "quality")].passed
    assert rule_counts(checks(result)[("volumes", "quality")]) == {"unique_key": 0, "has_version": 0}
