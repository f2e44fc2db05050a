"""Render docs/tables.md from schema.py, so the table reference cannot drift from the code.

    python -m warehouse.docs > docs/tables.md
"""
from __future__ import annotations

from warehouse import schema


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
        kind = "View" if table.is_view else "Table"
        lines += [f"## `{table.name}`", "", table.doc, "", f"{kind}. Key: `({', '.join(table.key)})`", "",
                  "| column | type | meaning |", "|---|---|---|"]
        lines += [f"| `{c.name}` | {c.duckdb_type} | {c.doc} |" for c in table.columns]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_tables_markdown(), end="")
