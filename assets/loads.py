"""Which warehouse loads a Dagster run brought, and what they contained.

The extraction asset records the load ids of its landings in its materialization
metadata; the table asset and the checks read them back from the instance to tell
"new in this sync" from "stored before". Counting by load id, not trusting a
derive report, keeps the numbers right whoever derived the rows (the warehouse
also derives left-over raw rows whenever a writer opens it).
"""
from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import duckdb

from assets.conventions import key
from pipelines.partitions import project_partitions

RAW_PAYLOADS = key("raw_payloads")
LOAD_IDS = "load_ids"  # metadata entry of the raw_payloads materialization


def latest_load_ids(instance: dg.DagsterInstance, project_id: str | None) -> list[str]:
    """Load ids of the latest raw_payloads materialization of the project (or of each project).

    In a run that synced, that is the run's own landing ("new in this run"); run
    alone, it is the latest sync's.
    """
    projects = [project_id] if project_id else project_partitions.get_partition_keys()
    load_ids: list[str] = []
    for project in projects:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=RAW_PAYLOADS, asset_partitions=[project]), limit=1
        ).records
        entry = records[0].asset_materialization.metadata.get(LOAD_IDS) if records else None
        if entry is not None and isinstance(entry.value, list):
            load_ids.extend(str(v) for v in entry.value)
    return load_ids


def _count(con: duckdb.DuckDBPyConnection, sql: str, load_ids: Sequence[str]) -> int:
    if not load_ids:
        return 0
    return con.execute(sql, [list(load_ids)]).fetchone()[0]


_IN_LOADS = "IN (SELECT unnest(?::VARCHAR[]))"
_VERSIONS_OF_LOADS = (
    "WITH loaded AS (SELECT DISTINCT project_id, payload_sha256 FROM raw_payloads WHERE load_id "
    + _IN_LOADS + "), vs AS (SELECT DISTINCT v.project_id, v.job_id, v.version_id "
    "FROM job_versions v JOIN loaded USING (project_id, payload_sha256)) "
)


def brought(con: duckdb.DuckDBPyConnection, load_ids: Sequence[str]) -> dict[str, int]:
    """Per table, the rows that came from payloads of these loads."""
    return {
        "job_versions": _count(con, _VERSIONS_OF_LOADS + "SELECT count(*) FROM vs", load_ids),
        "rejected_payloads": _count(con, f"SELECT count(*) FROM rejected_payloads WHERE load_id {_IN_LOADS}",
                                    load_ids),
        "field_issues": _count(con, _VERSIONS_OF_LOADS + "SELECT count(*) FROM field_issues "
                                    "JOIN vs USING (project_id, job_id, version_id)", load_ids),
    }


def error_answers(con: duckdb.DuckDBPyConnection, load_ids: Sequence[str]) -> int:
    """Detail requests the API answered with an error status: rejected at the fetch stage once derived."""
    return _count(con, "SELECT count(*) FROM raw_payloads WHERE kind = 'version_detail' AND load_id "
                       f"{_IN_LOADS} AND NOT (http_status BETWEEN 200 AND 299)", load_ids)
