"""The tidy tables, one asset each, all derived in one step from the landed raw payloads.

One subsettable `@multi_asset` rather than nine assets because the warehouse writes
every table of a version in one transaction (one lake snapshot per batch,
`Warehouse.derive_pending`): nine steps would each open the writer only for the first
to do the work. Select any table, or any few, and the step derives what is pending
(into every table: that is the warehouse's guarantee) and reports the tables selected;
select them all, as the sync job does, and it reports all nine.

The step's writer owns the partition's project (`writer(projects=[...])`): it derives the
bodies of that project landed and not derived yet, in landing order, and on a shared
(PostgreSQL) catalog other partitions' steps commit beside it. The counts are per project
and per load id. The lock is held for the derive and for reading the metadata on the
writer's connection, at the snapshot the derive made.
"""

from collections.abc import Iterator

import dagster as dg

from assets import conventions
from assets.errors import user_errors
from assets.loads import RAW_PAYLOADS, brought, latest_load_ids
from assets.metadata import SNAPSHOT_ID, definition_metadata, table_metadata
from pipelines.partitions import project_partitions
from pipelines.resources import WAREHOUSE_POOL, WarehouseResource
from warehouse import schema, schema_v2

V1_TABLE_NAMES = (
    "job_versions", "jobs", "parameters", "data_sources", "class_metrics", "system_metric_samples", "volumes",
    "rejected_payloads", "field_issues",
)
V2_TABLE_NAMES = (
    "v2_jobs", "v2_parameters", "v2_data_channels", "v2_volumes", "v2_tasks", "v2_metric_samples", "v2_events",
    "v2_field_issues",
)
"""The v2 tables a user looks for, as v1's: a row per job, its parameters, inputs and outputs, volumes,
tasks, metric samples, events and field issues."""
RUNS_NAMES = ("runs", "run_parameters")  # not the run_metric_* views: their key checks would read every sample again
V2_DETAIL_NAMES = tuple(t.name for t in schema_v2.STORED if t.name not in V2_TABLE_NAMES + ("v2_metric_series",))
"""The other v2 tables (input constraints, environments, task statuses, running records, ...): details of a
job, reported and checked on `v2_jobs` rather than as assets of their own. Each asset costs every sync run
a few writes to Dagster's instance per materialization and per check: a dozen small tables cost the demo's
syncs ~2 s each, more than their sync's own work. A table added to schema_v2 lands here by itself."""
TABLE_NAMES = V1_TABLE_NAMES + V2_TABLE_NAMES + RUNS_NAMES


def _spec(name: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        conventions.key(name),
        deps=[RAW_PAYLOADS],
        description=schema.TABLES[name].doc,
        group_name=conventions.TABLES_GROUP,
        kinds={"ducklake", "duckdb", "parquet"},
        owners=conventions.owners(),
        tags=conventions.tags("tables"),
        automation_condition=conventions.TABLES_AUTOMATION,
        metadata=definition_metadata(name),
    )


TABLE_SPECS = [_spec(name) for name in TABLE_NAMES]
TABLE_KEYS = [spec.key for spec in TABLE_SPECS]
NAME_OF = {conventions.key(name): name for name in TABLE_NAMES}


@dg.multi_asset(
    name="derive_tables",
    specs=TABLE_SPECS,
    partitions_def=project_partitions,
    pool=WAREHOUSE_POOL,
    can_subset=True,
    description="Derive the tidy tables from the partition's raw payloads not derived yet (in landing order); "
                "report the selected tables for the partition's project.",
)
def derive_tables(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> Iterator[dg.MaterializeResult]:
    project_id = context.partition_key
    selected = [NAME_OF[k] for k in TABLE_KEYS if k in context.selected_asset_keys]
    load_ids = latest_load_ids(context.instance, project_id)
    with user_errors(), warehouse.writer(projects=[project_id]) as wh:
        wh.derive_pending()
        # read under the lock, on the writer's connection: the lake as just committed, and no second
        # connection to pay for (~0.3 s); the lock is held a few hundred milliseconds longer
        snapshot = wh.snapshot_id()
        new = brought(wh.con, load_ids)
        metadata = {name: {**table_metadata(wh.con, name, project_id, snapshot),
                           **({IN_RUN[name]: new[name]} if name in IN_RUN else {})} for name in selected}
        if "v2_jobs" in metadata:
            metadata["v2_jobs"]["detail_rows"] = dg.MetadataValue.json(detail_rows(wh.con, project_id))
    context.log.info(f"project {project_id}: the latest sync brought {new['job_versions']} versions, "
                     f"{new['rejected_payloads']} rejected payloads, {new['field_issues']} field issues "
                     f"({SNAPSHOT_ID} {snapshot})")
    for name in selected:
        yield dg.MaterializeResult(asset_key=conventions.key(name), metadata=metadata[name])


def detail_rows(con, project_id: str) -> dict[str, int]:
    """The project's rows in each v2 detail table, in one query: they are reported on v2_jobs."""
    sql = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM \"{t}\" WHERE project_id = ?" for t in V2_DETAIL_NAMES)
    return dict(con.execute(sql, [project_id] * len(V2_DETAIL_NAMES)).fetchall())


IN_RUN = {"job_versions": "versions_in_run", "rejected_payloads": "rejected_in_run",
          "field_issues": "field_issues_in_run"}
"""Per table, the metadata entry saying how many rows the run's sync brought."""
