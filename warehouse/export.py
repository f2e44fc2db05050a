"""Plain copies of one snapshot, for tools that do not read DuckLake.

A DuckLake's data folder is not the table (delete files, files of old snapshots), so
readers that only know Parquet get an export instead.

Parquet: `dest` is a symlink to `<dest>.versions/<snapshot>-<random>/`, swapped in one
`os.replace` once a version is complete, so a reader sees the previous export or the new
one, never a mix. To read several tables of one export, resolve `dest` once
(`os.path.realpath(dest)`) and read from that folder; its `_snapshot.json` says which
snapshot it is and how many rows each table has. The previous version is kept for readers
still in it; older ones are deleted by the next export. Every file name carries its version,
so a reader whose folder was swapped mid-listing fails loudly instead of mixing two exports.

DuckDB: a standalone database file, written beside `dest` under a temporary name and renamed
over it.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
from filelock import FileLock

from warehouse import analysis, lake, schema
from warehouse.reader import connect
from warehouse.store import WarehouseError

SNAPSHOT_FILE = "_snapshot.json"
VERSIONS_SUFFIX = ".versions"
PARQUET_FILE_BYTES = "256MB"  # a table larger than this is split into several files
OUT = "export_out"  # where export_duckdb attaches its new file


@dataclass
class ExportReport:
    snapshot_id: int
    path: Path
    tables: dict[str, int]  # table -> rows written
    snapshot_time: datetime | None = None


@dataclass(frozen=True)
class _Snapshot:
    id: int
    time: datetime


# -- reading one snapshot ---------------------------------------------------------------------
@contextmanager
def _pinned(warehouse: str | os.PathLike, snapshot: int | None) -> Iterator[tuple[duckdb.DuckDBPyConnection, _Snapshot]]:
    """A read-only connection to the lake as of one snapshot (the latest when None). Resolving the
    id first and attaching at it means every table is read from that one snapshot, even while a
    writer commits."""
    chosen = _resolve(warehouse, snapshot)
    con = connect(warehouse, snapshot=chosen.id)
    try:
        yield con, chosen
    finally:
        con.close()


def _resolve(warehouse: str | os.PathLike, snapshot: int | None) -> _Snapshot:
    con = connect(warehouse)
    try:
        if snapshot is None:
            snapshot = con.execute(f"SELECT id FROM {lake.ALIAS}.current_snapshot()").fetchone()[0]
        row = con.execute(f"SELECT snapshot_id, snapshot_time FROM ducklake_snapshots('{lake.ALIAS}') "
                          "WHERE snapshot_id = ?", [int(snapshot)]).fetchone()
    finally:
        con.close()
    if row is None:
        raise WarehouseError(f"no snapshot {snapshot} in the warehouse (never made, or expired by maintenance): "
                             "pick an id from `modelarts-etl snapshots`")
    return _Snapshot(int(row[0]), row[1])


def _select(table: schema.Table, source: str = lake.ALIAS) -> str:
    cols = ", ".join(f'"{c}"' for c in table.column_names)
    return f'SELECT {cols} FROM {source}."{table.name}"'


# -- Parquet --------------------------------------------------------------------------------
def export_parquet(warehouse: str | os.PathLike, dest: str | os.PathLike, *,
                   snapshot: int | None = None) -> ExportReport:
    """Every table of the contract, as of one snapshot, to `dest/<table>/` (pandas.read_parquet(dest/<table>)
    works). A reader of `dest` sees the previous export or this one, never a mix."""
    dest = Path(dest).absolute()
    versions = dest.with_name(dest.name + VERSIONS_SUFFIX)
    _refuse_foreign(dest, versions)
    with _pinned(warehouse, snapshot) as (con, snap):
        versions.mkdir(parents=True, exist_ok=True)
        with FileLock(str(versions / ".lock")):  # two exports to one dest must not prune each other
            _refuse_foreign(dest, versions)
            folder = versions / f"{snap.id}-{secrets.token_hex(4)}"
            counts = _write_version(con, snap, folder)
            previous = _current_version(dest)
            _swap_link(dest, folder)
            _prune(versions, keep={folder.name, previous})
    return ExportReport(snap.id, dest, counts, snap.time)


def _write_version(con: duckdb.DuckDBPyConnection, snap: _Snapshot, folder: Path) -> dict[str, int]:
    folder.mkdir()
    counts = {}
    for table in schema.ALL_TABLES:
        target = folder / table.name
        target.mkdir()
        pattern = f"{table.name}-{folder.name}-{{i}}"
        counts[table.name] = con.execute(
            f"COPY ({_select(table)}) TO {lake.sql_literal(str(target))} (FORMAT parquet, "
            f"FILE_SIZE_BYTES '{PARQUET_FILE_BYTES}', FILENAME_PATTERN {lake.sql_literal(pattern)})").fetchone()[0]
    manifest = {"snapshot_id": snap.id, "snapshot_time": snap.time.isoformat(),
                "exported_at": datetime.now(timezone.utc).isoformat(), "tables": counts}
    (folder / SNAPSHOT_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return counts


def _refuse_foreign(dest: Path, versions: Path) -> None:
    """Only a link into our own versions folder may be replaced: anything else is somebody's data."""
    if not os.path.lexists(dest) or _current_version(dest) is not None:
        return
    raise WarehouseError(f"{dest} exists and is not an export made by modelarts-etl: "
                         "choose another --parquet folder, or move it away first")


