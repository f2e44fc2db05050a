"""The one Definitions of the code location: `dagster dev` (or -w workspace.yaml) loads this.

Everything configurable comes from the environment when the code loads (see
docs/dagster.md): the endpoint and credentials (secrets as EnvVar, never config),
the projects (= partitions), the warehouse folder, the Parquet export folder, the
schedules' crons, the maintenance retention.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg

from assets.checks import ALL_CHECKS
from assets.export import parquet_export
from assets.extract import MODELARTS_API, raw_payloads
from assets.maintenance import lake_maintenance
from assets.marts import version_summary
from assets.tables import derive_tables
from pipelines.resources import ModelArtsResource, WarehouseResource
from pipelines.schedules import (
    maintain_warehouse,
    maintain_warehouse_schedule,
    sync_all_projects,
    sync_all_projects_schedule,
)
from warehouse.reader import warehouse_dir


def _warehouse_folder() -> str:
    """Absolute, so the run worker and the code server agree whatever their working directory."""
    return str(Path(warehouse_dir()).resolve())


def _assets() -> list:
    """Every asset, with a link to its source in the UI. Code references are a beta API of Dagster's,
    stable for years now; its warning would greet every `dg dev`, so it is silenced here, and only here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return list(dg.with_source_code_references([MODELARTS_API, raw_payloads, derive_tables, version_summary,
                                                    parquet_export, lake_maintenance]))


defs = dg.Definitions(
    assets=_assets(),
    asset_checks=ALL_CHECKS,
    # One process per run, steps in turn: every writing step takes the warehouse's one lock anyway,
    # and a process per step cost seconds each (a 2 s sync took 35 s from the UI).
    executor=dg.in_process_executor,
    jobs=[sync_all_projects, maintain_warehouse],
    schedules=[sync_all_projects_schedule, maintain_warehouse_schedule],
    resources={
        "modelarts": ModelArtsResource.from_env(),
        "warehouse": WarehouseResource.from_env(_warehouse_folder()),
    },
)
