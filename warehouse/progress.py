"""How far the tidy tables have got: which landed raw bodies are derived, per project.

Every snapshot that derives records `raw_through`, a raw_payloads rowid, and, when its
writer owned only some projects, `scope`, those projects. A body is derived when a mark
covers it: a mark without scope covers every project (its writer had the whole
warehouse), a scoped mark only the projects it names. Writers of different projects
may commit at the same time on a shared catalog, but each project has one writer at a
time (writerlock.ProjectLocks), which lands and derives that project's bodies in order:
so a scoped mark never vouches for another writer's bodies.

The thresholds are read once per pass into a small in-memory table: the marks only move past
what the pass itself derives.
"""
from __future__ import annotations

from collections.abc import Sequence

import duckdb

THRESHOLDS = "memory.main.derive_thresholds"  # not TEMP: the writer reads raw bodies on a second cursor
_MARKS = "SELECT raw_through, scope FROM loads WHERE raw_through IS NOT NULL"


def load_thresholds(con: duckdb.DuckDBPyConnection) -> int:
    """Per project, the highest rowid known derived (into THRESHOLDS); returns the unscoped one."""
    con.execute(f"""CREATE OR REPLACE TABLE {THRESHOLDS} AS
        SELECT project_id, max(raw_through) AS through FROM (
            SELECT unnest(scope) AS project_id, raw_through FROM ({_MARKS}) WHERE scope IS NOT NULL)
        GROUP BY project_id""")
    value = con.execute(f"SELECT max(raw_through) FROM ({_MARKS}) WHERE scope IS NULL").fetchone()[0]
    return -1 if value is None else int(value)


def pending_where(unscoped_through: int, scope: Sequence[str] | None) -> tuple[str, list]:
    """A WHERE clause over raw_payloads `r` (joined to THRESHOLDS as `t`) keeping the bodies not derived."""
    where = f"r.rowid > greatest({int(unscoped_through)}, coalesce(t.through, -1))"
    params: list = []
    if scope:
        where += " AND r.project_id IN (SELECT unnest(?::VARCHAR[]))"
        params.append(list(scope))
    return where, params


def pending_from(raw: str) -> str:
    return f"{raw} r LEFT JOIN {THRESHOLDS} t ON t.project_id = r.project_id"


def derived_through(con: duckdb.DuckDBPyConnection, raw: str) -> int:
    """The highest rowid such that every body up to it is derived, whatever its project (-1: none)."""
    unscoped = load_thresholds(con)
    where, params = pending_where(unscoped, None)
    first_pending = con.execute(f"SELECT min(r.rowid) FROM {pending_from(raw)} WHERE {where}", params).fetchone()[0]
    if first_pending is not None:
        return int(first_pending) - 1
    last = con.execute(f"SELECT max(rowid) FROM {raw}").fetchone()[0]
    return -1 if last is None else int(last)


def mark_snapshots(con: duckdb.DuckDBPyConnection) -> set[int]:
    """The snapshots whose marks say how far derivation has got: the newest unscoped mark, and per
    project the newest scoped mark after it. Maintenance keeps them: expiring one would make its
    bodies look underived."""
    marks = con.execute("SELECT snapshot_id, scope FROM loads WHERE raw_through IS NOT NULL "
                        "ORDER BY snapshot_id DESC").fetchall()
    keep, seen = set(), set()
    for snapshot_id, scope in marks:
        if scope is None:
            keep.add(snapshot_id)
            break
        if set(scope) - seen:
            keep.add(snapshot_id)
            seen |= set(scope)
    return keep
