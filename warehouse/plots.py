"""The charts of the report, the Dagster summary and notebooks, drawn with matplotlib.

Why matplotlib: it is already in the venv, needs no JavaScript or network, and a PNG embeds
as base64 in one offline HTML file, in Dagster's markdown metadata and in a notebook alike.
Figures are made with `matplotlib.figure.Figure` (no pyplot), so no global state and no GUI
backend is involved. Every function takes a read-only DuckDB connection with the lake in use.
"""
from __future__ import annotations

import base64
import io
import os
from contextlib import contextmanager

import duckdb

from warehouse.analysis import INTERVAL_MINUTES_SQL

CATEGORY_COLOURS = {"succeeded": "#2e7d32", "failed": "#c62828", "stopped": "#ef6c00", "running": "#1565c0",
                    "other": "#757575"}
CURVE_METRICS = {"gpuUtil": "GPU util %", "gpuMemUsage": "GPU memory %", "cpuUsage": "CPU %", "memUsage": "memory %"}


def _figure(width: float = 8, height: float = 3.6):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def png_base64(fig) -> str:
    """The figure as a base64 PNG, for `<img src="data:image/png;base64,...">`."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#757575")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_utilisation(job_id: int, version_id: int, *, warehouse: str | os.PathLike | None = None,
                     project_id: str | None = None):
    """A notebook's chart of one version: its utilisation over time, as a matplotlib Figure.
    `warehouse` is the folder (default $MODELARTS_WAREHOUSE, else ./warehouse_data)."""
    from warehouse.reader import connect

    con = connect(warehouse)
    try:
        return utilisation_figure(con, job_id, version_id, project_id=project_id)
    finally:
        con.close()


def utilisation_figure(con: duckdb.DuckDBPyConnection, job_id: int, version_id: int, *,
                       project_id: str | None = None):
    """One version's cpu, memory, GPU and GPU-memory use over the minutes since it started."""
    where = "job_id = ? AND version_id = ?" + (" AND project_id = ?" if project_id else "")
    params = [job_id, version_id] + ([project_id] if project_id else [])
    series = _series(con, f"SELECT project_id, api_version, run_id FROM runs WHERE api_version = 'v1' AND {where}",
                     params, tuple(CURVE_METRICS))
    name = con.execute(f"SELECT any_value(job_name || ' / ' || coalesce(version_name, '?')) FROM job_versions "
                       f"WHERE {where}", params).fetchone()[0]
    fig = _figure()
    ax = fig.add_subplot()
    ax.set_title(f"{name or 'no such version'} (job {job_id}, version {version_id})", fontsize=10)
    if not series:
        _empty(ax, "no metric samples for this version")
        return fig
    for metric, label in CURVE_METRICS.items():
        for (_, found), (interval, samples) in series.items():
            if found == metric:
                ax.plot([i * interval for i in range(len(samples))], samples, label=label, linewidth=1)
    ax.set_xlabel("minutes since start (interval read as minutes)")
    ax.set_ylabel("percent")
    ax.legend(loc="upper right", fontsize=8)
    return fig


def _series(con: duckdb.DuckDBPyConnection, runs_sql: str, params: list, metrics: tuple[str, ...]) -> dict:
    """{((project_id, api_version, run_id), metric): (interval in minutes, samples)} for the runs the
    query selects, read from the stored arrays (a v2 job's first task): unnesting every sample
    through metric_history to draw a few curves would cost seconds on a large lake."""
    rows = con.execute(f"""SELECT s.project_id, s.api_version, s.run_id, s.metric, {INTERVAL_MINUTES_SQL},
               list_transform(s.samples, lambda x: coalesce(x, 'NaN'::DOUBLE))
        FROM run_metric_series s JOIN runs v USING (project_id, api_version, run_id)
        WHERE (s.project_id, s.api_version, s.run_id) IN ({runs_sql})
          AND s.metric IN ({', '.join('?' * len(metrics))})
        QUALIFY row_number() OVER (PARTITION BY s.project_id, s.api_version, s.run_id, s.metric
                                   ORDER BY s.task NULLS FIRST) = 1""", params + list(metrics)).fetchall()
    return {((p, a, r), metric): (interval, samples) for p, a, r, metric, interval, samples in rows}


@contextmanager
def summary_once(con: duckdb.DuckDBPyConnection):
    """Compute version_summary once for the charts that follow: a temp table of the same name
    shadows the view on this connection, and is dropped afterwards."""
    con.execute("CREATE OR REPLACE TEMP TABLE version_summary AS SELECT * FROM version_summary")
    try:
        yield
    finally:
        con.execute("DROP TABLE IF EXISTS temp.main.version_summary")


