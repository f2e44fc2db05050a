"""A plain Parquet copy of the lake after each sync, for tools that do not read DuckLake.

Off unless `WarehouseResource.export_parquet_dir` is set ($MODELARTS_EXPORT_PARQUET_DIR):
the lake's own data folder is not a table a Parquet reader can use (delete files,
files of old snapshots), so whoever needs plain files asks for them, and nobody else
pays for the copy. Unset, the step succeeds without a materialization, so the sync job
is the same job either way.

The export reads one snapshot without the writers' lock, so it never makes a sync
wait and is not in the warehouse pool; two runs finishing together take turns inside
`export_parquet` (its own lock), and a reader of the folder sees one whole export.
"""
from collections.abc import Iterator

import dagster as dg

from assets import conventions
from assets.errors import user_errors
from assets.loads import RAW_PAYLOADS
from assets.metadata import SNAPSHOT_ID
from assets.tables import TABLE_KEYS
from pipelines.resources import EXPORT_PARQUET_DIR_ENV, WarehouseResource
from warehouse.export import ExportReport, export_parquet

@dg.asset(
    key=conventions.key("parquet_export"),
    deps=[RAW_PAYLOADS, *TABLE_KEYS],
    group_name=conventions.MARTS_GROUP,
    kinds={"parquet"},
    owners=conventions.owners(),
    tags=conventions.tags("marts"),
    output_required=False,  # unset: nothing to materialize, and not a failure
    description="Every table as of the latest snapshot, as plain Parquet in `export_parquet_dir/<table>/` "
                f"(off unless ${EXPORT_PARQUET_DIR_ENV} is set).",
)
def parquet_export(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> Iterator[dg.MaterializeResult]:
    dest = warehouse.export_parquet_dir
    if not dest:
        context.log.info(f"no Parquet export: export_parquet_dir is not set (${EXPORT_PARQUET_DIR_ENV})")
        return
    with user_errors():  # e.g. dest is somebody else's folder: the library says so
        report = export_parquet(warehouse.folder, dest)
    context.log.info(f"exported snapshot {report.snapshot_id} to {report.path}: {sum(report.tables.values())} rows")
    yield dg.MaterializeResult(metadata=export_metadata(report))


def export_metadata(report: ExportReport) -> dict:
    """Which snapshot, where, and how many rows per table: what a consumer of the files checks against."""
    return {
        SNAPSHOT_ID: report.snapshot_id,
        "path": dg.MetadataValue.path(str(report.path)),
        "row_counts": dg.MetadataValue.json(dict(report.tables)),
        "total_rows": sum(report.tables.values()),
    }

