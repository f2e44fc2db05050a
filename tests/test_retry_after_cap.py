"""Issue 13 item 11: a Retry-After past the cap is not waited for; that version is left for the next sync,
reported as not fetched, and the rest of the sync goes on. Real HTTP against the simulator's 429s."""
from __future__ import annotations

import time

from click.testing import CliRunner

from pipelines.cli_sync import sync as sync_command
from pipelines.modelarts.auth import StaticToken
from pipelines.modelarts.retry import RetryPolicy
from pipelines.modelarts.simulator import SimulatorServer, TransientFaults, World
from pipelines.modelarts.sync import Target, sync_projects
from warehouse.store import Warehouse

TOKEN = "retry-after-token"
A_DAY = 86400


def _a_day_for_one_version(world):
    victim = world.truth()[3]
    faults = TransientFaults(rate=1.0, kinds=("throttle",), retry_after=A_DAY,
                             match=rf"/versions/{victim.version_id}$")
    return victim, faults


def test_one_version_told_to_wait_a_day_is_left_for_the_next_sync_and_the_rest_goes_on(tmp_path):
    world = World(jobs=30, versions_per_job=1, seed=11)
    victim, faults = _a_day_for_one_version(world)
    pid = world.project_ids[0]
    with Warehouse.open(tmp_path / "wh") as wh:
        with SimulatorServer(world, token=TOKEN, faults=faults) as sim:
            started = time.monotonic()
            report = sync_projects(wh, [Target(sim.url, pid)], StaticToken(TOKEN), concurrency=4,
                                   retry=RetryPolicy(max_retries=2, backoff_base=0.01, retry_after_max=3))
            elapsed = time.monotonic() - started
        project = report.projects[0]
        assert elapsed < 3  # not even the cap is waited: the answer says a day
        assert report.ok and project.fetched == 29 and project.failed == 1
        assert str(victim.version_id) in project.failures[0] and f"retry after {A_DAY} s" in project.failures[0]
        assert (victim.job_id, victim.version_id) not in wh.version_states(pid)
        assert len(wh.version_states(pid)) == 29
        with SimulatorServer(world, token=TOKEN) as sim:  # the throttling is over
            again = sync_projects(wh, [Target(sim.url, pid)], StaticToken(TOKEN), concurrency=4)
        assert again.projects[0].fetched >= 1 and (victim.job_id, victim.version_id) in wh.version_states(pid)


def test_a_retry_after_within_the_cap_is_still_honoured(tmp_path):
    world = World(jobs=2, versions_per_job=1, seed=12)
    victim = world.truth()[0]
    faults = TransientFaults(rate=1.0, kinds=("throttle",), retry_after=1, max_per_path=1,
                             match=rf"/versions/{victim.version_id}$")
    with Warehouse.open(tmp_path / "wh") as wh, SimulatorServer(world, token=TOKEN, faults=faults) as sim:
        started = time.monotonic()
        report = sync_projects(wh, [Target(sim.url, world.project_ids[0])], StaticToken(TOKEN),
                               retry=RetryPolicy(max_retries=2, retry_after_max=5))
        assert time.monotonic() - started >= 1.0
    assert report.projects[0].fetched == 2 and report.projects[0].failed == 0


def test_the_cap_is_a_sync_option_and_an_environment_variable(tmp_path):
    world = World(jobs=8, versions_per_job=1, seed=13)
    victim, faults = _a_day_for_one_version(world)
    with SimulatorServer(world, token=TOKEN, faults=faults) as sim:
        env = {"MODELARTS_TOKEN": TOKEN, "MODELARTS_ENDPOINT": sim.url, "MODELARTS_PROJECT_ID": world.project_ids[0]}
        flag = CliRunner().invoke(sync_command, ["--warehouse", str(tmp_path / "a"), "--rate", "0",
                                                 "--max-retry-after", "2"], env=env)
        from_env = CliRunner().invoke(sync_command, ["--warehouse", str(tmp_path / "b"), "--rate", "0"],
                                      env=dict(env, MODELARTS_MAX_RETRY_AFTER="2"))
    for result in (flag, from_env):
        assert result.exit_code == 0, result.output
        assert "failed 1 (fetched again next sync)" in result.output
        assert f"not fetched: job {victim.job_id} version {victim.version_id}: HTTP 429 asked to retry after " \
               f"{A_DAY} s, longer than the 2 s cap" in result.output


def test_the_dagster_resource_has_the_cap_from_the_environment():
    from pipelines.resources import ModelArtsResource

    assert ModelArtsResource.from_env({"MODELARTS_MAX_RETRY_AFTER": "7"}).max_retry_after_s == 7.0
    assert ModelArtsResource().max_retry_after_s == 60.0
