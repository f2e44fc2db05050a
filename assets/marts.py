"""What the `version_summary` asset shows in Dagster: its row count, the headline figures and a
GPU-utilisation chart, as materialization metadata.

Plain functions over a read-only connection (the lake in use, at the snapshot the step
committed), so the asset that wraps them stays a thin shell and the tests need no Dagster run.
The chart is a PNG embedded in markdown: Dagster's UI renders `data:` images in markdown
metadata, and numeric figures (gpu_hours, avg_gpu_util, ...) also get Dagster's own plots
over successive materializations.
"""
from typing import Any

import dagster as dg
import duckdb

from assets import conventions
from assets.conventions import key
from assets.errors import user_errors
from pipelines.resources import WarehouseResource
from warehouse import analysis, plots
from warehouse.report import headline

CHART_SIZE = (6.4, 2.8)  # inches at 100 dpi: ~25 KB of base64, small enough for the event log


def version_summary_description() -> str:
    return analysis.VERSION_SUMMARY.doc


def version_summary_metadata(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Materialization metadata for the version_summary asset."""
    with plots.summary_once(con):
        figures = headline(con)
        chart = plots.gpu_util_distribution(con)
    chart.set_size_inches(*CHART_SIZE)
    markdown = (f"**{figures['runs']:,} runs** ({figures['v1_versions']:,} v1 versions, {figures['v2_jobs']:,} v2 "
                f"jobs), {figures['gpu_hours']:,.1f} GPU-hours, "
                f"{figures['gpu_hours_under_20']:,.1f} of them under 20 % utilisation.\n\n"
                f"![GPU utilisation](data:image/png;base64,{plots.png_base64(chart)})")
    metadata: dict[str, Any] = {
        "dagster/row_count": dg.MetadataValue.int(int(figures["runs"])),
        "v1_versions": dg.MetadataValue.int(int(figures["v1_versions"])),
        "v2_jobs": dg.MetadataValue.int(int(figures["v2_jobs"])),
        "utilisation_chart": dg.MetadataValue.md(markdown),
        "succeeded": dg.MetadataValue.int(int(figures["succeeded"])),
        "failed": dg.MetadataValue.int(int(figures["failed"])),
        "running": dg.MetadataValue.int(int(figures["running"])),
        "gpu_hours": dg.MetadataValue.float(float(figures["gpu_hours"])),
        "gpu_hours_under_20": dg.MetadataValue.float(float(figures["gpu_hours_under_20"])),
    }
    if figures["avg_gpu_util"] is not None:
        metadata["avg_gpu_util"] = dg.MetadataValue.float(float(figures["avg_gpu_util"]))
    return metadata


@dg.asset(
    key=key("version_summary"),
    deps=[key(t) for t in ("job_versions", "system_metric_samples", "parameters", "class_metrics", "field_issues",
                           "runs", "run_parameters", "v2_metric_samples", "v2_field_issues")],
    group_name=conventions.MARTS_GROUP,
    kinds={"ducklake", "duckdb"},
    owners=conventions.owners(),
    tags=conventions.tags("marts"),
    automation_condition=conventions.TABLES_AUTOMATION,
    description=version_summary_description(),
    metadata={"dagster/column_schema": dg.TableSchema(columns=[
        dg.TableColumn(c.name, c.duckdb_type, description=c.doc) for c in analysis.VERSION_SUMMARY.columns]),
        "dagster/table_name": f"modelarts.main.{analysis.VERSION_SUMMARY.name}", "stored_as": "view"},
)
def version_summary(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """A view, so nothing is written: materializing it reads the lake (no lock) and shows the
    utilisation chart and headline figures of every project, as of the latest snapshot."""
    with user_errors(), warehouse.reader() as con:
        metadata = version_summary_metadata(con)
    context.log.info(f"version_summary: {metadata['dagster/row_count'].value} runs "
                     f"({metadata['v2_jobs'].value} of them v2 jobs)")
    return dg.MaterializeResult(metadata=metadata)
