"""Incremental v2 syncs: final jobs are never fetched again (nor their metrics and events), jobs that are
not final are, new jobs are found by the create_time filter, and a sync with nothing new makes search
calls only. Real HTTP against the simulator, a real lake on disk."""
from __future__ import annotations

from conftest import rows
from pipelines.modelarts.auth import StaticToken
from pipelines.modelarts.retry import RetryPolicy
from pipelines.modelarts.simulator import TransientFaults
from pipelines.modelarts.simulator import SimulatorServer, World
from pipelines.modelarts.simulator.v2_world import DEFAULT_V2_PROJECT_ID as PROJECT, V2World
from pipelines.modelarts.sync import Target, sync_projects
from warehouse.store import Warehouse


def _sync(sim, wh):
    sim.reset_counts()
    report = sync_projects(wh, [Target(sim.url, PROJECT)], StaticToken("t"), api="v2", concurrency=4)
    return report, dict(sim.counts), list(sim.targets)


def _jobs_requested(targets) -> set[str]:
    return {t.split("/training-jobs/")[1].split("/")[0].split("?")[0] for t in targets if "/training-jobs/" in t}


def test_a_rerun_with_nothing_new_makes_search_calls_only(wh_dir):
    world = V2World(jobs=12, seed=11, running_share=0.4, page_cap=5)
    with SimulatorServer(World(jobs=1), token="t", v2=world) as sim, Warehouse.open(wh_dir) as wh:
        report, counts, _ = _sync(sim, wh)
        assert report.fetched == 12 and counts["v2_job_detail"] == 12
        running = {t.job_id for t in world.truth() if not t.is_final}
        final = {t.job_id for t in world.truth() if t.is_final}
        assert running and final

        report, counts, targets = _sync(sim, wh)  # nothing finished: the running jobs are polled again
        assert _jobs_requested(targets) == running
        assert counts["v2_job_detail"] == len(running) and report.skipped_final <= len(final)  # older ones: not searched

        world.finish_all()
        _, _, targets = _sync(sim, wh)  # they finish: fetched once more, with their metrics and events
        assert _jobs_requested(targets) == running
        assert rows(wh_dir, "SELECT count(*) FROM v2_jobs WHERE NOT is_final") == [(0,)]

        report, counts, targets = _sync(sim, wh)  # nothing new
        assert set(counts) == {"v2_job_search"} and counts["v2_job_search"] == 1
        assert report.fetched == 0 and not _jobs_requested(targets)

        world.advance(600, new_jobs=2)
        new = {t.job_id for t in world.truth()} - running - final
        report, counts, targets = _sync(sim, wh)  # found by the create_time filter
        assert _jobs_requested(targets) == new and counts["v2_job_detail"] == 2
        assert counts["v2_job_search"] == 1
    assert rows(wh_dir, "SELECT count(*) FROM v2_jobs") == [(14,)]
    assert rows(wh_dir, "SELECT count(*) FROM runs WHERE api_version = 'v2'") == [(14,)]


def test_a_job_whose_detail_was_refused_is_searched_and_fetched_again(wh_dir):
    world = V2World(jobs=6, seed=12, running_share=0.0)
    victim = sorted(world.truth(), key=lambda t: t.job_id)[0].job_id
    faults = TransientFaults(rate=1.0, kinds=("server_error",), match=f"/training-jobs/{victim}$")
    with SimulatorServer(World(jobs=1), token="t", v2=world, faults=faults) as sim, Warehouse.open(wh_dir) as wh:
        report = sync_projects(wh, [Target(sim.url, PROJECT)], StaticToken("t"), api="v2",
                               retry=RetryPolicy(max_retries=1, backoff_base=0.01, backoff_max=0.02), raise_on_error=False)
        assert report.projects[0].rejected == 1  # the victim's answer was a 500 after every retry: landed, rejected
        assert rows(wh_dir, "SELECT count(*) FROM v2_jobs WHERE training_job_id = ?", [victim]) == [(0,)]
        sim.faults = TransientFaults()
        _, counts, targets = _sync(sim, wh)
        assert victim in _jobs_requested(targets) and counts["v2_job_detail"] == 1
    assert rows(wh_dir, "SELECT count(*) FROM v2_jobs") == [(6,)]
