"""The job that syncs everything, and the schedule that runs it.

One run per project partition at each tick, not one run for all projects: a project
that fails (bad credentials, a 5xx storm) fails alone, shows red alone, and is
retried or backfilled alone.

Environment (read when the code location loads):
    MODELARTS_SYNC_CRON      cron of the schedule, default hourly ("0 * * * *")
    MODELARTS_SYNC_TIMEZONE  its time zone, default UTC
    MODELARTS_SYNC_SCHEDULE  "running" to start it on load; default "stopped", so a
                             fresh `dagster dev` never calls an API nobody asked it to
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import dagster as dg

from pipelines.partitions import project_partitions

DEFAULT_CRON = "0 * * * *"

sync_all_projects = dg.define_asset_job(
    "sync_all_projects",
    selection=dg.AssetSelection.all(),
    description="Fetch new and unfinished versions of a project, land them raw, derive every table, run the checks.",
)


def _default_status() -> dg.DefaultScheduleStatus:
    running = os.environ.get("MODELARTS_SYNC_SCHEDULE", "stopped").strip().lower() == "running"
    return dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED


@dg.schedule(
    name="sync_all_projects_schedule",
    job=sync_all_projects,
    cron_schedule=os.environ.get("MODELARTS_SYNC_CRON", "").strip() or DEFAULT_CRON,
    execution_timezone=os.environ.get("MODELARTS_SYNC_TIMEZONE", "").strip() or "UTC",
    default_status=_default_status(),
    description="Sync every configured ModelArts project: one run per project partition.",
)
def sync_all_projects_schedule(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
    tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "manual"
    for project_id in project_partitions.get_partition_keys():
        # run_key makes a tick idempotent: a daemon restart re-evaluating it launches nothing twice
        yield dg.RunRequest(run_key=f"{project_id}:{tick}", partition_key=project_id)
