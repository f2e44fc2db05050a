"""Warehouses written before the DuckLake layout (`modelarts.duckdb` + `parquet/`) convert on open.

The old layout kept every raw body in self-describing Parquet landing files
(`parquet/raw_payloads/<project>/raw-*.parquet`), and every tidy row is derived from them.
So the conversion lands those bodies, byte for byte and with their original columns, as one
snapshot, derives the tidy tables from them, and moves the old files aside. (The old
`modelarts.duckdb` was written by DuckDB 2.0, which this DuckDB cannot open; it holds
nothing the landing files do not.)

Landing files the old writer left under their temporary name (`.raw-….parquet.tmp`, a
writer killed around its raw commit) are landed too when they read whole: the old writer
flushed a file before committing it, so a committed one is always whole, and losing it
would lose bodies. One that does not read (killed while writing it, so never committed)
is skipped, and moved aside with the rest.

The order and the duplicates are worked out from the keys alone, then the bodies are read
and inserted a batch at a time, all in one transaction: one insert of every body overran the
writer's DuckDB memory limit (256 MB) at 20,000 payloads (130 MB of JSON).

Crash-safe without bookkeeping: bodies already in the lake are skipped, so a conversion
killed half-way is simply run again by the next writer.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from warehouse import schema

if TYPE_CHECKING:
    from warehouse.store import Warehouse

LEGACY_PARQUET = "parquet"
LEGACY_DB = "modelarts.duckdb"
LEGACY_NAMES = (LEGACY_PARQUET, LEGACY_DB, LEGACY_DB + ".wal", ".duckdb_tmp")
MOVED_ASIDE = "pre-ducklake"
SOURCE = "migrate"  # the `source` of the migration's snapshots in the loads view
_KEY_COLUMNS = ["project_id", "source", "payload_sha256", "load_id", "fetched_at", "byte_size"]
_CACHED_FILE_BYTES = 64 << 20  # landing files kept read while their rows are inserted


def legacy_raw_files(root: Path) -> list[Path]:
    """Every landing file, including one a crash left under its temporary name (`.raw-….parquet.tmp`)."""
    raw_dir = root / LEGACY_PARQUET / schema.RAW_PAYLOADS.name
    if not raw_dir.is_dir():
        return []
    files = [p for p in raw_dir.glob("*/*") if p.name.startswith(("raw-", ".raw-")) and ".parquet" in p.name]
    return sorted(files, key=lambda p: (p.parent.name, p.name.lstrip(".")))


def needs_migration(root: Path) -> bool:
    return any((root / name).exists() for name in LEGACY_NAMES)


def migrate_legacy_layout(wh: "Warehouse") -> int:
    """Convert the old layout in wh.root if it is there; returns the bodies landed."""
    root = wh.root
    if not needs_migration(root):
        return 0
    files, keys = landing_keys(legacy_raw_files(root))
    source, wh.source = wh.source, SOURCE
    try:
        landed = land_raw_rows(wh, files, keys, step="migrate")
        wh.derive_pending()
    finally:
        wh.source = source
    _move_aside(root)
    return landed


def land_raw_rows(wh: "Warehouse", files: list[Path], keys: pa.Table | None, *, step: str) -> int:
    """Land the raw rows `keys` names (see landing_keys), byte for byte with their own columns, in
    landing order and once per raw key, as one snapshot; returns how many were new."""
    from warehouse.batches import cuts
    from warehouse.store import DEFAULT_BATCH_BYTES, DEFAULT_BATCH_RECORDS, LoadReport, transaction

    if keys is None:
        return 0
    # landing order, as the old writer derived: by load, then arrival, then place in its file
    keys = keys.take(pc.sort_indices(keys, [("load_id", "ascending"), ("fetched_at", "ascending"),
                                            ("file_idx", "ascending"), ("row_idx", "ascending")]))
    fresh = [i for i, key in enumerate(zip(*(keys.column(c).to_pylist()
                                             for c in ("project_id", "source", "payload_sha256"))))
             if wh.claim_raw_key(*key)]  # a body in two files (a merge the writer left) lands once
    if not fresh:
        return 0
    keys = keys.take(pa.array(fresh, pa.int64()))
    reader = _Bodies(files)
    sizes = keys.column("byte_size").to_numpy(zero_copy_only=False)
    with transaction(wh.con, step):
        for start, stop in cuts(sizes, DEFAULT_BATCH_RECORDS, DEFAULT_BATCH_BYTES):
            wh.insert(schema.RAW_PAYLOADS.name, reader.rows(keys.slice(start, stop - start)))
        projects = set(keys.column("project_id").unique().to_pylist())
        wh.label_snapshot(step, LoadReport(landed=keys.num_rows, projects=projects), load_id=step)
    return keys.num_rows


def landing_keys(paths: list[Path], unreadable: list | None = None) -> tuple[list[Path], pa.Table | None]:
    """The files that read, and one row per body in them: its key columns, file and row number.
    With `unreadable` (a list), a file that does not read is skipped and added to it as (path, reason)."""
    from warehouse.store import WarehouseError

    files, tables = [], []
    for path in paths:
        try:
            table = pq.read_table(path, columns=_KEY_COLUMNS)
        except (pa.ArrowException, OSError) as exc:
            if unreadable is not None:
                unreadable.append((path, str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"))
                continue
            if path.name.startswith("."):
                continue  # half-written by a writer killed before its commit: see the module doc
            raise WarehouseError(
                f"cannot read the old landing file {path} ({exc}); nothing was converted. Restore the file "
                f"from a backup, or move it out of {path.parent} to convert without its bodies") from None
        table = table.select(_KEY_COLUMNS).cast(pa.schema([schema.RAW_PAYLOADS.schema.field(c) for c in _KEY_COLUMNS]))
        n = table.num_rows
        tables.append(table.append_column("file_idx", pa.array(np.full(n, len(files), np.int32)))
                      .append_column("row_idx", pa.array(np.arange(n, dtype=np.int64))))
        files.append(path)
    tables = [t for t in tables if t.num_rows]
    return files, (pa.concat_tables(tables) if tables else None)


class _Bodies:
    """Raw rows by (file, row number), reading each landing file whole and keeping the latest few."""

    def __init__(self, files: list[Path]):
        self._files = files
        self._cache: OrderedDict[int, pa.Table] = OrderedDict()

    def rows(self, keys: pa.Table) -> pa.Table:
        """The full raw rows of `keys`, in its order."""
        file_idx = keys.column("file_idx").to_numpy(zero_copy_only=False)
        row_idx = keys.column("row_idx").to_numpy(zero_copy_only=False)
        pieces, order = [], []
        for f in dict.fromkeys(file_idx.tolist()):
            at = np.flatnonzero(file_idx == f)
            pieces.append(self._table(f).take(pa.array(row_idx[at])))
            order.append(at)
        rows = pa.concat_tables(pieces)
        return rows.take(pa.array(np.argsort(np.concatenate(order), kind="stable")))

    def _table(self, f: int) -> pa.Table:
        table = self._cache.pop(f, None)
        if table is None:
            table = _as_raw(pq.read_table(self._files[f]))
        self._cache[f] = table
        while len(self._cache) > 1 and sum(t.nbytes for t in self._cache.values()) > _CACHED_FILE_BYTES:
            self._cache.popitem(last=False)
        return table


def _move_aside(root: Path, names: tuple[str, ...] = LEGACY_NAMES, aside_name: str = MOVED_ASIDE) -> Path | None:
    """Nothing is deleted: the old files go to <root>/pre-ducklake/, to remove once the lake looks right.
    Where a file of that name was moved there already (the old release wrote here again after a
    conversion), they go to pre-ducklake-2/, -3/, ... instead: nothing moved aside is overwritten."""
    names = [name for name in names if os.path.lexists(root / name)]
    if not names:
        return None
    n = 1
    while True:
        aside = root / (aside_name if n == 1 else f"{aside_name}-{n}")
        if not any(os.path.lexists(aside / name) for name in names):
            break
        n += 1
    aside.mkdir(exist_ok=True)
    for name in names:
        os.rename(root / name, aside / name)  # one folder, one file system: a rename, never a copy
    return aside


def _as_raw(table: pa.Table) -> pa.Table:
    """An old raw landing file in today's raw_payloads shape; columns added since (training_job_id) are NULL."""
    for column in schema.RAW_PAYLOADS.columns:
        if column.name not in table.column_names:
            table = table.append_column(column.name, pa.nulls(table.num_rows, column.type))
    return table.select(schema.RAW_PAYLOADS.column_names).cast(schema.RAW_PAYLOADS.schema)
