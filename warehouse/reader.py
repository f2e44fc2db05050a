"""Read-only access for notebooks and SQL: never takes the writer's lock, never writes."""
from __future__ import annotations

import os
from pathlib import Path

from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:  # pandas costs ~0.4 s to import: the CLI and the writer never need it
    import pandas as pd

from warehouse import schema
from warehouse.store import DB_FILE, PARQUET_DIR, WarehouseError, glob_literal, raw_view_ddl

DEFAULT_WAREHOUSE = "warehouse_data"


def warehouse_dir(warehouse: str | os.PathLike | None = None) -> Path:
    """The folder given, else $MODELARTS_WAREHOUSE, else ./warehouse_data."""
    return Path(warehouse or os.environ.get("MODELARTS_WAREHOUSE") or DEFAULT_WAREHOUSE)


def parquet_glob(root: Path, table: str) -> str:
    return glob_literal(root / PARQUET_DIR / table) + "/**/*.parquet"


def connect(warehouse: str | os.PathLike | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB connection with every table.

    While a writer holds the database file (DuckDB allows no reader beside a writing
    process), this falls back to an in-memory connection whose tables are views over
    the Parquet export: the last completed write, never a half-written one.
    """
    root = warehouse_dir(warehouse)
    db = root / DB_FILE
    if not db.exists():
        raise WarehouseError(f"no warehouse at {root}: run `modelarts-etl ingest` or `sync` first, or pass the folder")
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.ConnectionException:
        pass  # this process holds the writer's connection, with another configuration
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise WarehouseError(f"cannot open {db}: {exc}") from None
    else:
        # raw_payloads is a view over the landing files by absolute path: follow a moved folder
        con.execute(raw_view_ddl(root / PARQUET_DIR / schema.RAW_PAYLOADS.name, temp=True))
        return con
    return _parquet_connection(root)


def _parquet_connection(root: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for table in schema.ALL_TABLES:
        if any((root / PARQUET_DIR / table.name).glob("*/*.parquet")):
            glob = parquet_glob(root, table.name).replace("'", "''")
            con.execute(f"CREATE VIEW \"{table.name}\" AS SELECT * FROM read_parquet('{glob}', union_by_name=true)")
    if any((root / PARQUET_DIR / schema.SYSTEM_METRIC_SAMPLES.name).glob("*/*.parquet")):
        # DuckDB's storage of the samples, which has no Parquet copy: folded back from the rows
        con.execute(f'CREATE VIEW "{schema.SYSTEM_METRIC_SERIES.name}" AS SELECT project_id, job_id, version_id, '
                    "metric, list(value ORDER BY sample_index) AS samples FROM system_metric_samples GROUP BY ALL")
    return con


def load(table: str, warehouse: str | os.PathLike | None = None, *, where: str | None = None) -> pd.DataFrame:
    """One table as a pandas DataFrame, e.g. load("parameters", warehouse="warehouse_data").

    `where` is an optional SQL filter (e.g. "project_id = 'abc'") applied before loading,
    so a notebook need not pull 11 million metric samples to look at one job.
    """
    if table not in schema.TABLES:
        raise WarehouseError(f"unknown table {table!r}; tables: {', '.join(schema.TABLES)}")
    con = connect(warehouse)
    try:
        sql = f'SELECT * FROM "{table}"' + (f" WHERE {where}" if where else "")
        return con.execute(sql).df()
    finally:
        con.close()
