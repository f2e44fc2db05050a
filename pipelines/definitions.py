"""The one Definitions of the code location: `dagster dev` (or -w workspace.yaml) loads this.

Everything configurable comes from the environment when the code loads (see
docs/dagster.md): the endpoint and credentials (secrets as EnvVar, never config),
the projects (= partitions), the warehouse folder, the schedule's cron.
"""
from __future__ import annotations

from pathlib import Path

import dagster as dg

from assets.checks import ALL_CHECKS
from assets.extract import raw_payloads
from assets.tables import derive_tables
from pipelines.resources import ModelArtsResource, WarehouseResource
from pipelines.schedules import sync_all_projects, sync_all_projects_schedule
from warehouse.reader import warehouse_dir


def _warehouse_folder() -> str:
    """Absolute, so the run worker and the code server agree whatever their working directory."""
    return str(Path(warehouse_dir()).resolve())


defs = dg.Definitions(
    assets=[raw_payloads, derive_tables],
    asset_checks=ALL_CHECKS,
    jobs=[sync_all_projects],
    schedules=[sync_all_projects_schedule],
    resources={
        "modelarts": ModelArtsResource.from_env(),
        "warehouse": WarehouseResource(folder=_warehouse_folder()),
    },
)
