"""Asset checks: the rules of assets/quality.py, scored and shown next to each table.

One check per rule and table (`unique_key` on `modelarts/job_versions`, ...), all in
one subsettable multi-asset check: "Execute" on any one check runs that check alone,
against what is stored; a sync run executes them all in one step over one reader,
which is what keeps a run's cost the work and not the overhead.

Checks are not partitioned: in a partitioned run they check that run's project, run
alone from the UI they check every project. Structural rules (keys, orphans, ranges,
columns) fail as ERROR and are blocking: the warehouse is wrong, so nothing
downstream (the export, the marts) runs on it. New rejections and unknown fields
are WARN: the warehouse did its job, the source changed, and somebody should look.

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
from assets.tables import TABLE_NAMES
from pipelines.resources import WarehouseResource

ALL_TABLES = ("raw_payloads",) + TABLE_NAMES
WARN = dg.AssetCheckSeverity.WARN
ERROR = dg.AssetCheckSeverity.ERROR


@dataclass(frozen=True)
class Rule:
    """One check name, the tables it is shown on, and how to score one table.

    `score(con, table, project_id, load_ids)`; `load_ids` are the latest sync's (for
    the WARN rules about what a sync brought).
    """

    name: str
    tables: tuple[str, ...]
    description: str
    what: str  # "<bad rows> <what>" is the check's description when it fails
    score: Callable[[duckdb.DuckDBPyConnection, str, str | None, Sequence[str]], quality.Finding]
    severity: dg.AssetCheckSeverity = ERROR
    per_project: bool = True  # False: the rule is about the table's shape, not its rows


RULES = (
    Rule("unique_key", ALL_TABLES, "No key value is stored twice (key: see the table's `key` metadata).",
         "duplicated key values", lambda con, t, p, _: quality.duplicate_keys(con, t, p)),
    Rule("has_version", quality.CHILD_TABLES + ("jobs",),
         "Every row belongs to a version stored in job_versions (every job has a version).",
         "rows without their version", lambda con, t, p, _: quality.orphans(con, t, p)),
    Rule("class_metrics_in_unit_interval", ("class_metrics",), "recall, precision and accuracy are within [0, 1].",
         "class metrics outside [0, 1]", lambda con, t, p, _: quality.class_metrics_out_of_range(con, p)),
    Rule("no_negative_samples", ("system_metric_samples",), "No metric sample is negative.",
         "negative samples", lambda con, t, p, _: quality.negative_samples(con, p)),
    Rule("no_new_rejections", ("rejected_payloads",),
         "WARN when the latest sync landed payloads that could not become versions.",
         "new rejected payloads", lambda con, t, p, loads: quality.new_rejections(con, loads), severity=WARN),
    Rule("no_new_unknown_fields", ("field_issues",),
         "WARN when the latest sync brought fields the contract does not know (unknown_field).",
         "versions with new unknown fields", lambda con, t, p, loads: quality.new_unknown_fields(con, loads),
         severity=WARN),
    Rule("columns_match_contract", ALL_TABLES,
         "The lake's table (or view) has exactly the columns and types of schema.py.",
         "columns differ from schema.py", lambda con, t, p, _: quality.schema_drift(con, t), per_project=False),
)
RULE_OF = {rule.name: rule for rule in RULES}
TABLE_OF = {key(t): t for t in ALL_TABLES}

STRUCTURE_CHECKS = [dg.AssetCheckKey(key(t), "columns_match_contract") for t in ALL_TABLES]
"""What the sync job leaves to the maintenance job: a table's columns change when the code does, not
when data arrives, and ten checks cost a sync ~1 s of Dagster's bookkeeping. They run daily, and
"Execute" runs them any time."""

CHECK_SPECS = [
    dg.AssetCheckSpec(rule.name, asset=key(table), description=rule.description, blocking=rule.severity == ERROR)
    for rule in RULES for table in rule.tables
]


def _project(context: dg.AssetCheckExecutionContext) -> str | None:
    return context.partition_key if context.has_partition_key else None


def _scope_label(rule: Rule, project_id: str | None) -> str:
    scope = f"project {project_id}" if project_id else "all projects"
    if not rule.per_project:
        return "table"
    return f"latest sync of {scope}" if rule.severity == WARN else scope


def _result(check_key: dg.AssetCheckKey, rule: Rule, finding: quality.Finding, scope: str) -> dg.AssetCheckResult:
    metadata = {"bad_rows": finding.bad, "scope": scope}
    if finding.samples:
        metadata["samples"] = dg.MetadataValue.json(finding.samples)
    if finding.detail:
        metadata["detail"] = dg.MetadataValue.json(finding.detail)
    return dg.AssetCheckResult(
        asset_key=check_key.asset_key, check_name=check_key.name, passed=finding.ok, severity=rule.severity,
        metadata=metadata, description=f"{finding.bad} {rule.what}" if finding.bad else None,
    )


@dg.multi_asset_check(name="warehouse_checks", specs=CHECK_SPECS, can_subset=True,
                      description="The warehouse's data-quality rules (assets/quality.py), per table.")
def warehouse_checks(context: dg.AssetCheckExecutionContext,
                     warehouse: WarehouseResource) -> Iterator[dg.AssetCheckResult]:
    project = _project(context)
    selected = [spec.key for spec in CHECK_SPECS if spec.key in context.selected_asset_check_keys]
    needs_loads = any(RULE_OF[k.name].severity == WARN for k in selected)
    load_ids = latest_load_ids(context.instance, project) if needs_loads else []
    with user_errors(), warehouse.reader() as con:
        for check_key in selected:
            rule, table = RULE_OF[check_key.name], TABLE_OF[check_key.asset_key]
            finding = rule.score(con, table, project if rule.per_project else None, load_ids)
            yield _result(check_key, rule, finding, _scope_label(rule, project))


ALL_CHECKS = [warehouse_checks]
