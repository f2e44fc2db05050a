"""Real DuckLake write conflicts on a shared catalog, and what with_conflict_retries makes of them.

A PostgreSQL catalog (real, started by the test) and local data files; two DuckDB connections on
the lake, each its own database instance as two processes would be: both delete rows of the same
data file, the second to commit loses. No mocks: the conflict is DuckLake's own. (An embedded
SQLite catalog has one writer at a time, so it never gets here.)
"""
import json
import subprocess
import uuid

import pytest

from warehouse import lake
from warehouse.conflicts import OWN_RETRIES, ConflictError, with_conflict_retries
from warehouse.lake import LakeConfig
from pipelines.modelarts.records import RawRecord
from warehouse.store import Warehouse
from tests.servers import postgres


@pytest.fixture(scope="module")
def pg_url():
    with postgres() as url:
        yield url


@pytest.fixture
def config(pg_url, wh_dir) -> LakeConfig:
    name = "lake_" + uuid.uuid4().hex[:8]
    base = pg_url.rsplit("/", 1)[0]
    subprocess.run(["psql", base + "/postgres", "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    return LakeConfig.for_folder(wh_dir, f"{base}/{name}", str(wh_dir / "data"))


@pytest.fixture
def lake_dir(config, wh_dir, seed_bytes):
    payload = json.loads(seed_bytes)
    records = []
    for version in range(1, 9):
        payload.update(job_id=1, version_id=version)
        records.append(RawRecord(body=json.dumps(payload).encode(), project_id="proj1", source=f"v{version}"))
    with Warehouse(wh_dir, catalog=config.catalog, data_path=config.data_path) as wh:
        wh.land(records)
    return config


def _connection(config: LakeConfig):
    con = lake.new_connection()
    lake.attach(con, config)
    con.execute(f"USE {lake.ALIAS}")
    return con


def _versions(con) -> list[int]:
    return [v for (v,) in con.execute("SELECT version_id FROM job_versions ORDER BY 1").fetchall()]


def test_a_conflict_on_every_attempt_becomes_one_error_and_changes_nothing(lake_dir):
    mine, theirs = _connection(lake_dir), _connection(lake_dir)
    attempts = []

    def attempt():
        n = len(attempts) + 1
        attempts.append(n)
        # a fresh data file of two rows each time (DuckLake settles a second delete race on one file)
        theirs.execute(f"INSERT INTO job_versions SELECT * REPLACE (version_id + {100 * n} AS version_id) "
                       "FROM job_versions WHERE version_id IN (7, 8)")
        mine.execute("BEGIN")
        mine.execute(f"DELETE FROM job_versions WHERE version_id = {7 + 100 * n}")
        theirs.execute(f"DELETE FROM job_versions WHERE version_id = {8 + 100 * n}")  # same file, commits first
        mine.execute("COMMIT")  # a failed commit ends the transaction: nothing to roll back

    with pytest.raises(ConflictError, match=r"a concurrent writer kept changing the same data .* run the same "):
        with_conflict_retries(attempt, "deriving")
    assert attempts == list(range(1, OWN_RETRIES + 1))
    kept = set(_versions(_connection(lake_dir)))
    assert {7 + 100 * n for n in attempts} <= kept  # every losing transaction left nothing behind
    assert not {8 + 100 * n for n in attempts} & kept


def test_a_conflict_that_passes_is_retried_on_the_new_snapshot(lake_dir):
    mine, theirs = _connection(lake_dir), _connection(lake_dir)
    attempts = []

    def attempt():
        attempts.append(1)
        mine.execute("BEGIN")
        mine.execute("DELETE FROM job_versions WHERE version_id = 1")
        if len(attempts) == 1:
            theirs.execute("DELETE FROM job_versions WHERE version_id = 2")
        mine.execute("COMMIT")  # a failed commit ends the transaction: nothing to roll back

    with_conflict_retries(attempt, "deriving")
    assert len(attempts) == 2
    assert _versions(_connection(lake_dir)) == list(range(3, 9))

