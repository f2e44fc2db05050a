"""Read-only access for notebooks and SQL: never takes the writer's lock, never blocks a writer.

    from warehouse import load, connect
    con = connect("warehouse_data")                 # every table and view, as of the latest snapshot
    con = connect("warehouse_data", snapshot=12)    # ... or as of snapshot 12 (see the `loads` view)
    df = load("parameters", warehouse="warehouse_data", where="project_id = 'abc'")
"""
from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:  # pandas costs ~0.4 s to import: the CLI and the writer never need it
    import pandas as pd

from warehouse import lake, schema
from warehouse.lake import LakeConfig, LakeError
from warehouse.store import WarehouseError, recover_hint

DEFAULT_WAREHOUSE = "warehouse_data"


def warehouse_dir(warehouse: str | os.PathLike | None = None) -> Path:
    """The folder given, else $MODELARTS_WAREHOUSE, else ./warehouse_data."""
    return Path(warehouse or os.environ.get("MODELARTS_WAREHOUSE") or DEFAULT_WAREHOUSE)


def connect(warehouse: str | os.PathLike | None = None, *, snapshot: int | None = None,
            at: datetime | str | None = None, catalog: str | None = None,
            data_path: str | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the lake attached read-only as `modelarts` (and in use), so
    `SELECT * FROM job_versions` works. `snapshot` (an id from the `loads` view) or `at` (a
    time) shows every table as it was then."""
    config = None
    try:
        config = LakeConfig.for_folder(warehouse_dir(warehouse), catalog, data_path)
        if not config.exists():
            from warehouse.migrate import needs_migration
            from warehouse.recover import has_raw_files

            if needs_migration(config.root):
                raise WarehouseError(f"{config.root} holds a warehouse of the pre-DuckLake layout: convert it with "
                                     f"`modelarts-etl migrate --warehouse {config.root}` (or any writer), then read")
            if has_raw_files(config.root):
                raise WarehouseError(f"the warehouse {config.root} has data files but no catalog: run "
                                     f"`modelarts-etl recover --warehouse {config.root}` to rebuild it from them")
            raise WarehouseError(f"no warehouse at {config.root}: run `modelarts-etl ingest` or `sync` first, "
                                 "or pass the folder")
        con = lake.new_connection()
        lake.attach(con, config, read_only=True, snapshot=snapshot,
                    at_time=at.isoformat() if isinstance(at, datetime) else at)
    except LakeError as exc:
        raise WarehouseError(f"{exc}{recover_hint(config)}") from None
    con.execute(f"USE {lake.ALIAS}")
    return con


def load(table: str, warehouse: str | os.PathLike | None = None, *, where: str | None = None,
         snapshot: int | None = None, at: datetime | str | None = None) -> pd.DataFrame:
    """One table as a pandas DataFrame, e.g. load("parameters", warehouse="warehouse_data").

    `where` is an optional SQL filter (e.g. "project_id = 'abc'") applied before loading,
    so a notebook need not pull 11 million metric samples to look at one job.
    """
    if table not in schema.TABLES and table != schema.LOADS.name:
        raise WarehouseError(f"unknown table {table!r}; tables: {', '.join(schema.TABLES)}, loads")
    con = connect(warehouse, snapshot=snapshot, at=at)
    try:
        sql = f'SELECT * FROM "{table}"' + (f" WHERE {where}" if where else "")
        return con.execute(sql).df()
    finally:
        con.close()
