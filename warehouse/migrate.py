"""Warehouses written before the DuckLake layout (`modelarts.duckdb` + `parquet/`) convert on open.

The old layout kept every raw body in self-describing Parquet landing files
(`parquet/raw_payloads/<project>/raw-*.parquet`), and every tidy row is derived from them.
So the conversion lands those bodies, byte for byte and with their original columns, as one
snapshot, derives the tidy tables from them, and moves the old files aside. (The old
`modelarts.duckdb` was written by DuckDB 2.0, which this DuckDB cannot open; it holds
nothing the landing files do not.)

Crash-safe without bookkeeping: bodies already in the lake are skipped, so a conversion
killed half-way is simply run again by the next writer.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from warehouse import schema

if TYPE_CHECKING:
    from warehouse.store import Warehouse

LEGACY_PARQUET = "parquet"
LEGACY_DB = "modelarts.duckdb"
MOVED_ASIDE = "pre-ducklake"


def legacy_raw_files(root: Path) -> list[Path]:
    """Every landing file, including one a crash left under its temporary name (`.raw-….parquet.tmp`)."""
    raw_dir = root / LEGACY_PARQUET / schema.RAW_PAYLOADS.name
    if not raw_dir.is_dir():
        return []
    files = [p for p in raw_dir.glob("*/*") if p.name.startswith(("raw-", ".raw-")) and ".parquet" in p.name]
    return sorted(files, key=lambda p: p.name.lstrip("."))


def needs_migration(root: Path) -> bool:
    return (root / LEGACY_PARQUET).is_dir() or (root / LEGACY_DB).exists()


def migrate_legacy_layout(wh: "Warehouse") -> int:
    """Convert the old layout in wh.root if it is there; returns the bodies landed."""
    root = wh.root
    if not needs_migration(root):
        return 0
    from warehouse.store import LoadReport, _transaction

    tables = [_read_raw(path) for path in legacy_raw_files(root)]
    landed = 0
    if tables:
        raw = pa.concat_tables(tables)
        raw = raw.take(pa.compute.sort_indices(raw, [("load_id", "ascending"), ("fetched_at", "ascending")]))
        shas = raw.column("payload_sha256").to_pylist()
        sources = raw.column("source").to_pylist()
        projects = raw.column("project_id").to_pylist()
        fresh = [i for i, key in enumerate(zip(projects, sources, shas)) if wh._claim_raw_key(*key)]
        if fresh:
            raw = raw.take(fresh)
            with _transaction(wh.con, "migrate"):
                wh._insert(schema.RAW_PAYLOADS.name, raw)
                wh._commit_message("migrate", LoadReport(landed=raw.num_rows, projects=set(projects)),
                                   load_id="migrate")
            landed = raw.num_rows
    wh.derive_pending()
    _move_aside(root)
    return landed


def _read_raw(path: Path) -> pa.Table:
    table = pq.read_table(path)
    return table.select(schema.RAW_PAYLOADS.column_names).cast(schema.RAW_PAYLOADS.schema)


def _move_aside(root: Path) -> None:
    """Nothing is deleted: the old files go to <root>/pre-ducklake/, to remove once the lake looks right."""
    aside = root / MOVED_ASIDE
    aside.mkdir(exist_ok=True)
    for name in (LEGACY_PARQUET, LEGACY_DB, LEGACY_DB + ".wal", ".duckdb_tmp"):
        if (root / name).exists():
            shutil.move(str(root / name), str(aside / name))