def _current_version(dest: Path) -> str | None:
    """The version folder name `dest` links to, if it is one of ours."""
    if not dest.is_symlink():
        return None
    target = Path(os.path.normpath(dest.parent / os.readlink(dest)))
    return target.name if target.parent == dest.with_name(dest.name + VERSIONS_SUFFIX) else None


def _swap_link(dest: Path, folder: Path) -> None:
    link = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.link")
    link.symlink_to(Path(folder.parent.name) / folder.name)  # relative: the pair can move together
    try:
        os.replace(link, dest)
    except BaseException:
        link.unlink(missing_ok=True)
        raise


def _prune(versions: Path, keep: set[str | None]) -> None:
    """Delete version folders older than the previous one, and any a crashed export left."""
    for entry in versions.iterdir():
        if entry.is_dir() and entry.name not in keep:
            shutil.rmtree(entry, ignore_errors=True)


# -- DuckDB ---------------------------------------------------------------------------------
def export_duckdb(warehouse: str | os.PathLike, dest: str | os.PathLike, *,
                  snapshot: int | None = None) -> ExportReport:
    """One snapshot as a standalone DuckDB file, written beside `dest` and renamed over it."""
    dest = Path(dest).absolute()
    if dest.exists() and not _is_duckdb_file(dest):
        raise WarehouseError(f"{dest} exists and is not a DuckDB file: choose another --duckdb file, "
                             "or move it away first")
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
    try:
        with _pinned(warehouse, snapshot) as (con, snap):
            dest.parent.mkdir(parents=True, exist_ok=True)
            counts = _copy_tables(con, snap, tmp)
        _create_views(tmp, counts)
        os.replace(tmp, dest)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            leftover.unlink(missing_ok=True)
    return ExportReport(snap.id, dest, counts, snap.time)


def _copy_tables(con: duckdb.DuckDBPyConnection, snap: _Snapshot, file: Path) -> dict[str, int]:
    """The stored tables, and the load ledger up to the snapshot, as plain tables."""
    con.execute(f"ATTACH {lake.sql_literal(str(file))} AS {OUT}")
    try:
        counts = {}
        for table in schema.STORED_TABLES + (schema.LOADS,):
            where = f" WHERE snapshot_id <= {snap.id}" if table is schema.LOADS else ""
            con.execute(f'CREATE TABLE {OUT}."{table.name}" AS {_select(table)}{where}')
            for sql in table.comments(f'{OUT}."{table.name}"'):
                con.execute(sql)
            counts[table.name] = con.execute(f'SELECT count(*) FROM {OUT}."{table.name}"').fetchone()[0]
        return counts
    finally:
        con.execute(f"DETACH {OUT}")


def _create_views(file: Path, counts: dict[str, int]) -> None:
    """The views of the contract over the copied tables, made in the file itself so their
    table names resolve to it, not to the lake."""
    con = duckdb.connect(str(file))
    try:
        for view in schema.ALL_TABLES + analysis.ANALYSIS_VIEWS:
            if view.is_view:
                con.execute(view.ddl())
                con.execute(f"COMMENT ON VIEW \"{view.name}\" IS {lake.sql_literal(view.doc)}")
                counts[view.name] = con.execute(f'SELECT count(*) FROM "{view.name}"').fetchone()[0]
        con.execute("CHECKPOINT")
    finally:
        con.close()



def _is_duckdb_file(path: Path) -> bool:
    """DuckDB's header: an 8-byte checksum, then the magic bytes DUCK."""
    try:
        with open(path, "rb") as f:
            return f.read(12)[8:12] == b"DUCK"
    except OSError:
        return False
