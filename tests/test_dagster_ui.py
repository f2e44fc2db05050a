"""The Dagster UI as a user runs it: `dg dev` on loopback, driven through its GraphQL API.

What the UI's buttons do, for real: "Materialize" on one asset of one partition,
"Execute" on one check, and a backfill over two partitions, each checked in the
warehouse afterwards. The runs go through the daemon's queue and a run worker
process, as in any deployment.
"""
import os

import pytest

from pipelines.dagster_ui import DagsterUI
from pipelines.demo import DAGSTER_YAML
from pipelines.modelarts.simulator import SimulatorServer, World
from warehouse import connect

PROJECTS = ["proj-a", "proj-b"]
TOKEN = "ui-t0k"
RAW = ["modelarts", "raw_payloads"]
JOB_VERSIONS = ["modelarts", "job_versions"]
SYNC_ASSETS = [RAW] + [["modelarts", t] for t in (
    "job_versions", "jobs", "parameters", "data_sources", "class_metrics", "system_metric_samples", "volumes",
    "rejected_payloads", "field_issues")]


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    world = World(projects=PROJECTS, jobs=4, versions_per_job=(1, 3), seed=21)
    with SimulatorServer(world, token=TOKEN) as sim:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELARTS_", "HUAWEICLOUD_"))}
        env.update(DAGSTER_HOME=str(home), MODELARTS_ENDPOINT=sim.url, MODELARTS_TOKEN=TOKEN,
                   MODELARTS_PROJECT_IDS=",".join(PROJECTS), MODELARTS_WAREHOUSE=str(tmp / "wh"),
                   MODELARTS_RATE="0")
        with DagsterUI(env, log=tmp / "dg-dev.log") as server:
            server.sim, server.warehouse = sim, tmp / "wh"
            yield server


def _versions(ui, project) -> set[tuple[int, int]]:
    with connect(ui.warehouse) as con:
        return set(con.execute("SELECT job_id, version_id FROM job_versions WHERE project_id = ?",
                               [project]).fetchall())


def _truth(ui, project) -> set[tuple[int, int]]:
    return {(t.job_id, t.version_id) for t in ui.sim.world.truth(project)}


def test_one_asset_of_one_partition_materializes_alone(ui):
    assert ui.wait_run(ui.launch(assets=[RAW], partition="proj-a")) == "SUCCESS"
    with connect(ui.warehouse) as con:
        landed = con.execute("SELECT count(*) FROM raw_payloads WHERE project_id = 'proj-a' "
                             "AND kind = 'version_detail'").fetchone()[0]
    assert landed == len(_truth(ui, "proj-a"))
    ui.wait_idle()  # the automation sensor may derive the tables now: eager on a new landing

    assert ui.wait_run(ui.launch(assets=[JOB_VERSIONS], partition="proj-a")) == "SUCCESS"
    assert _versions(ui, "proj-a") == _truth(ui, "proj-a")


def test_every_check_can_execute_alone_and_one_does(ui):
    checks = ui.checks(JOB_VERSIONS)
    assert set(checks) == {"quality", "columns_match_contract"}
    assert set(checks.values()) == {"CAN_EXECUTE"}

    run_id = ui.launch(checks=[(JOB_VERSIONS, "quality")])
    assert ui.wait_run(run_id) == "SUCCESS"
    executions = ui.query("""query { assetCheckExecutions(assetKey: {path: ["modelarts", "job_versions"]},
                                    checkName: "quality", limit: 1) { runId evaluation { success } } }""")
    (latest,) = executions["assetCheckExecutions"]
    assert latest["runId"] == run_id and latest["evaluation"]["success"] is True


def test_a_two_partition_backfill_fills_both_projects(ui):
    backfill = ui.wait_backfill(ui.backfill(SYNC_ASSETS, PROJECTS))
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    ui.wait_idle()
    for project in PROJECTS:
        assert _versions(ui, project) == _truth(ui, project)
