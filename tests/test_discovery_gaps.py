"""Issue 13 item 4: a listing with a hole in it, or one that ignores `page`, is paged past, and what is
still missing is a reported gap, never a silent success. Real HTTP against the simulator's hostile modes."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from pipelines.cli_sync import sync as sync_command
from pipelines.modelarts.auth import StaticToken
from pipelines.modelarts.retry import RetryPolicy
from pipelines.modelarts.simulator import SimulatorServer, World
from pipelines.modelarts.simulator.hostile import Hostile
from pipelines.modelarts.sync import Target, sync_projects
from warehouse.store import Warehouse

TOKEN = "gap-token"
PAGE_2 = r"[?&]page=2(&|$)"


@pytest.fixture
def wh(tmp_path):
    with Warehouse.open(tmp_path / "wh") as warehouse:
        yield warehouse


def _sync(wh, sim, per_page):
    return sync_projects(wh, [Target(sim.url, sim.world.project_ids[0])], StaticToken(TOKEN), per_page=per_page,
                         concurrency=4, retry=RetryPolicy(max_retries=0))


def _truth(world):
    return {(t.job_id, t.version_id) for t in world.truth()}


def test_an_empty_job_list_page_mid_listing_is_paged_past_reported_as_a_gap_and_listed_again(wh):
    world = World(jobs=30, versions_per_job=2, seed=4)
    hole = Hostile("empty_page", match=r"/training-jobs\?.*" + PAGE_2)
    with SimulatorServer(world, token=TOKEN, page_cap=10, hostile=hole) as sim:
        report = _sync(wh, sim, per_page=10)
    project = report.projects[0]
    assert project.jobs == 20  # pages 1 and 3: page 3 was read although page 2 was empty
    assert len(project.gaps) == 1 and "the server says 30, 20 jobs found" in project.gaps[0]
    assert not report.complete and report.ok
    assert "INCOMPLETE" in project.line() and "INCOMPLETE" in report.summary()
    assert len(wh.version_states(world.project_ids[0])) == 40
    with SimulatorServer(world, token=TOKEN, page_cap=10) as sim:  # the server healed: the next sync lists all
        again = _sync(wh, sim, per_page=10)
    assert again.complete and set(wh.version_states(world.project_ids[0])) == _truth(world)


def _missed_on_page_2(world, size):
    """Versions on page 2 of each job's newest-first versions list."""
    return {(t.job_id, t.version_id) for job in {t.job_id for t in world.truth()}
            for t in sorted((t for t in world.truth() if t.job_id == job), key=lambda t: -t.version_id)[size:2 * size]}


def test_an_empty_versions_page_mid_listing_is_paged_past_and_each_short_job_is_a_gap(wh):
    world = World(jobs=6, versions_per_job=(7, 9), seed=5)
    hole = Hostile("empty_page", match=r"/versions\?.*" + PAGE_2)
    with SimulatorServer(world, token=TOKEN, page_cap=3, hostile=hole) as sim:
        report = _sync(wh, sim, per_page=3)
    project = report.projects[0]
    stored = set(wh.version_states(world.project_ids[0]))
    assert stored == _truth(world) - _missed_on_page_2(world, 3)  # pages 3 and on were listed and fetched
    assert len(project.gaps) == 6 and all("version list of job" in g and "3 empty pages in a row" in g
                                          for g in project.gaps)
    assert not report.complete
    with SimulatorServer(world, token=TOKEN, page_cap=3) as sim:
        again = _sync(wh, sim, per_page=3)
    assert again.complete and set(wh.version_states(world.project_ids[0])) == _truth(world)


def test_a_versions_list_that_repeats_page_1_is_detected_by_its_ids_and_is_a_gap(wh):
    world = World(jobs=5, versions_per_job=(4, 6), seed=6)
    with SimulatorServer(world, token=TOKEN, page_cap=3, hostile=Hostile("repeat_page", match=r"/versions\?")) as sim:
        report = _sync(wh, sim, per_page=3)
        version_pages = sim.counts["version_list"]
    project = report.projects[0]
    assert version_pages == 2 * 5  # page 1, then page 2 repeats it: stop
    assert len(project.gaps) == 5 and all("page 2 repeated earlier versions only" in g for g in project.gaps)
    assert len(wh.version_states(world.project_ids[0])) == 5 * 3


def test_the_sync_command_prints_every_gap_and_says_incomplete(tmp_path):
    world = World(jobs=12, versions_per_job=1, seed=7)
    hole = Hostile("empty_page", match=r"/training-jobs\?.*" + PAGE_2)
    with SimulatorServer(world, token=TOKEN, page_cap=5, hostile=hole) as sim:
        env = {"MODELARTS_TOKEN": TOKEN, "MODELARTS_ENDPOINT": sim.url, "MODELARTS_PROJECT_ID": world.project_ids[0]}
        result = CliRunner().invoke(sync_command, ["--warehouse", str(tmp_path / "w"), "--per-page", "5", "--rate",
                                                   "0", "--retries", "0"], env=env)
    assert result.exit_code == 0, result.output
    assert "gap: job list of project" in result.output and "the server says 12, 7 jobs found" in result.output
    assert "INCOMPLETE" in result.output
