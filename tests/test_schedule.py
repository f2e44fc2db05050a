"""The schedules: one sync run request per project partition per tick, on the configured cron;
one maintenance run a day, apart from the sync."""
import os
import subprocess
import sys
from datetime import datetime, timezone

os.environ.setdefault("MODELARTS_PROJECT_IDS", "proj-a,proj-b")  # before the code location loads: partitions

import dagster as dg  # noqa: E402

from pipelines.definitions import defs  # noqa: E402
from pipelines.partitions import project_partitions  # noqa: E402
from pipelines.schedules import DEFAULT_CRON, DEFAULT_MAINTENANCE_CRON, sync_all_projects_schedule  # noqa: E402


def test_each_tick_requests_one_run_per_project_with_a_stable_run_key():
    tick = datetime(2026, 1, 2, 3, 0, tzinfo=timezone.utc)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        requests = list(sync_all_projects_schedule(context))
        again = list(sync_all_projects_schedule(dg.build_schedule_context(instance=instance,
                                                                          scheduled_execution_time=tick)))
    projects = project_partitions.get_partition_keys()
    assert [r.partition_key for r in requests] == projects
    assert len({r.run_key for r in requests}) == len(projects)
    assert [r.run_key for r in again] == [r.run_key for r in requests]  # a re-evaluated tick launches nothing new


def test_schedule_targets_the_sync_job_hourly_and_stopped_by_default():
    schedule = defs.resolve_schedule_def("sync_all_projects_schedule")
    assert schedule.job_name == "sync_all_projects"
    assert schedule.cron_schedule == DEFAULT_CRON
    assert schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    job = defs.resolve_job_def("sync_all_projects")
    assert job.partitions_def.get_partition_keys() == project_partitions.get_partition_keys()


def test_maintenance_schedule_runs_the_maintenance_asset_alone_daily_and_stopped_by_default():
    schedule = defs.resolve_schedule_def("maintain_warehouse_schedule")
    assert schedule.job_name == "maintain_warehouse"
    assert schedule.cron_schedule == DEFAULT_MAINTENANCE_CRON == "30 3 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    maintenance = defs.resolve_job_def("maintain_warehouse")
    sync = defs.resolve_job_def("sync_all_projects")
    assert maintenance.partitions_def is None  # the whole lake at once
    assert {k.to_user_string() for k in maintenance.asset_layer.executable_asset_keys} == {"modelarts/lake_maintenance"}
    synced = {k.to_user_string() for k in sync.asset_layer.executable_asset_keys}
    assert "modelarts/lake_maintenance" not in synced
    assert {"modelarts/raw_payloads", "modelarts/job_versions", "modelarts/parquet_export"} <= synced


def test_maintenance_settings_come_from_the_environment():
    """The maintenance schedule follows the sync schedule's status unless told otherwise; the retention
    default is read when the code loads."""
    code = ("from pipelines.schedules import maintain_warehouse_schedule as s; "
            "from assets.maintenance import MaintenanceConfig as c; "
            "print(s.cron_schedule, s.default_status.value, c().retention_days)")

    def run(**extra) -> list[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELARTS_")}
        return subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True,
                              check=True).stdout.split()

    assert run(MODELARTS_SYNC_SCHEDULE="running")[-2:] == ["RUNNING", "7.0"]
    assert run(MODELARTS_SYNC_SCHEDULE="running", MODELARTS_MAINTENANCE_SCHEDULE="stopped")[-2] == "STOPPED"
    assert run(MODELARTS_MAINTENANCE_CRON="0 1 * * 0", MODELARTS_RETENTION_DAYS="30") == [
        "0", "1", "*", "*", "0", "STOPPED", "30.0"]


def test_cron_comes_from_the_environment():
    """Read when the code location loads, so a fresh interpreter is the honest test."""
    env = {**os.environ, "MODELARTS_SYNC_CRON": "*/15 * * * *", "MODELARTS_SYNC_SCHEDULE": "running"}
    code = ("from pipelines.schedules import sync_all_projects_schedule as s; "
            "print(s.cron_schedule, s.default_status.value)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["*/15", "*", "*", "*", "*", "RUNNING"]


def test_partitions_come_from_the_project_id_variables_or_default_to_the_demo_project():
    from pipelines.modelarts.simulator import DEFAULT_PROJECT_ID
    from pipelines.partitions import project_ids_from_env

    assert project_ids_from_env({"MODELARTS_PROJECT_IDS": " a, b c,a", "MODELARTS_PROJECT_ID": "x"}) == ["a", "b", "c"]
    assert project_ids_from_env({"MODELARTS_PROJECT_ID": "x"}) == ["x"]
    assert project_ids_from_env({}) == [DEFAULT_PROJECT_ID]
