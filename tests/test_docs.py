"""docs/tables.md and the DuckDB DDL come from schema.py; this fails when they drift."""
from __future__ import annotations

from pathlib import Path


from warehouse import analysis, connect, schema
from warehouse.docs import render_tables_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_tables_doc_is_generated_from_the_schema():
    assert (ROOT / "docs" / "tables.md").read_text() == render_tables_markdown(), (
        "run: python -m warehouse.docs > docs/tables.md")


def test_duckdb_tables_match_the_arrow_schemas(wh_dir):
    from conftest import land

    land(wh_dir, [(ROOT / "tests" / "data" / "seed_example.json").read_bytes()])
    con = connect(wh_dir)
    try:
        for table in schema.ALL_TABLES + analysis.ANALYSIS_VIEWS:
            described = con.execute(f"DESCRIBE {table.name}").fetchall()
            assert [(r[0], r[1].replace("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ")) for r in described] == [
                (c.name, c.duckdb_type) for c in table.columns], table.name
    finally:
        con.close()
