"""Asset checks: the rules of assets/quality.py, scored and shown next to each table.

Two checks per table, as a user looks for them on the asset's page: `quality` scores every
row rule of that table (keys, orphans, ranges, new rejections or unknown fields) and says
which rule failed; `columns_match_contract` compares the table's columns with schema.py.
All are one subsettable multi-asset check: "Execute" on any one runs it alone, against what
is stored; a sync run scores its ten `quality` checks in one step over one reader (each
check result is a few writes to Dagster's instance, so fewer results is a cheaper run).
The columns check runs in the daily maintenance job: columns change with the code, not with data.

Checks are not partitioned: in a partitioned run they check that run's project, run
alone from the UI they check every project. A structural rule that fails (keys, orphans,
ranges, columns) makes its check fail as ERROR, and checks are blocking: the warehouse is
wrong, so nothing downstream (the export, the marts) runs on it. New rejections and unknown
fields fail as WARN, which does not block: the warehouse did its job, the source changed,
and somebody should look.

Checks only read the lake (no lock, no pool): they never make a sync wait, and a
sync committing meanwhile never fails them; each check sees one whole snapshot.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import dagster as dg
import duckdb

from assets import quality
from assets.conventions import key
from assets.errors import user_errors
from assets.loads import latest_load_ids
from assets.tables import TABLE_NAMES, V2_DETAIL_NAMES, V2_TABLE_NAMES
from pipelines.resources import WarehouseResource

ALL_TABLES = ("raw_payloads",) + TABLE_NAMES
V2_CHILD_TABLES = tuple(t for t in V2_TABLE_NAMES if t != "v2_jobs")
V2_JOB_DETAILS = tuple(t for t in V2_DETAIL_NAMES if t != "v2_job_listings")  # listed jobs need no detail
WARN = dg.AssetCheckSeverity.WARN
ERROR = dg.AssetCheckSeverity.ERROR


@dataclass(frozen=True)
class Rule:
    """One rule, the tables it applies to, and how to score one table.

    `score(con, table, project_id, load_ids)`; `load_ids` are the latest sync's (for
    the WARN rules about what a sync brought). A table's `quality` check scores its rules.
    """

    name: str
    tables: tuple[str, ...]
    description: str
    what: str  # "<bad rows> <what>" is the check's description when it fails
    score: Callable[[duckdb.DuckDBPyConnection, str, str | None, Sequence[str]], quality.Finding]
    severity: dg.AssetCheckSeverity = ERROR


ROW_RULES = (
    Rule("unique_key", ALL_TABLES, "no key value is stored twice (key: see the table's `key` metadata)",
         "duplicated key values", lambda con, t, p, _: quality.duplicate_keys(con, t, p)),
    Rule("has_version", quality.CHILD_TABLES + ("jobs",),
         "every row belongs to a version stored in job_versions (every job has a version)",
         "rows without their version", lambda con, t, p, _: quality.orphans(con, t, p)),
    Rule("has_job", V2_CHILD_TABLES, "every row belongs to a job stored in v2_jobs",
         "rows without their job", lambda con, t, p, _: quality.v2_orphans(con, t, p)),
    Rule("details_unique_key", ("v2_jobs",),
         f"no key value is stored twice in its detail tables ({', '.join(V2_DETAIL_NAMES)})",
         "duplicated key values in detail tables",
         lambda con, t, p, _: quality.across(V2_DETAIL_NAMES, lambda d: quality.duplicate_keys(con, d, p))),
    Rule("details_have_job", ("v2_jobs",), "every row of its detail tables but the listings belongs to a job",
         "detail rows without their job",
         lambda con, t, p, _: quality.across(V2_JOB_DETAILS, lambda d: quality.v2_orphans(con, d, p))),
    Rule("class_metrics_in_unit_interval", ("class_metrics",), "recall, precision and accuracy are within [0, 1]",
         "class metrics outside [0, 1]", lambda con, t, p, _: quality.class_metrics_out_of_range(con, p)),
    Rule("no_negative_samples", ("system_metric_samples", "v2_metric_samples"),
         "no metric sample is negative (v2's -1, \"no data\", excepted)",
         "negative samples", lambda con, t, p, _: quality.negative_samples(con, t, p)),
    Rule("no_new_unknown_fields", ("v2_field_issues",),
         "WARN when the latest sync brought fields the contract does not know (unknown_field)",
         "jobs with new unknown fields", lambda con, t, p, loads: quality.new_unknown_fields(con, loads, "v2"),
         severity=WARN),
    Rule("no_new_rejections", ("rejected_payloads",),
         "WARN when the latest sync landed payloads that could not become versions",
         "new rejected payloads", lambda con, t, p, loads: quality.new_rejections(con, loads), severity=WARN),
    Rule("no_new_unknown_fields", ("field_issues",),
         "WARN when the latest sync brought fields the contract does not know (unknown_field)",
         "versions with new unknown fields", lambda con, t, p, loads: quality.new_unknown_fields(con, loads),
         severity=WARN),
)
COLUMNS_RULE = Rule("columns_match_contract", ALL_TABLES,
                    "The lake's table (or view) has exactly the columns and types of schema.py.",
                    "columns differ from schema.py", lambda con, t, p, _: quality.schema_drift(con, t))
QUALITY = "quality"
TABLE_OF = {key(t): t for t in ALL_TABLES}


def rules_of(table: str) -> list[Rule]:
    return [rule for rule in ROW_RULES if table in rule.tables]


def _quality_description(table: str) -> str:
    rules = "; ".join(f"`{rule.name}`: {rule.description}" for rule in rules_of(table))
    return f"Every row rule of the table, each scored: {rules}."


STRUCTURE_CHECKS = [dg.AssetCheckKey(key(t), COLUMNS_RULE.name) for t in ALL_TABLES]
"""What the sync job leaves to the maintenance job: a table's columns change when the code does, not
when data arrives. They run daily, and "Execute" runs them any time."""

CHECK_SPECS = [
    spec for table in ALL_TABLES for spec in (
        dg.AssetCheckSpec(QUALITY, asset=key(table), description=_quality_description(table), blocking=True),
        dg.AssetCheckSpec(COLUMNS_RULE.name, asset=key(table), description=COLUMNS_RULE.description, blocking=True),
    )
]


def _project(context: dg.AssetCheckExecutionContext) -> str | None:
    return context.partition_key if context.has_partition_key else None


def _scope_label(project_id: str | None) -> str:
    return f"project {project_id}" if project_id else "all projects"


def _columns_result(con: duckdb.DuckDBPyConnection, table: str) -> dg.AssetCheckResult:
    finding = COLUMNS_RULE.score(con, table, None, [])
    metadata = {"bad_rows": finding.bad, "scope": "table"}  # the table's shape, not its rows
    if finding.detail:
        metadata["detail"] = dg.MetadataValue.json(finding.detail)
    return dg.AssetCheckResult(
        asset_key=key(table), check_name=COLUMNS_RULE.name, passed=finding.ok, severity=ERROR, metadata=metadata,
        description=f"{finding.bad} {COLUMNS_RULE.what}" if finding.bad else None,
    )


def _quality_result(con: duckdb.DuckDBPyConnection, table: str, project_id: str | None,
                    load_ids: Sequence[str]) -> dg.AssetCheckResult:
    """Every row rule of the table; the check fails as ERROR if a structural rule failed, else as WARN."""
    findings = {rule: rule.score(con, table, project_id, load_ids) for rule in rules_of(table)}
    failed = [rule for rule, finding in findings.items() if not finding.ok]
    metadata = {
        "bad_rows": sum(f.bad for f in findings.values()),
        **{rule.name: f.bad for rule, f in findings.items()},  # one number per rule: shown, and plotted over runs
        "scope": _scope_label(project_id) + (" (WARN rules: its latest sync)" if any(
            rule.severity == WARN for rule in findings) else ""),
    }
    samples = {rule.name: findings[rule].samples for rule in failed if findings[rule].samples}
    details = {rule.name: findings[rule].detail for rule in failed if findings[rule].detail}
    if samples:
        metadata["samples"] = dg.MetadataValue.json(samples)
    if details:
        metadata["detail"] = dg.MetadataValue.json(details)
    severity = ERROR if any(rule.severity == ERROR for rule in failed) else WARN
    return dg.AssetCheckResult(
        asset_key=key(table), check_name=QUALITY, passed=not failed, severity=severity, metadata=metadata,
        description="; ".join(f"{findings[rule].bad} {rule.what} ({rule.name})" for rule in failed) or None,
    )


@dg.multi_asset_check(name="warehouse_checks", specs=CHECK_SPECS, can_subset=True,
                      description="The warehouse's data-quality rules (assets/quality.py), per table.")
def warehouse_checks(context: dg.AssetCheckExecutionContext,
                     warehouse: WarehouseResource) -> Iterator[dg.AssetCheckResult]:
    project = _project(context)
    selected = [spec.key for spec in CHECK_SPECS if spec.key in context.selected_asset_check_keys]
    needs_loads = any(rule.severity == WARN for k in selected if k.name == QUALITY
                      for rule in rules_of(TABLE_OF[k.asset_key]))
    load_ids = latest_load_ids(context.instance, project) if needs_loads else []
    with user_errors(), warehouse.reader() as con:
        for check_key in selected:
            table = TABLE_OF[check_key.asset_key]
            if check_key.name == QUALITY:
                yield _quality_result(con, table, project, load_ids)
            else:
                yield _columns_result(con, table)


ALL_CHECKS = [warehouse_checks]
