"""The v2 job search pages correctly whichever way the server reads `offset`, and never loops.

Against the simulator over real HTTP: a page-number server and a record-offset server
(the two readings of the docs), each capping pages below the limit asked for, and a
broken server that answers every offset with the first page.
"""
from __future__ import annotations

import pytest

from pipelines.modelarts.auth import StaticToken
from pipelines.modelarts.client import ModelArtsClient
from pipelines.modelarts.simulator import SimulatorServer, World
from pipelines.modelarts.simulator.v2_world import DEFAULT_V2_PROJECT_ID as PROJECT, V2World
from pipelines.modelarts.v2.discovery import PAGE, RECORD, Search, search_jobs


def _search(world: V2World, *, limit: int = 50, created_from: int | None = None):
    with SimulatorServer(World(jobs=1), token="t", v2=world) as sim, \
            ModelArtsClient(sim.url, StaticToken("t")) as client:
        found = Search(PROJECT)
        records = list(search_jobs(client, PROJECT, limit=limit, created_from=created_from, found=found))
        assert found.error is None, found.error
        return found, records, sim.counts["v2_job_search"]


def _truth_order(world: V2World, created_from: int | None = None) -> list[str]:
    jobs = sorted(world._jobs[PROJECT].values(), key=lambda j: (j.create_ms, j.job_id))
    return [j.job_id for j in jobs if created_from is None or j.create_ms >= created_from]


@pytest.mark.parametrize("reading", ["page", "record"])
@pytest.mark.parametrize("cap", [7, 50])
def test_every_job_exactly_once_under_either_offset_reading(reading, cap):
    world = V2World(jobs=23, seed=3, offset_reading=reading, page_cap=cap)
    found, records, requests = _search(world)
    assert list(found.jobs) == _truth_order(world)  # none skipped, none twice, in creation order
    assert found.reading == (PAGE if reading == "page" else RECORD) or cap >= 23
    assert len(records) == requests == found.pages  # every page landed raw
    pages = -(-23 // cap)
    assert requests <= pages + 2  # the probe, and one empty page at most
    assert not found.warnings


@pytest.mark.parametrize("reading", ["page", "record"])
def test_one_job_a_page_is_the_same_under_both_readings(reading):
    world = V2World(jobs=5, seed=4, offset_reading=reading, page_cap=1)
    found, _, requests = _search(world, limit=1)
    assert list(found.jobs) == _truth_order(world)
    assert requests <= 6


def test_a_server_that_repeats_its_first_page_does_not_loop():
    world = V2World(jobs=23, seed=5, repeat_page=True, page_cap=7)
    found, _, requests = _search(world)
    assert list(found.jobs) == _truth_order(world)[:7]
    assert requests == 2
    assert any("repeated earlier jobs only" in w for w in found.warnings)


@pytest.mark.parametrize("reading", ["page", "record"])
def test_the_create_time_filter_finds_only_newer_jobs(reading):
    world = V2World(jobs=23, seed=6, offset_reading=reading, page_cap=4)
    since = sorted(j.create_ms for j in world._jobs[PROJECT].values())[15]
    found, _, _ = _search(world, created_from=since)
    assert list(found.jobs) == _truth_order(world, since) and len(found.jobs) == 8


class _EvilIds(V2World):
    """A search that also lists entries whose ids are not UUIDs: paths, quotes, SQL, numbers, objects."""

    def search(self, project_id, offset, limit, created_from):
        page = super().search(project_id, offset, limit, created_from)
        if offset == 0:
            from pipelines.modelarts.simulator.hostile import EVIL_IDS

            page["items"] = [{"metadata": {"id": value}} for value in EVIL_IDS] + page["items"]
        return page


def test_ids_that_are_not_uuids_never_enter_a_request(wh_dir):
    from pipelines.modelarts.sync import Target, sync_projects
    from warehouse.store import Warehouse

    world = _EvilIds(jobs=4, seed=7)
    with SimulatorServer(World(jobs=1), token="t", v2=world) as sim, Warehouse.open(wh_dir) as wh:
        report = sync_projects(wh, [Target(sim.url, PROJECT)], StaticToken("t"), api="v2")
        targets = list(sim.targets)
    assert report.projects[0].fetched == 4
    assert all("/training-jobs/" not in t or any(j in t for j in world._jobs[PROJECT]) for t in targets), targets
    assert any("without a usable job id" in w for w in report.projects[0].warnings)


@pytest.mark.parametrize("bad", ["../../etc", "3faf5c03-aaa1-4cbe-879d-24b05d99734", "x" * 36, 12, None])
def test_the_client_refuses_a_job_id_that_is_not_a_uuid(bad):
    from pipelines.modelarts.errors import ApiError
    from pipelines.modelarts.v2 import api

    with pytest.raises(ApiError, match="not a v2 job id"):
        api.job_segment(bad)
    with pytest.raises(ApiError, match="not a task id"):
        api.task_segment("../worker-0")


def test_the_search_post_is_signed_with_its_body_under_aksk():
    from pipelines.modelarts.auth import AkSk

    world = V2World(jobs=3, seed=8)
    with SimulatorServer(World(jobs=1), aksk=("AKTEST", "SKTEST"), v2=world) as sim, \
            ModelArtsClient(sim.url, AkSk("AKTEST", "SKTEST")) as client:
        found = Search(PROJECT)
        list(search_jobs(client, PROJECT, limit=50, created_from=None, found=found))
        assert found.error is None and len(found.jobs) == 3
        found = Search(PROJECT)
        list(search_jobs(ModelArtsClient(sim.url, AkSk("AKTEST", "WRONG")), PROJECT, limit=50, created_from=None,
                         found=found))
        assert found.error is not None and "rejected the credentials" in str(found.error)
