"""v2 jobs' secrets never reach a tidy table, a Parquet file of one, the CLI's output or Dagster metadata.

The simulator plants them (V2World(secret_share=...)): endpoint tokens (jupyter_lab, tensorboard) and a
token in an endpoint URL's query, a parameter marked `sensitive`, `--password=` in algorithm.command,
a HF_TOKEN environment variable, and a user in an ssh URL. raw_payloads keeps them, byte for byte,
by design (as for v1). Searched as in tests/test_secrets.py: every decoded value of every table.
"""
from __future__ import annotations

import subprocess
import sys

from test_secrets import CLEAN_ENV, NO_CREDENTIALS, TOKEN, files_containing, parquet_containing, \
    raw_payload_bodies, tables_containing

from conftest import rows
from pipelines.modelarts.simulator import SimulatorServer, World
from pipelines.modelarts.simulator.v2_world import DEFAULT_V2_PROJECT_ID as PROJECT, V2World
from warehouse.redact import MASK, redact_url


def _world() -> V2World:
    world = V2World(jobs=12, seed=21, secret_share=0.6, payload_fault_rate=0.3,
                    payload_faults=("unknown_fields", "wrong_types"))
    for job in world.truth():
        world.payload(PROJECT, job.job_id)  # generate every payload now, so `planted` is complete
    return world


def _cli_sync(url: str, warehouse, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "sync", "--endpoint", url, "--project-id", PROJECT,
         "--warehouse", str(warehouse), "--rate", "0", "--retries", "1", "--api", "v2", *extra],
        capture_output=True, text=True, env={**CLEAN_ENV, **NO_CREDENTIALS, "MODELARTS_TOKEN": TOKEN}, timeout=120)


def test_v2_secrets_reach_no_tidy_table_and_no_output(tmp_path):
    world = _world()
    planted = sorted(world.planted)
    assert len(planted) >= 12
    wh = tmp_path / "wh"
    with SimulatorServer(World(jobs=1), token=TOKEN, v2=world) as sim:
        done = _cli_sync(sim.url, wh)
    assert done.returncode == 0, done.stderr
    assert [s for s in planted if s in done.stdout + done.stderr] == []
    assert tables_containing(wh, planted, skip=("raw_payloads",)) == []
    assert parquet_containing(wh, planted, skip=("raw_payloads",)) == []
    raw = raw_payload_bodies(wh)
    assert all(s.encode() in raw for s in planted)  # raw keeps the exact bytes, by design
    assert files_containing(wh, [TOKEN]) == []
    masked = rows(wh, "SELECT count(*) FROM v2_jobs WHERE jupyter_lab_token = ? AND tensorboard_token = ?",
                  [MASK, MASK])[0][0]
    assert masked >= 5
    assert rows(wh, "SELECT count(*) FROM v2_parameters WHERE sensitive AND value <> ?", [MASK]) == [(0,)]
    assert rows(wh, "SELECT count(*) FROM v2_parameters WHERE name = 'learning_rate' AND value = ?", [MASK]) == [(0,)]


def test_keep_secrets_keeps_them_in_v2_tidy_tables(tmp_path):
    world = _world()
    wh = tmp_path / "wh"
    with SimulatorServer(World(jobs=1), token=TOKEN, v2=world) as sim:
        done = _cli_sync(sim.url, wh, "--keep-secrets")
    assert done.returncode == 0, done.stderr
    assert tables_containing(wh, sorted(world.planted), skip=("raw_payloads",)) != []


def test_url_credentials_are_masked():
    assert redact_url("https://jl.example.com/lab?token=abc&x=1") == f"https://jl.example.com/lab?token={MASK}&x=1"
    assert redact_url("https://me:hunter2@git.example.com/r.git") == f"https://me:{MASK}@git.example.com/r.git"
    assert redact_url("obs://bucket/data/?page=2") == "obs://bucket/data/?page=2"


def test_a_dagster_materialization_of_a_v2_project_leaks_nothing(tmp_path, monkeypatch):
    import dagster as dg

    from assets.extract import raw_payloads
    from assets.tables import derive_tables
    from pipelines.resources import ModelArtsResource, WarehouseResource

    project = "proj-a"  # one of the partitions tests/conftest.py pins for Dagster
    world = V2World(projects=(project,), jobs=12, seed=21, secret_share=0.6)
    for job in world.truth():
        world.payload(project, job.job_id)
    planted = sorted(world.planted)
    home, wh = tmp_path / "dagster_home", tmp_path / "wh"
    home.mkdir()
    monkeypatch.setenv("SECRET_TEST_TOKEN", TOKEN)
    with SimulatorServer(World(projects=[project], jobs=1), token=TOKEN, v2=world) as sim, \
            dg.instance_for_test(temp_dir=str(home)) as instance:
        modelarts = ModelArtsResource(endpoint=sim.url, project_ids=[project], rate=0, max_retries=1,
                                      token=dg.EnvVar("SECRET_TEST_TOKEN"), api="both")
        result = dg.materialize([raw_payloads, derive_tables], partition_key=project, instance=instance,
                                resources={"modelarts": modelarts, "warehouse": WarehouseResource(folder=str(wh))})
        assert result.success
        events = "\n".join(repr(e) for e in instance.all_logs(result.run_id))
    assert rows(wh, "SELECT count(*) FROM v2_jobs") == [(12,)]
    assert [s for s in planted + [TOKEN] if s in events] == []
    assert files_containing(home, planted + [TOKEN]) == []  # run storage, event logs, compute logs
    assert tables_containing(wh, planted, skip=("raw_payloads",)) == []
