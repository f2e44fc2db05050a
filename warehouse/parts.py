"""Parquet files written straight from the Arrow batches a load already holds.

Why: re-reading millions of freshly inserted rows out of DuckDB to export them costs
as much as inserting them. During a load each (table, project, file) gets one open
ParquetWriter on a hidden temporary name; every committed batch is appended to it;
when the load ends the files are renamed into place. Until then readers see the
previous files, and the `_dirty` marks committed with the data make the next writer
re-export from DuckDB whatever a crash left unfinished.
"""
from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from warehouse import failpoints

ROW_GROUP_ROWS = 262_144  # as the DuckDB COPY export
ROW_GROUP_BYTES = 32 << 20  # a file's pending rows are written out at this size, so memory stays bounded
PENDING_BYTES = 64 << 20  # all files together: beyond this the largest pending row groups are written
ZSTD_LEVEL = 1  # level 1 writes as fast as snappy here and compresses like DuckDB's default zstd


class StreamedFiles:
    """Open Parquet writers of one load, keyed by (table, project_id, file name)."""

    def __init__(self, root: Path):
        self.root = root
        self._open: dict[tuple[str, str, str], _Stream] = {}

    def __contains__(self, key: tuple[str, str, str]) -> bool:
        return key in self._open

    def open(self, table: str, project_id: str, name: str, arrow_schema: pa.Schema) -> None:
        key = (table, project_id, name)
        if key not in self._open:
            self._open[key] = _Stream(self.root / table / project_id, name, arrow_schema)

    def write(self, table: str, project_id: str, name: str, data: pa.Table) -> None:
        self._open[(table, project_id, name)].write(data)
        pending = sum(s.pending_bytes for s in self._open.values() if s.writer is not None)
        if pending > PENDING_BYTES:  # a long load has many part files open: keep their buffers bounded
            for stream in sorted((s for s in self._open.values() if s.writer is not None), key=lambda s: -s.pending_bytes):
                pending -= stream.pending_bytes
                stream.flush()
                if pending <= PENDING_BYTES // 2:
                    break

    def complete(self, key: tuple[str, str, str]) -> None:
        """No more rows for this file: write its footer now (it is renamed into place in finish())."""
        stream = self._open.get(key)
        if stream is not None:
            stream.close()

    def discard(self, key: tuple[str, str, str]) -> None:
        """Give up on one file (its partition stays dirty and is exported from DuckDB instead)."""
        stream = self._open.pop(key, None)
        if stream is not None:
            stream.abort()

    def finish(self) -> list[tuple[str, str, str]]:
        """Close every file and rename it into place; returns the keys now exported."""
        done = []
        try:
            for key in list(self._open):
                self._open[key].close()
                failpoints.hit("export_tmp_written")
                self._open.pop(key).publish()
                failpoints.hit("export_partition_done")
                done.append(key)
        finally:
            self.abort()
        return done

    def abort(self) -> None:
        for stream in self._open.values():
            stream.abort()
        self._open.clear()


class _Stream:
    def __init__(self, folder: Path, name: str, arrow_schema: pa.Schema):
        folder.mkdir(parents=True, exist_ok=True)
        self.target = folder / name
        self.tmp = folder / f".{name}.tmp"
        self.schema = arrow_schema
        self.writer: pq.ParquetWriter | None = pq.ParquetWriter(
            self.tmp, arrow_schema, compression="zstd", compression_level=ZSTD_LEVEL,
            store_schema=False)  # as DuckDB's COPY: dictionary-encoded input reads back as plain strings
        self.pending: list[pa.Table] = []
        self.pending_rows = self.pending_bytes = 0

    def write(self, data: pa.Table) -> None:
        if data.num_rows == 0:
            return
        if data.schema != self.schema:
            data = data.select(self.schema.names).cast(self.schema)
        self.pending.append(data)
        self.pending_rows += data.num_rows
        self.pending_bytes += data.nbytes
        if self.pending_rows >= ROW_GROUP_ROWS or self.pending_bytes >= ROW_GROUP_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            data = pa.concat_tables(self.pending)
            self.pending, self.pending_rows, self.pending_bytes = [], 0, 0
            self.writer.write_table(data, row_group_size=ROW_GROUP_ROWS)

    def close(self) -> None:
        if self.writer is not None:
            self.flush()
            self.writer.close()
            self.writer = None

    def publish(self) -> None:
        os.replace(self.tmp, self.target)

    def abort(self) -> None:
        self.pending = []
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001 - best effort: the file is deleted next
                pass
            self.writer = None
        try:
            self.tmp.unlink()
        except FileNotFoundError:
            pass


def hidden_name(name: str) -> str:
    """The temporary name a file is written under: no reader's `*.parquet` glob matches it."""
    return f".{name}.tmp"


def write_parquet_file(folder: Path, name: str, data: pa.Table, *, durable: bool = True) -> Path:
    """Write a whole file under its temporary name; `durable` flushes it to disk before returning,
    so a commit that records it can be trusted after a power cut. `publish` renames it into place."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / hidden_name(name)
    pq.write_table(data, tmp, compression="zstd", compression_level=ZSTD_LEVEL, row_group_size=ROW_GROUP_ROWS,
                   store_schema=False)
    if durable:
        _fsync(tmp)
    return tmp


def concat_parquet_files(folder: Path, name: str, sources: list[Path], arrow_schema: pa.Schema) -> Path:
    """One file holding the rows of `sources`, in order, each source one row group: written and
    flushed to disk under its temporary name (as write_parquet_file) with one source in memory
    at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / hidden_name(name)
    with pq.ParquetWriter(tmp, arrow_schema, compression="zstd", compression_level=ZSTD_LEVEL,
                          store_schema=False) as writer:
        for source in sources:
            writer.write_table(pq.read_table(source).select(arrow_schema.names).cast(arrow_schema),
                               row_group_size=ROW_GROUP_ROWS)
    _fsync(tmp)
    return tmp


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(folder: Path, name: str) -> None:
    os.replace(folder / hidden_name(name), folder / name)
