"""What the `version_summary` asset shows in Dagster: its row count, the headline figures and a
GPU-utilisation chart, as materialization metadata.

Plain functions over a read-only connection (the lake in use, at the snapshot the step
committed), so the asset that wraps them stays a thin shell and the tests need no Dagster run.
The chart is a PNG embedded in markdown: Dagster's UI renders `data:` images in markdown
metadata, and numeric figures (gpu_hours, avg_gpu_util, ...) also get Dagster's own plots
over successive materializations.
"""
from __future__ import annotations

from typing import Any

import dagster as dg
import duckdb

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
    markdown = (f"**{figures['versions']:,} versions**, {figures['gpu_hours']:,.1f} GPU-hours, "
                f"{figures['gpu_hours_under_20']:,.1f} of them under 20 % utilisation.\n\n"
                f"![GPU utilisation](data:image/png;base64,{plots.png_base64(chart)})")
    metadata: dict[str, Any] = {
        "dagster/row_count": dg.MetadataValue.int(int(figures["versions"])),
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
