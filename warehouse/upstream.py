"""Jobs deleted upstream: a mark on their versions, not a deletion.

After a complete job listing (no gap), the sync tells the writer which jobs exist; the stored
versions of the others get `deleted_upstream_at`, and a job listed again loses the mark.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

import pyarrow as pa

from warehouse.store import LoadReport, transaction

if TYPE_CHECKING:
    from warehouse.store import Warehouse


def mark_deleted_upstream(wh: "Warehouse", project_id: str, live_job_ids: Iterable[int], at: datetime) -> int:
    """After a complete job listing: mark the stored versions of jobs it lacks as deleted upstream
    at `at`, and clear the mark of jobs it lists again. One snapshot, none when nothing changes.
    Returns how many versions were newly marked."""
    wh.con.register("live_jobs", pa.table({"job_id": pa.array(sorted(set(live_job_ids)), pa.int64())}))
    try:
        gone = ("project_id = ? AND deleted_upstream_at IS NULL "
                "AND job_id NOT IN (SELECT job_id FROM live_jobs)")
        back = "project_id = ? AND deleted_upstream_at IS NOT NULL AND job_id IN (SELECT job_id FROM live_jobs)"
        marked, cleared = (wh.con.execute(f"SELECT count(*) FROM job_versions WHERE {where}",
                                            [project_id]).fetchone()[0] for where in (gone, back))
        if marked or cleared:
            with transaction(wh.con, "deleted_upstream"):
                wh.con.execute(f"UPDATE job_versions SET deleted_upstream_at = ? WHERE {gone}", [at, project_id])
                wh.con.execute(f"UPDATE job_versions SET deleted_upstream_at = NULL WHERE {back}", [project_id])
                wh.label_snapshot("deleted_upstream", LoadReport(projects={project_id}))
    finally:
        wh.con.unregister("live_jobs")
    return marked
