"""Issue 13 item 10: a job_total_count of 10**12 for 30 jobs costs a few pages and a warning, not 65,535 pages."""
from __future__ import annotations

import time

from pipelines.modelarts.auth import StaticToken
from pipelines.modelarts.retry import RetryPolicy
from pipelines.modelarts.simulator import SimulatorServer, World
from pipelines.modelarts.simulator.hostile import OVERSTATED_TOTAL, Hostile
from pipelines.modelarts.sync import Target, sync_projects
from warehouse.store import Warehouse

TOKEN = "overstated-token"


def test_an_overstated_job_total_stops_after_a_few_empty_pages_with_a_warning(tmp_path):
    world = World(jobs=30, versions_per_job=1, seed=10)
    with SimulatorServer(world, token=TOKEN, page_cap=10, hostile=Hostile("overstated_total")) as sim, \
            Warehouse.open(tmp_path / "wh") as wh:
        started = time.monotonic()
        report = sync_projects(wh, [Target(sim.url, world.project_ids[0])], StaticToken(TOKEN), per_page=10,
                               concurrency=8, retry=RetryPolicy(max_retries=0))
        elapsed = time.monotonic() - started
        job_pages = sim.counts["job_list"]
        stored = set(wh.version_states(world.project_ids[0]))
    project = report.projects[0]
    assert job_pages <= 1 + 8 + 3  # page 1, one window of 8, at most one more run of empty pages
    assert elapsed < 10
    assert stored == {(t.job_id, t.version_id) for t in world.truth()}  # every job still synced
    assert len(project.gaps) == 1 and f"the server says {OVERSTATED_TOTAL}, 30 jobs found" in project.gaps[0]
    assert "empty pages in a row" in project.gaps[0]
