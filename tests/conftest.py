from __future__ import annotations

import os
from pathlib import Path

import pytest

from warehouse import connect
from pipelines.modelarts.records import RawRecord
from warehouse.store import Warehouse

DATA = Path(__file__).parent / "data"

# Dagster partitions are read from the environment when pipelines.partitions is first
# imported; pin them before any test module imports it.
os.environ.setdefault("MODELARTS_PROJECT_IDS", "proj-a,proj-b")


@pytest.fixture
def seed_bytes() -> bytes:
    """The seed document's example payload, with its `"spec_code": ,` repaired to null."""
    return (DATA / "seed_example.json").read_bytes()


@pytest.fixture
def environment_restored():
    """For tests that point os.environ at their lake (readers need the S3 keys): put it back after,
    or the next test file on this xdist worker would write to a PostgreSQL that is gone."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def wh_dir(tmp_path) -> Path:
    return tmp_path / "wh"


def land(root: Path, bodies, project_id: str = "proj1", **kwargs):
    """Land bodies (bytes, or (bytes, source) pairs) the way `ingest` does."""
    records = []
    for n, body in enumerate(bodies):
        body, source = body if isinstance(body, tuple) else (body, f"test:{n}")
        records.append(RawRecord(body=body, project_id=project_id, source=source))
    with Warehouse.open(root) as wh:
        return wh.land(records, **kwargs)


def rows(root: Path, sql: str, params=None) -> list[tuple]:
    con = connect(root)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def dicts(root: Path, sql: str) -> list[dict]:
    con = connect(root)
    try:
        return con.sql(sql).to_arrow_table().to_pylist()
    finally:
        con.close()
