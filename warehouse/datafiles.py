"""The lake's data files, one by one: which are damaged, and the raw bodies still readable.

DuckLake reads a table as all of its files: one truncated or deleted file makes every query on
the table fail, even one filtered to other rows (it does not prune by rowid). So `check` reads
each file of the current snapshot on its own, and a writer that meets a damaged raw file reads
the raw bodies from the other files directly (`readable_raw_sql`), with the same rowids: every
readable body is still derived, and only the damaged file's bodies are missing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import duckdb
import pyarrow.parquet as pq

from warehouse import lake, schema

METADATA = f"__ducklake_metadata_{lake.ALIAS}"
ROW_ID_COLUMN = "_ducklake_internal_row_id"  # present in files whose row ids are not contiguous


@dataclass(frozen=True)
class DataFile:
    table: str
    path: str  # absolute
    rows: int  # as the catalog recorded it
    size: int  # bytes, as the catalog recorded it
    row_id_start: int | None
    delete_file: str | None

    @property
    def rowids(self) -> str:
        if self.row_id_start is None:
            return "rowids unknown"
        return f"rowids {self.row_id_start}-{self.row_id_start + self.rows - 1}"


@dataclass(frozen=True)
class Damage:
    file: DataFile
    problem: str

    def line(self, root: str | os.PathLike | None = None) -> str:
        local = root and "://" not in self.file.path
        path = os.path.relpath(self.file.path, root) if local else self.file.path
        return f"damaged: {self.file.table} {path} ({self.file.rows} rows, {self.file.rowids}): {self.problem}"


def data_files(con: duckdb.DuckDBPyConnection, table: str) -> list[DataFile]:
    """The files the current snapshot reads for `table`, with what the catalog recorded of each."""
    rows = con.execute(
        f"SELECT l.data_file, f.record_count, f.file_size_bytes, f.row_id_start, l.delete_file "
        f"FROM ducklake_list_files('{lake.ALIAS}', ?) l "
        f"JOIN {METADATA}.ducklake_data_file f ON f.end_snapshot IS NULL AND ends_with(l.data_file, f.path) "
        f"JOIN {METADATA}.ducklake_table t ON t.table_id = f.table_id AND t.end_snapshot IS NULL AND t.table_name = ? "
        "ORDER BY f.row_id_start", [table, table]).fetchall()
    return [DataFile(table, path, int(n), int(size), start, delete) for path, n, size, start, delete in rows]


def probe(file: DataFile, con: duckdb.DuckDBPyConnection | None = None) -> str | None:
    """Why the file cannot be read whole (None when it can): every page is decoded. Files on object
    storage (s3://) are read through `con`, which holds the store's secret."""
    if "://" in file.path:
        return _probe_remote(file, con)
    if not os.path.exists(file.path):
        return "missing file"
    if os.path.getsize(file.path) != file.size:
        return f"size {os.path.getsize(file.path)} bytes, the catalog recorded {file.size}"
    rows, problem = read_whole(file.path)
    if problem is None and rows != file.rows:
        return f"{rows} rows, the catalog recorded {file.rows}"
    if problem is None and file.delete_file is not None:
        problem = read_whole(file.delete_file)[1]
        return None if problem is None else f"its delete file: {problem}"
    return problem


def _probe_remote(file: DataFile, con: duckdb.DuckDBPyConnection | None) -> str | None:
    if con is None:
        return None  # nothing to read it with: not reported as damage
    try:
        rows = con.execute("SELECT count(*) FROM read_parquet(?)", [file.path]).fetchone()[0]
        if file.delete_file is not None:
            con.execute("SELECT count(*) FROM read_parquet(?)", [file.delete_file]).fetchone()
    except duckdb.Error as exc:
        return f"unreadable ({_first_line(exc)})"
    return None if rows == file.rows else f"{rows} rows, the catalog recorded {file.rows}"


def read_whole(path: str | os.PathLike) -> tuple[int, str | None]:
    """(rows, None) when every page of the Parquet file decodes, else (0, why not)."""
    try:
        parquet = pq.ParquetFile(path)
        rows = 0
        for group in range(parquet.num_row_groups):
            rows += parquet.read_row_group(group).num_rows
    except FileNotFoundError:
        return 0, "missing file"
    except Exception as exc:  # pyarrow raises several types for bad bytes
        return 0, f"unreadable ({_first_line(exc)})"
    return rows, None


def damaged(con: duckdb.DuckDBPyConnection, tables=None) -> list[Damage]:
    """Every damaged file of `tables` (default: every stored table), in the current snapshot."""
    found = []
    for table in tables or [t.name for t in schema.STORED_TABLES]:
        for file in data_files(con, table):
            problem = probe(file, con)
            if problem is not None:
                found.append(Damage(file, problem))
    return found


def readable_raw_sql(con: duckdb.DuckDBPyConnection, damage: list[Damage]) -> str:
    """A query of raw_payloads (with `rowid`) over its readable files only, read directly."""
    bad = {d.file.path for d in damage}
    cols = ", ".join(f'"{c}"' for c in schema.RAW_PAYLOADS.column_names)
    parts = []
    for file in data_files(con, schema.RAW_PAYLOADS.name):
        if file.path in bad:
            continue
        names = pq.read_schema(file.path).names
        rowid = f'"{ROW_ID_COLUMN}"' if ROW_ID_COLUMN in names else f"{int(file.row_id_start)} + file_row_number"
        where = ""
        if file.delete_file:
            where = (f" WHERE file_row_number NOT IN (SELECT pos FROM read_parquet("
                     f"{lake.sql_literal(file.delete_file)}))")
        parts.append(f"SELECT {cols}, CAST({rowid} AS BIGINT) AS rowid FROM read_parquet("
                     f"{lake.sql_literal(file.path)}, file_row_number = true){where}")
    if not parts:
        empty = ", ".join(f'CAST(NULL AS {c.duckdb_type}) AS "{c.name}"' for c in schema.RAW_PAYLOADS.columns)
        return f"SELECT {empty}, CAST(NULL AS BIGINT) AS rowid WHERE false"
    return " UNION ALL ".join(parts)


def is_damage_error(exc: BaseException) -> bool:
    """A DuckDB error that a missing or damaged data file causes."""
    text = str(exc)
    return isinstance(exc, (duckdb.IOException, duckdb.InvalidInputException)) and (
        ".parquet" in text or "No files found" in text or "magic bytes" in text or "footer" in text)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
