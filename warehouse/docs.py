"""Render docs/tables.md from schema.py, so the table reference cannot drift from the code.

    python -m warehouse.docs > docs/tables.md
"""
from __future__ import annotations

from warehouse import analysis, schema


def _table_section(table: schema.Table) -> list[str]:
    kind = "View" if table.is_view else "Table"
    lines = [f"## `{table.name}`", "", table.doc, "", f"{kind}. Key: `({', '.join(table.key)})`", "",
             "| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{c.name}` | {c.duckdb_type} | {c.doc} |" for c in table.columns]
    lines.append("")
    return lines


def render_tables_markdown() -> str:
    lines = [
        "# Table reference",
        "",
        "Generated from `warehouse/schema.py` by `python -m warehouse.docs > docs/tables.md`; "
        "a test fails when this file is out of date.",
        "",
        "Every table is a DuckLake table or view (attach the warehouse as `modelarts`: see the README); "
        "the data are Parquet files under `<warehouse>/data/`, which are not the table on their own "
        "(deletes live in their own files): use `modelarts-etl export --parquet DIR` for plain Parquet.",
        "",
    ]
    for table in schema.ALL_TABLES + (schema.SYSTEM_METRIC_SERIES, schema.LOADS):
        lines += _table_section(table)
    lines += [
        "# Analysis views",
        "",
        "Defined in `warehouse/analysis.py`; what each answers, with SQL to copy, is in docs/analysis.md. "
        "Plain views: nothing is computed at ingest. A lake made before them gets them when a writer next opens it.",
        "",
    ]
    for table in analysis.ANALYSIS_VIEWS:
        lines += _table_section(table)
    lines += [
        "## `parameters_wide`",
        "",
        "One row per run of either API generation (`project_id`, `api_version`, `run_id`, then `job_id`, "
        "`version_id`, `training_job_id`), then one column per parameter name (v1 label, v2 name). "
        "Not a view: its columns are the names in the data, and a view's columns are fixed when it is made. "
        "`dataset(folder).parameters_wide()` (text values) or `.parameters_wide(numeric=True)` "
        "(`value_number`) pivots on demand, at the dataset's snapshot; in SQL: "
        "`PIVOT run_parameters ON name USING first(value) GROUP BY project_id, api_version, run_id`.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_tables_markdown(), end="")
