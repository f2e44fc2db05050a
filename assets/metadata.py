"""What a materialization tells the Dagster UI about a table: row count, column schema, preview.

Built from schema.py (the contract, with each column's doc) and the lake as of the
snapshot the step committed, so the UI shows what is stored, not what an asset body
believed it wrote.
"""
from __future__ import annotations

from typing import Any

import dagster as dg
import duckdb
import pyarrow as pa

from assets.conventions import key
from warehouse import schema

PREVIEW_ROWS = 5
PREVIEW_COLUMNS = 8  # job_versions has 50 columns; a preview is a glance, not a dump
PREVIEW_CELL_CHARS = 40
SNAPSHOT_ID = "snapshot_id"  # metadata entry: the lake snapshot a materialization describes


def column_schema(table_name: str) -> dg.TableSchema:
    """The contract's columns, typed as DuckDB stores them, with their docs as descriptions."""
    table = schema.TABLES[table_name]
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c.name,
                type=c.duckdb_type,
                description=c.doc,
                tags={"key": "true"} if c.name in table.key else None,
            )
            for c in table.columns
        ]
    )


LINEAGE_VIA = {"jobs": "job_versions", "runs": "job_versions", "run_parameters": "parameters",
               "v2_metric_samples": "v2_metric_series"}
"""Views whose columns come from another table of the lake rather than from the raw payloads."""


def column_lineage(table_name: str) -> dg.TableColumnLineage | None:
    """Each column back to the raw_payloads column it comes from.

    A column raw_payloads has too (project_id, source, payload_sha256, load_id, ...) is
    copied from it; every other column is parsed out of the landed bytes, `payload`.
    `jobs` is a view over job_versions, so its columns point there.
    """
    if table_name == schema.RAW_PAYLOADS.name:
        return None
    upstream = LINEAGE_VIA.get(table_name, schema.RAW_PAYLOADS.name)
    upstream_columns = {c.name for c in schema.TABLES[upstream].columns}
    return dg.TableColumnLineage(deps_by_column={
        c.name: [dg.TableColumnDep(asset_key=key(upstream),
                                   column_name=c.name if c.name in upstream_columns else "payload")]
        for c in schema.TABLES[table_name].columns
    })


def definition_metadata(table_name: str) -> dict[str, Any]:
    """Static metadata, so the schema, key and lineage show in the UI before the first run."""
    table = schema.TABLES[table_name]
    lineage = column_lineage(table_name)
    return {
        "dagster/column_schema": column_schema(table_name),
        **({"dagster/column_lineage": lineage} if lineage else {}),
        "dagster/table_name": f"modelarts.main.{table_name}",
        "key": ", ".join(table.key),
        # jobs and system_metric_samples are views: say so, or a reader looks for their files
        "stored_as": "view" if table.is_view else "table",
    }


def project_row_count(con: duckdb.DuckDBPyConnection, table_name: str, project_id: str) -> int:
    return con.execute(f'SELECT count(*) FROM "{table_name}" WHERE project_id = ?', [project_id]).fetchone()[0]


def preview_markdown(con: duckdb.DuckDBPyConnection, table_name: str, project_id: str) -> str:
    """A few rows of the project as a markdown table; binary payloads are left out (bytes say nothing)."""
    table = schema.TABLES[table_name]
    names = [c.name for c in table.columns if c.type != pa.binary()][:PREVIEW_COLUMNS]
    cols = ", ".join(f'"{n}"' for n in names)
    order = ", ".join(f'"{k}"' for k in table.key)
    rows = con.execute(
        f'SELECT {cols} FROM "{table_name}" WHERE project_id = ? ORDER BY {order} LIMIT {PREVIEW_ROWS}',
        [project_id],
    ).fetchall()
    if not rows:
        return f"_no rows for project `{project_id}`_"
    header = "| " + " | ".join(names) + " |\n|" + "---|" * len(names) + "\n"
    body = "\n".join("| " + " | ".join(_cell(v) for v in row) + " |" for row in rows)
    more = "" if len(names) == len(table.columns) else f"\n\n_{len(table.columns) - len(names)} more columns_"
    return header + body + more


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= PREVIEW_CELL_CHARS else text[: PREVIEW_CELL_CHARS - 1] + "…"


def table_metadata(con: duckdb.DuckDBPyConnection, table_name: str, project_id: str,
                   snapshot_id: int | None = None) -> dict[str, Any]:
    """Everything one table's materialization reports, for the partition's project.

    `snapshot_id` names the lake snapshot the numbers are from, so a row count in the
    UI can be reproduced with `connect(folder, snapshot=...)` (and found in `loads`).
    """
    lineage = column_lineage(table_name)
    metadata = {
        "dagster/row_count": project_row_count(con, table_name, project_id),
        "dagster/column_schema": column_schema(table_name),
        **({"dagster/column_lineage": lineage} if lineage else {}),
        "preview": dg.MetadataValue.md(preview_markdown(con, table_name, project_id)),
    }
    if snapshot_id is not None:
        metadata[SNAPSHOT_ID] = snapshot_id
    return metadata
