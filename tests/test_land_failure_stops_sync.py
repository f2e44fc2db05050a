"""Issue 13 item 7: an error while landing (disk full) ends the sync at once, its fetch threads stopped."""
from __future__ import annotations

import errno
import threading
import time

import pytest

from pipelines.modelarts.auth import StaticToken
from pipelines.modelarts.retry import RetryPolicy
from pipelines.modelarts.simulator import SimulatorServer, World
from pipelines.modelarts.sync import Target, sync_projects
from warehouse.store import Warehouse

TOKEN = "land-failure-token"


class DiskFullAfter:
    """A real warehouse writer whose disk fills up after `n` records have reached it."""

    def __init__(self, wh: Warehouse, n: int):
        self._wh, self._n = wh, n

    def version_states(self, project_id):
        return self._wh.version_states(project_id)

    def mark_deleted_upstream(self, *args, **kwargs):
        return self._wh.mark_deleted_upstream(*args, **kwargs)

    def land(self, records, **kwargs):
        def counted():
            for n, record in enumerate(records):
                if n >= self._n:
                    raise OSError(errno.ENOSPC, "No space left on device")
                yield record
        return self._wh.land(counted(), **kwargs)


def _fetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("fetch", "list", "jobs")) and t.is_alive()]


@pytest.mark.parametrize("fail_after", [3, 60], ids=["while-listing", "while-fetching-details"])
def test_a_landing_error_ends_the_sync_within_seconds_and_stops_every_fetch_thread(tmp_path, fail_after):
    world = World(jobs=40, versions_per_job=3, seed=13)
    with SimulatorServer(world, token=TOKEN, page_cap=5) as sim, Warehouse.open(tmp_path / "wh") as wh:
        started = time.monotonic()
        with pytest.raises(OSError, match="No space left") as failure:  # held, as a caller reporting it would
            sync_projects(DiskFullAfter(wh, fail_after), [Target(sim.url, world.project_ids[0])], StaticToken(TOKEN),
                          concurrency=8, per_page=5, land_batch=5, retry=RetryPolicy(max_retries=0))
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + 1.0
        while _fetch_threads() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _fetch_threads() == [], failure.value
        assert elapsed < 10

