"""The Dagster warehouse resource: one connection per run, lent to its steps in turn.

Real parts: a DuckLake on disk, real Warehouse writers. The resource is used as a run's
steps use it (writer, then reader, then writer), and its teardown as Dagster calls it.
"""
import json

import dagster as dg
import pytest

from pipelines.resources import WarehouseResource
from pipelines.modelarts.records import RawRecord
from warehouse.store import Warehouse, WarehouseBusy

PROJECT = "proj1"


def _body(seed_bytes: bytes, job_id: int, version_id: int) -> bytes:
    payload = json.loads(seed_bytes)
    payload.update(job_id=job_id, version_id=version_id)
    return json.dumps(payload).encode()


def _land(wh: Warehouse, seed_bytes: bytes, job_id: int, versions: range) -> None:
    wh.land([RawRecord(body=_body(seed_bytes, job_id, v), project_id=PROJECT, source=f"test:{job_id}:{v}")
             for v in versions])


def _versions(con) -> int:
    return con.execute("SELECT count(*) FROM job_versions").fetchone()[0]


@pytest.fixture
def resource(wh_dir):
    res = WarehouseResource(folder=str(wh_dir), lock_timeout_s=0)
    yield res
    res.teardown_after_execution(dg.build_init_resource_context())


def test_the_steps_of_a_run_share_one_attached_connection(resource, seed_bytes):
    with resource.writer(projects=[PROJECT]) as wh:
        _land(wh, seed_bytes, 1, range(1, 3))
        first = wh.con
    with resource.reader() as con:
        assert _versions(con) == 2  # the writer's commit, read on a cursor of its connection
    with resource.writer(projects=[PROJECT]) as wh:
        assert wh.con is first  # no second attach
        _land(wh, seed_bytes, 1, range(3, 4))
    with resource.reader() as con:
        assert _versions(con) == 3


def test_a_reused_connection_sees_what_another_process_committed_meanwhile(resource, seed_bytes, wh_dir):
    with resource.writer(projects=[PROJECT]) as wh:
        _land(wh, seed_bytes, 1, range(1, 3))
    with Warehouse(wh_dir) as other:  # the CLI, between two steps of the run
        _land(other, seed_bytes, 2, range(1, 4))
    with resource.writer(projects=[PROJECT]) as wh:
        assert len(wh.version_states(PROJECT)) == 5
        _land(wh, seed_bytes, 2, range(1, 4))  # already stored: nothing new lands, nothing doubles
        assert wh.con.execute("SELECT count(*) FROM raw_payloads WHERE kind = 'version_detail'").fetchone()[0] == 5
    with resource.reader() as con:
        assert _versions(con) == 5


def test_a_reader_sees_one_snapshot_for_all_its_queries(resource, seed_bytes, wh_dir):
    with resource.writer(projects=[PROJECT]) as wh:
        _land(wh, seed_bytes, 1, range(1, 3))
    with resource.reader() as con:
        assert _versions(con) == 2
        with Warehouse(wh_dir) as other:
            _land(other, seed_bytes, 2, range(1, 2))
        assert _versions(con) == 2  # a check step scores every table at the same snapshot
    with resource.reader() as con:
        assert _versions(con) == 3


def test_a_failed_writer_hands_no_connection_on(resource, seed_bytes, wh_dir):
    with resource.writer(projects=[PROJECT]) as wh:
        _land(wh, seed_bytes, 1, range(1, 2))
        kept = wh.con
    with pytest.raises(RuntimeError):
        with resource.writer(projects=[PROJECT]) as wh:
            assert wh.con is kept
            raise RuntimeError("a step failed")
    with Warehouse(wh_dir, lock_timeout=0):
        pass  # the failed step released the lock
    with resource.writer(projects=[PROJECT]) as wh:
        assert wh.con is not kept
        assert _versions(wh.con) == 1


def test_a_writer_that_cannot_take_the_lock_leaves_the_run_a_fresh_connection(resource, seed_bytes, wh_dir):
    with resource.writer(projects=[PROJECT]) as wh:
        _land(wh, seed_bytes, 1, range(1, 2))
    with Warehouse(wh_dir):  # another writer holds the lock
        with pytest.raises(WarehouseBusy):
            with resource.writer(projects=[PROJECT]):
                pass
    with resource.writer(projects=[PROJECT]) as wh:
        assert _versions(wh.con) == 1


def test_teardown_closes_the_run_connection(resource, seed_bytes):
    with resource.writer(projects=[PROJECT]) as wh:
        _land(wh, seed_bytes, 1, range(1, 2))
        con = wh.con
    resource.teardown_after_execution(dg.build_init_resource_context())
    with pytest.raises(Exception, match="closed"):
        con.execute("SELECT 1")
    with resource.reader() as reader:  # after teardown, a reader opens its own connection
        assert _versions(reader) == 1
