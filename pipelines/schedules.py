"""The jobs (sync, maintenance) and the schedules that run them.

Sync: one run per project partition at each tick, not one run for all projects: a
project that fails (bad credentials, a 5xx storm) fails alone, shows red alone, and is
retried or backfilled alone. Maintenance: one run for the whole lake, daily, apart from
the sync so a slow compaction never delays fresh data (the two take turns on the
warehouse's writer lock).

Environment (read when the code location loads):
    MODELARTS_SYNC_CRON             cron of the sync schedule, default hourly ("0 * * * *")
    MODELARTS_SYNC_TIMEZONE         time zone of both schedules, default UTC
    MODELARTS_SYNC_SCHEDULE         "running" to start the sync schedule on load; default "stopped",
                                    so a fresh `dagster dev` never calls an API nobody asked it to
    MODELARTS_MAINTENANCE_CRON      cron of the maintenance schedule, default daily at 03:30
    MODELARTS_MAINTENANCE_SCHEDULE  "running" or "stopped"; default: as the sync schedule, since a
                                    lake that syncs on its own needs compacting on its own
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import dagster as dg

from assets.checks import STRUCTURE_CHECKS
from assets.maintenance import GROUP as MAINTENANCE_GROUP
from assets.marts import version_summary
from pipelines.partitions import project_partitions

DEFAULT_CRON = "0 * * * *"
DEFAULT_MAINTENANCE_CRON = "30 3 * * *"

sync_all_projects = dg.define_asset_job(
    "sync_all_projects",
    selection=(dg.AssetSelection.all() - dg.AssetSelection.groups(MAINTENANCE_GROUP)
               - dg.AssetSelection.checks(*STRUCTURE_CHECKS) - dg.AssetSelection.assets(version_summary)),
    description="Fetch new and unfinished versions of a project, land them raw, derive every table, run the checks, "
                "export to Parquet if configured. The version_summary mart follows on its own (eager automation): "
                "its chart is over every project, not the run's.",
    executor_def=dg.in_process_executor,
)

maintain_warehouse = dg.define_asset_job(
    "maintain_warehouse",
    selection=dg.AssetSelection.groups(MAINTENANCE_GROUP) | dg.AssetSelection.checks(*STRUCTURE_CHECKS),
    description="Merge the lake's small files, expire old snapshots, delete files nothing needs; check every "
                "table's columns against the contract.",
    executor_def=dg.in_process_executor,
)


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def _status(value: str) -> dg.DefaultScheduleStatus:
    running = value.lower() == "running"
    return dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED


def _default_status() -> dg.DefaultScheduleStatus:
    return _status(_env("MODELARTS_SYNC_SCHEDULE") or "stopped")


def _maintenance_status() -> dg.DefaultScheduleStatus:
    return _status(_env("MODELARTS_MAINTENANCE_SCHEDULE") or _env("MODELARTS_SYNC_SCHEDULE") or "stopped")


TIMEZONE = _env("MODELARTS_SYNC_TIMEZONE") or "UTC"


@dg.schedule(
    name="sync_all_projects_schedule",
    job=sync_all_projects,
    cron_schedule=_env("MODELARTS_SYNC_CRON") or DEFAULT_CRON,
    execution_timezone=TIMEZONE,
    default_status=_default_status(),
    description="Sync every configured ModelArts project: one run per project partition.",
)
def sync_all_projects_schedule(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
    tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "manual"
    for project_id in project_partitions.get_partition_keys():
        # run_key makes a tick idempotent: a daemon restart re-evaluating it launches nothing twice
        yield dg.RunRequest(run_key=f"{project_id}:{tick}", partition_key=project_id)


maintain_warehouse_schedule = dg.ScheduleDefinition(
    name="maintain_warehouse_schedule",
    job=maintain_warehouse,
    cron_schedule=_env("MODELARTS_MAINTENANCE_CRON") or DEFAULT_MAINTENANCE_CRON,
    execution_timezone=TIMEZONE,
    default_status=_maintenance_status(),
    description="Compact the lake and expire snapshots past the retention (MODELARTS_RETENTION_DAYS, default 7).",
)
