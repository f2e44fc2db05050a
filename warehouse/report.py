"""`modelarts-etl report`: one self-contained HTML page of the warehouse's charts.

Every chart is a PNG inlined as base64 and the styles are inline, so the file opens
offline, can be mailed, and needs no server.
"""
from __future__ import annotations

import html
import os
from datetime import datetime, timezone
from pathlib import Path

from warehouse import plots
from warehouse.reader import connect

STYLE = """body{font-family:sans-serif;margin:2em auto;max-width:60em;color:#212121}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}img{max-width:100%;border:1px solid #e0e0e0}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #e0e0e0;padding:.25em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}.figures td{text-align:left}"""


def headline(con) -> dict:
    """The numbers at the top of the report (and of the Dagster summary): runs of both API generations."""
    row = con.execute("""SELECT count(*), count(*) FILTER (WHERE api_version = 'v1'),
           count(*) FILTER (WHERE api_version = 'v2'), count(*) FILTER (WHERE status_category = 'succeeded'),
           count(*) FILTER (WHERE status_category = 'failed'), count(*) FILTER (WHERE status_category = 'running'),
           coalesce(sum(gpu_hours), 0), coalesce(sum(gpu_hours_under_20), 0),
           sum(gpu_hours * gpu_util_avg) / nullif(sum(gpu_hours) FILTER (WHERE gpu_util_avg IS NOT NULL), 0)
    FROM version_summary""").fetchone()
    keys = ("runs", "v1_versions", "v2_jobs", "succeeded", "failed", "running", "gpu_hours", "gpu_hours_under_20",
            "avg_gpu_util")
    return dict(zip(keys, row))


def build_report(warehouse: str | os.PathLike | None, out: str | os.PathLike, *, snapshot: int | None = None,
                 top: int = 10) -> Path:
    """Write the report for the warehouse's latest snapshot (or `snapshot`) to `out`; returns its path."""
    con = connect(warehouse, snapshot=snapshot)
    try:
        page = render(con, title=f"ModelArts training jobs: {Path(warehouse or 'warehouse_data').name}", top=top)
    finally:
        con.close()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out


def render(con, *, title: str, top: int = 10) -> str:
    with plots.summary_once(con):
        figures = headline(con)
        snapshot = con.execute("SELECT max(snapshot_id) FROM loads").fetchone()[0]
        underused = plots.underused_jobs(con, top)
        sections = [
            ("Runs over time, by status category", plots.runs_over_time(con), ""),
            ("How busy the GPUs were", plots.gpu_util_distribution(con), ""),
            ("Which jobs left GPUs idle", plots.underused_chart(underused), _underused_table(underused)),
            ("Utilisation curves of the top runs", plots.top_run_curves(con, min(top, 5)), ""),
        ]
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             f"<p>Snapshot {snapshot}, written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. "
             "Sampling intervals are read as minutes (see docs/analysis.md).</p>",
             _figures_table(figures)]
    for heading, fig, after in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(f"<img alt='{html.escape(heading)}' src='data:image/png;base64,{plots.png_base64(fig)}'>")
        parts.append(after)
    parts.append("</body></html>")
    return "\n".join(parts)


def _figures_table(figures: dict) -> str:
    def fmt(value):
        return "-" if value is None else f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"

    rows = "".join(f"<tr><th>{html.escape(k.replace('_', ' '))}</th><td>{fmt(v)}</td></tr>" for k, v in figures.items())
    return f"<table class='figures'>{rows}</table>"


def _underused_table(rows: list[tuple]) -> str:
    if not rows:
        return "<p>No under-used GPU-hours.</p>"
    body = "".join(f"<tr><td>{html.escape(str(name))}</td><td>{html.escape(project)}</td><td>{job_id}</td>"
                   f"<td>{hours:,.1f}</td><td>{under:,.1f}</td></tr>"
                   for project, job_id, name, hours, under in rows)
    return ("<table><tr><th>job</th><th>project</th><th>job id</th><th>GPU-hours</th>"
            f"<th>under 20 %</th></tr>{body}</table>")
