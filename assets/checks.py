"""Asset checks: the rules of assets/quality.py, scored and shown next to each table.

Checks are not partitioned: in a partitioned run they check that run's project, run
alone from the UI they check every project. Structural rules (keys, orphans, ranges,
columns) fail as ERROR: the warehouse is wrong. New rejections and unknown fields are
WARN: the warehouse did its job, the source changed, and somebody should look.

Checks only read the lake (no lock, no pool): they never make a sync wait, and a
sync committing meanwhile never fails them; each check sees one whole snapshot.
"""

from collections.abc import Iterable, Iterator

import dagster as dg

from assets import quality
from assets.errors import user_errors
from assets.loads import latest_load_ids
from assets.tables import TABLE_NAMES
from pipelines.resources import WarehouseResource

ALL_TABLES = ("raw_payloads",) + TABLE_NAMES
WARN = dg.AssetCheckSeverity.WARN
ERROR = dg.AssetCheckSeverity.ERROR


def _project(context: dg.AssetCheckExecutionContext) -> str | None:
    return context.partition_key if context.has_partition_key else None


def _scope_label(project_id: str | None) -> str:
    return f"project {project_id}" if project_id else "all projects"


def _result(finding: quality.Finding, *, asset: str | None = None, check: str | None = None,
            severity: dg.AssetCheckSeverity = ERROR, what: str, scope: str) -> dg.AssetCheckResult:
    metadata = {"bad_rows": finding.bad, "scope": scope}
    if finding.samples:
        metadata["samples"] = dg.MetadataValue.json(finding.samples)
    if finding.detail:
        metadata["detail"] = dg.MetadataValue.json(finding.detail)
    return dg.AssetCheckResult(
        asset_key=asset, check_name=check, passed=finding.ok, severity=severity, metadata=metadata,
        description=f"{finding.bad} {what}" if finding.bad else None,
    )


def _specs(name: str, tables: Iterable[str], description: str) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(name, asset=t, description=description) for t in tables]


@dg.multi_asset_check(
    specs=_specs("unique_key", ALL_TABLES, "No key value is stored twice (key: see the table's `key` metadata)."),
)
def unique_keys(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> Iterator[dg.AssetCheckResult]:
    project = _project(context)
    with user_errors(), warehouse.reader() as con:
        for table in ALL_TABLES:
            yield _result(quality.duplicate_keys(con, table, project), asset=table, check="unique_key",
                          what="duplicated key values", scope=_scope_label(project))


@dg.multi_asset_check(
    specs=_specs("has_version", quality.CHILD_TABLES + ("jobs",),
                 "Every row belongs to a version stored in job_versions (every job has a version)."),
)
def rows_have_versions(context: dg.AssetCheckExecutionContext,
                       warehouse: WarehouseResource) -> Iterator[dg.AssetCheckResult]:
    project = _project(context)
    with user_errors(), warehouse.reader() as con:
        for table in quality.CHILD_TABLES + ("jobs",):
            yield _result(quality.orphans(con, table, project), asset=table, check="has_version",
                          what="rows without their version", scope=_scope_label(project))


@dg.asset_check(asset="class_metrics",
                description="recall, precision and accuracy are within [0, 1].")
def class_metrics_in_unit_interval(context: dg.AssetCheckExecutionContext,
                                   warehouse: WarehouseResource) -> dg.AssetCheckResult:
    project = _project(context)
    with user_errors(), warehouse.reader() as con:
        return _result(quality.class_metrics_out_of_range(con, project), what="class metrics outside [0, 1]",
                       scope=_scope_label(project))


@dg.asset_check(asset="system_metric_samples", description="No metric sample is negative.")
def no_negative_samples(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    project = _project(context)
    with user_errors(), warehouse.reader() as con:
        return _result(quality.negative_samples(con, project), what="negative samples", scope=_scope_label(project))


@dg.asset_check(asset="rejected_payloads",
                description="WARN when the latest sync landed payloads that could not become versions.")
def no_new_rejections(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    project = _project(context)
    load_ids = latest_load_ids(context.instance, project)
    with user_errors(), warehouse.reader() as con:
        return _result(quality.new_rejections(con, load_ids), severity=WARN, what="new rejected payloads",
                       scope=f"latest sync of {_scope_label(project)}")


@dg.asset_check(asset="field_issues",
                description="WARN when the latest sync brought fields the contract does not know (unknown_field).")
def no_new_unknown_fields(context: dg.AssetCheckExecutionContext,
                          warehouse: WarehouseResource) -> dg.AssetCheckResult:
    project = _project(context)
    load_ids = latest_load_ids(context.instance, project)
    with user_errors(), warehouse.reader() as con:
        return _result(quality.new_unknown_fields(con, load_ids), severity=WARN,
                       what="versions with new unknown fields", scope=f"latest sync of {_scope_label(project)}")


@dg.multi_asset_check(
    specs=_specs("columns_match_contract", ALL_TABLES,
                 "The lake's table (or view) has exactly the columns and types of schema.py."),
)
def columns_match_contract(context: dg.AssetCheckExecutionContext,
                           warehouse: WarehouseResource) -> Iterator[dg.AssetCheckResult]:
    with user_errors(), warehouse.reader() as con:
        for table in ALL_TABLES:
            yield _result(quality.schema_drift(con, table), asset=table, check="columns_match_contract",
                          what="columns differ from schema.py", scope="table")


ALL_CHECKS = [
    unique_keys, rows_have_versions, class_metrics_in_unit_interval, no_negative_samples, no_new_rejections,
    no_new_unknown_fields, columns_match_contract,
]