def runs_over_time(con: duckdb.DuckDBPyConnection):
    """Versions created per month, stacked by status category."""
    rows = con.execute("SELECT date_trunc('month', timezone('UTC', create_time)) AS month, status_category, "
                       "count(*) FROM version_summary WHERE create_time IS NOT NULL GROUP BY ALL ORDER BY 1").fetchall()
    fig = _figure()
    ax = fig.add_subplot()
    ax.set_title("Runs per month by status category", fontsize=10)
    if not rows:
        _empty(ax, "no runs")
        return fig
    months = sorted({r[0] for r in rows})
    bottom = [0] * len(months)
    for category, colour in CATEGORY_COLOURS.items():
        counts = {m: n for m, c, n in rows if c == category}
        heights = [counts.get(m, 0) for m in months]
        if any(heights):
            ax.bar(months, heights, width=25, bottom=bottom, color=colour, label=category)
            bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_ylabel("versions")
    ax.legend(fontsize=8)
    return fig


def gpu_util_distribution(con: duckdb.DuckDBPyConnection):
    """How busy the GPUs were: GPU-hours by each run's average GPU utilisation."""
    rows = con.execute("SELECT gpu_util_avg, gpu_hours FROM version_summary "
                       "WHERE gpus > 0 AND gpu_util_avg IS NOT NULL AND gpu_hours > 0").fetchall()
    fig = _figure()
    ax = fig.add_subplot()
    ax.set_title("GPU-hours by the run's average GPU utilisation", fontsize=10)
    if not rows:
        _empty(ax, "no GPU runs with utilisation samples")
        return fig
    ax.hist([r[0] for r in rows], bins=range(0, 105, 5), weights=[r[1] for r in rows], color="#1565c0")
    ax.axvline(20, color="#c62828", linestyle="--", linewidth=1, label="20 %")
    ax.set_xlabel("average GPU utilisation of the run (%)")
    ax.set_ylabel("GPU-hours")
    ax.legend(fontsize=8)
    return fig


def underused_jobs(con: duckdb.DuckDBPyConnection, top: int = 10) -> list[tuple]:
    """(project_id, job id, job_name, gpu_hours, gpu_hours_under_20), most under-used GPU-hours first;
    the job id is v1's job_id, or v2's training job UUID."""
    return con.execute("SELECT project_id, coalesce(CAST(job_id AS VARCHAR), training_job_id), any_value(job_name), "
                       "sum(gpu_hours), sum(gpu_hours_under_20) FROM version_summary WHERE gpu_hours_under_20 > 0 "
                       "GROUP BY project_id, api_version, job_id, training_job_id "
                       "ORDER BY 5 DESC, api_version, job_id, training_job_id LIMIT ?", [top]).fetchall()


def underused_chart(rows: list[tuple]):
    """The jobs with the most GPU-hours spent under 20 % utilisation (rows of underused_jobs())."""
    fig = _figure(height=max(2.4, 0.35 * len(rows) + 1))
    ax = fig.add_subplot()
    ax.set_title("Most under-used GPU-hours (under 20 % utilisation), by job", fontsize=10)
    if not rows:
        _empty(ax, "no under-used GPU-hours")
        return fig
    labels = [f"{name or '?'} ({job_id})" for _, job_id, name, _, _ in rows][::-1]
    ax.barh(labels, [r[3] for r in rows][::-1], color="#bdbdbd", label="all GPU-hours")
    ax.barh(labels, [r[4] for r in rows][::-1], color="#c62828", label="under 20 %")
    ax.set_xlabel("GPU-hours")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=8)
    return fig


def top_run_curves(con: duckdb.DuckDBPyConnection, top: int = 5):
    """GPU utilisation over time of the runs that used the most GPU-hours."""
    runs = con.execute("SELECT project_id, api_version, run_id, job_name, version_id FROM version_summary "
                       "WHERE gpu_util_samples > 0 AND gpu_hours > 0 "
                       "ORDER BY gpu_hours DESC, api_version, version_id, run_id LIMIT ?", [top]).fetchall()
    fig = _figure()
    ax = fig.add_subplot()
    ax.set_title(f"GPU utilisation over time, the {top} runs with the most GPU-hours", fontsize=10)
    if not runs:
        _empty(ax, "no GPU runs with utilisation samples")
        return fig
    names = {(p, a, r): f"{name} v{v}" if a == "v1" else f"{name} (v2)" for p, a, r, name, v in runs}
    keys = " UNION ALL ".join("SELECT ?, ?, ?" for _ in runs)
    series = _series(con, keys, [x for key in names for x in key], ("gpuUtil",))
    for key, label in names.items():
        interval, samples = series[(key, "gpuUtil")]
        ax.plot([i * interval / 60 for i in range(len(samples))], samples, linewidth=1, label=label)
    ax.set_xlabel("hours since start")
    ax.set_ylabel("GPU util %")
    ax.legend(fontsize=7)
    return fig
