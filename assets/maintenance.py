"""Keeping the lake small: `warehouse.maintenance.maintain`, as an asset on its own schedule.

Every sync commits a few snapshots, each with its own small Parquet files; left alone,
a year of hourly syncs is tens of thousands of files and a catalog that grows with
them, and reads slow down. Maintenance merges them, expires snapshots older than the
retention (time travel ends there), and deletes the files nothing needs any more.

An asset rather than an op so its history (files before and after, snapshots expired)
sits in the UI next to the tables. It is a writer (the warehouse's lock, the
warehouse pool) and not partitioned: it works on the whole lake, every project at once.
"""
import os
from dataclasses import asdict
from datetime import timedelta

import dagster as dg
from pydantic import Field

from assets import conventions
from assets.errors import user_errors
from assets.metadata import SNAPSHOT_ID
from pipelines.resources import WAREHOUSE_POOL, WarehouseResource
from warehouse.maintenance import DEFAULT_RETENTION, MaintenanceReport, maintain

GROUP = conventions.MAINTENANCE_GROUP
RETENTION_ENV = "MODELARTS_RETENTION_DAYS"


def default_retention_days() -> float:
    """$MODELARTS_RETENTION_DAYS when the code loads, else 7: the schedule's runs use the default."""
    raw = os.environ.get(RETENTION_ENV, "").strip()
    return float(raw) if raw else DEFAULT_RETENTION / timedelta(days=1)


class MaintenanceConfig(dg.Config):
    retention_days: float = Field(
        default=default_retention_days(),
        description="Keep snapshots (time travel) this many days; older ones are expired and the files only they "
                    f"used are deleted. Default 7, or ${RETENTION_ENV}.",
    )


@dg.asset(
    key=conventions.key("lake_maintenance"),
    group_name=GROUP,
    pool=WAREHOUSE_POOL,
    kinds={"ducklake", "parquet"},
    owners=conventions.owners(),
    tags=conventions.tags("maintenance"),
    description="Merge the lake's small files, expire snapshots older than the retention, delete unused files.",
)
def lake_maintenance(context: dg.AssetExecutionContext, config: MaintenanceConfig,
                     warehouse: WarehouseResource) -> dg.MaterializeResult:
    retention = timedelta(days=config.retention_days)
    with user_errors(), warehouse.writer() as wh:  # a negative retention fails here, with maintain's message
        report = maintain(wh, retention=retention)
        snapshot = wh.snapshot_id()
    context.log.info(f"lake maintenance: {report.files_before} -> {report.files_after} files, "
                     f"{report.snapshots_expired} snapshots expired, {report.files_deleted} files deleted")
    return dg.MaterializeResult(metadata=maintenance_metadata(report, config.retention_days, snapshot))


def maintenance_metadata(report: MaintenanceReport, retention_days: float, snapshot_id: int) -> dict:
    """The report's numbers, plottable in the UI from run to run (a catalog size a shared catalog lacks is left out)."""
    metadata = {k: v for k, v in asdict(report).items() if v is not None}
    return {**metadata, "retention_days": retention_days, SNAPSHOT_ID: snapshot_id}
