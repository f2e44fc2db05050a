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
        "Every table is in DuckDB (`<warehouse>/modelarts.duckdb`) and in Parquet "
        "(`<warehouse>/parquet/<table>/<project_id>/*.parquet`).",
        "",
    ]
    for table in schema.ALL_TABLES:
        lines += [f"## `{table.name}`", "", table.doc, "", f"Key: `({', '.join(table.key)})`", "",
                  "| column | type | meaning |", "|---|---|---|"]
        lines += [f"| `{c.name}` | {c.duckdb_type} | {c.doc} |" for c in table.columns]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_tables_markdown(), end="")
