"""The warehouse folder: DuckDB is the working copy, Parquet the export beside it.

Layout: `<root>/modelarts.duckdb` and `<root>/parquet/<table>/<project_id>/*.parquet`.
(Project folders are deliberately not `key=value` hive folders: hive type inference
would turn a project id like "123" into a BIGINT. Every file carries `project_id`.)
Raw bodies are the exception to "DuckDB holds the rows": they are landed once, as
Parquet files under `parquet/raw_payloads/`, and DuckDB's `raw_payloads` is a view over
them (storing and compressing 100+ MB of JSON twice cost more than all the tidy tables).

Why it is safe:
- one writer at a time, enforced by a file lock; a second writer waits, then stops
  with a clear message (DuckDB itself allows one writing process per file);
- raw bodies are landed before any tidy row is written: a batch's landing file is on
  disk before its keys commit in `_raw_keys`, and a body whose key is stored is not
  derived again, so re-loading changes nothing;
- every version's rows in every table are replaced in one DuckDB transaction;
- Parquet files are written to a temporary name and renamed into place, and the
  partitions still to export are recorded in the same transaction as the data, so a
  crash between the two is repaired by the next writer.
"""
from __future__ import annotations

import dataclasses
import os
import queue
import re
import secrets
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from filelock import FileLock, Timeout

from warehouse import failpoints, schema
from warehouse.flatten import SAMPLE_ARROW_SCHEMA, FlatBatch, flatten
from warehouse.parts import StreamedFiles, concat_parquet_files, hidden_name, publish, write_parquet_file
from warehouse.records import RawRecord

DB_FILE = "modelarts.duckdb"
PARQUET_DIR = "parquet"
LOCK_FILE = ".writer.lock"
DEFAULT_BATCH_RECORDS = 2000
DEFAULT_BATCH_BYTES = 8 * 1024 * 1024  # ~1,100 payloads of the benchmark corpus; bounds the samples per batch
APPEND_TABLES = ("rejected_payloads",)  # exported one file per load, never rewritten
# Version-scoped tables are exported as part files, `part-<part_id>.parquet`; `_version_parts`
# says which part holds each version. A load puts finished versions into "cold" parts of up
# to PART_VERSIONS versions (rarely rewritten) and versions still changing into a "hot" part,
# so re-fetching a running version rewrites a small file, not the project's whole history.
PART_VERSIONS = 10_000
# Every load lands at least one raw file per project, so hourly syncs would pile up thousands of
# small files for the raw_payloads view to open. Past RAW_COMPACT_FILES files under
# RAW_SMALL_BYTES, a project's small files are merged into files of up to RAW_MERGED_BYTES (a bulk
# load's ~8 MB batch files are left as they are).
RAW_COMPACT_FILES = 32
RAW_SMALL_BYTES = 1 << 20
RAW_MERGED_BYTES = 32 << 20
# DuckDB's buffer pool. Rows committed through the WAL (the raw bodies) stay in it until a
# checkpoint; past the limit DuckDB moves them to .duckdb_tmp, so a long load's memory stays flat.
DUCKDB_MEMORY_LIMIT = "128MB"
# DuckDB's own worker threads. A load already keeps both cores busy with its own threads (read
# and flatten, raw, DuckDB, Parquet), and DuckDB parallelising each small batch query cost
# ~1 s more CPU over the 20k-payload benchmark than it saved.
DUCKDB_THREADS = 1
WAL_CHECKPOINT_BYTES = 1 << 30
IN_FLIGHT_BATCHES = 2  # batches the reading thread has handed on and the other threads still hold
VERSION_SCOPED = frozenset(t.name for t in schema.TIDY_TABLES)
PROJECT_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class WarehouseError(Exception):
    """A problem the user can fix; the message says how."""


class WarehouseBusy(WarehouseError):
    pass


def validate_project_id(project_id: str) -> str:
    if not isinstance(project_id, str) or not PROJECT_ID_PATTERN.match(project_id):
        raise WarehouseError(
            f"invalid project id {project_id!r}: use letters, digits, '_' or '-' (1-128 characters), "
            "as in the ModelArts console's project id"
        )
    return project_id


def new_load_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


@dataclass
class LoadReport:
    landed: int = 0  # raw bodies newly stored
    duplicates: int = 0  # raw bodies already stored (not derived again)
    versions_loaded: int = 0
    rejected: int = 0
    field_issues: int = 0
    load_id: str = ""
    projects: set[str] = field(default_factory=set)

    def add(self, other: "LoadReport") -> None:
        for name in ("landed", "duplicates", "versions_loaded", "rejected", "field_issues"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.projects |= other.projects


_INTERNAL_DDL = (
    "CREATE TABLE IF NOT EXISTS _dirty (table_name VARCHAR, project_id VARCHAR, load_id VARCHAR)",
    "CREATE TABLE IF NOT EXISTS _underived (project_id VARCHAR, source VARCHAR, payload_sha256 VARCHAR, "
    "deferred BOOLEAN DEFAULT false)",
    "CREATE TABLE IF NOT EXISTS _version_parts (project_id VARCHAR, job_id BIGINT, version_id BIGINT, part_id VARCHAR)",
    # every landed raw body: its key, and the file under parquet/raw_payloads/<project_id>/ that holds it
    "CREATE TABLE IF NOT EXISTS _raw_keys (project_id VARCHAR, source VARCHAR, payload_sha256 VARCHAR, file VARCHAR)",
    # landing files merged into another one, deleted once the merge is committed and published
    "CREATE TABLE IF NOT EXISTS _raw_retired (project_id VARCHAR, file VARCHAR)",
)


class Warehouse:
    """A writer on a warehouse folder. Use `Warehouse.open(root)` as a context manager."""

    def __init__(self, root: str | os.PathLike, *, lock_timeout: float = 600, redact: bool = True,
                 memory_limit: str = DUCKDB_MEMORY_LIMIT, threads: int = DUCKDB_THREADS):
        self.root = Path(root)
        self.redact = redact
        self._lock = FileLock(str(self.root / LOCK_FILE))
        self._lock_timeout = lock_timeout
        self._settings = {"memory_limit": memory_limit, "threads": threads}
        self.con: duckdb.DuckDBPyConnection | None = None

    @classmethod
    def open(cls, root: str | os.PathLike, **kwargs) -> "Warehouse":
        return cls(root, **kwargs)

    # -- lifecycle ---------------------------------------------------------------
    def __enter__(self) -> "Warehouse":
        if "?" in str(self.root):  # DuckDB reads it as the start of a URL query and cannot write its WAL
            raise WarehouseError(f"warehouse folder {self.root} contains '?': choose a folder name without it")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WarehouseError(f"cannot create warehouse folder {self.root}: {exc.strerror}") from None
        try:
            self._lock.acquire(timeout=self._lock_timeout)
        except Timeout:
            raise WarehouseBusy(
                f"another writer is using the warehouse {self.root} (waited {self._lock_timeout:.0f} s); "
                "wait for it to finish or raise the lock timeout"
            ) from None
        try:
            self.con = connect_writer(self.root, **self._settings)
            self._create_tables()
            self._repair()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None
        if self._lock.is_locked:
            self._lock.release()

    def _create_tables(self) -> None:
        for ddl in _INTERNAL_DDL:
            self.con.execute(ddl)
        self._migrate_samples_to_series()
        self._migrate_raw_to_files()
        for table in schema.DUCKDB_TIDY_TABLES + schema.ALL_TABLES:  # the series before the samples view
            if table is not schema.RAW_PAYLOADS:
                self.con.execute(table.ddl())
        self._create_raw_view()

    def _create_raw_view(self) -> None:
        """raw_payloads in DuckDB reads the landed Parquet files: the bodies are stored (and
        compressed) once. The view names the folder by its absolute path, so it is made again
        on every open: a moved warehouse works again once a writer opened it."""
        raw_dir = self.root / PARQUET_DIR / schema.RAW_PAYLOADS.name
        if not any(raw_dir.rglob("*.parquet")):  # the view's glob must match a file
            write_parquet_file(raw_dir, "empty.parquet", schema.RAW_PAYLOADS.schema.empty_table(), durable=False)
            publish(raw_dir, "empty.parquet")
        self.con.execute(raw_view_ddl(raw_dir))

    def _migrate_samples_to_series(self) -> None:
        """Warehouses written before the series table stored system_metric_samples as rows: fold them."""
        if not _is_base_table(self.con, schema.SYSTEM_METRIC_SAMPLES.name):
            return
        with _transaction(self.con):
            self.con.execute(schema.SYSTEM_METRIC_SERIES.ddl())
            self.con.execute("INSERT INTO system_metric_series SELECT project_id, job_id, version_id, metric, "
                             "list(value ORDER BY sample_index) FROM system_metric_samples GROUP BY ALL")
            self.con.execute("DROP TABLE system_metric_samples")

    def _migrate_raw_to_files(self) -> None:
        """Warehouses written before the raw Parquet landing kept the bodies in a DuckDB table:
        write them to landing files, then keep only their keys."""
        if not _is_base_table(self.con, schema.RAW_PAYLOADS.name):
            return
        raw_dir = self.root / PARQUET_DIR / schema.RAW_PAYLOADS.name
        with _transaction(self.con):
            for project, load_id in self.con.execute(
                    "SELECT DISTINCT project_id, load_id FROM raw_payloads ORDER BY ALL").fetchall():
                name = f"raw-{load_id}-migrated.parquet"
                self._copy(raw_dir / validate_project_id(project), name,
                           "SELECT * FROM raw_payloads WHERE project_id = ? AND load_id IS NOT DISTINCT FROM ?",
                           [project, load_id])
                self.con.execute("INSERT INTO _raw_keys SELECT project_id, source, payload_sha256, ? FROM raw_payloads "
                                 "WHERE project_id = ? AND load_id IS NOT DISTINCT FROM ?", [name, project, load_id])
            self.con.execute("DELETE FROM _dirty WHERE table_name = 'raw_payloads'")
            self.con.execute("DROP TABLE raw_payloads")
        for stale in raw_dir.glob("*/load-*.parquet"):  # the old export: the same rows as the files above
            stale.unlink()

    def _repair(self) -> None:
        """Finish what a crashed writer left: publish committed raw files, derive landed-but-underived
        raw rows, export dirty partitions."""
        self._publish_committed_raw_files()
        for stale in (self.root / PARQUET_DIR).glob("*/*/.*.tmp"):
            stale.unlink()  # a crashed export's half-written file; never visible to readers
        self.derive_pending(export=False, include_deferred=False)
        self.export()
        self._export_table_placeholders()

    def _publish_committed_raw_files(self) -> None:
        """A raw file is renamed into place just after its keys commit; a crash in between leaves
        it under its temporary name, complete and on disk."""
        raw_dir = self.root / PARQUET_DIR / schema.RAW_PAYLOADS.name
        for project, name in self.con.execute("SELECT DISTINCT project_id, file FROM _raw_keys").fetchall():
            folder = raw_dir / project
            if not (folder / name).exists() and (folder / hidden_name(name)).exists():
                publish(folder, name)
        self._delete_retired_raw_files()  # only once what replaced them is published

    def _export_table_placeholders(self) -> None:
        """An empty file at the root of every table folder that has none, so a table's glob matches
        even before its first project is exported (e.g. after a first sync killed before any commit)."""
        for table in schema.ALL_TABLES:
            folder = self.root / PARQUET_DIR / table.name
            if not any(folder.rglob("*.parquet")):
                self._copy(folder, "empty.parquet", f'SELECT * FROM "{table.name}" LIMIT 0', [])

    # -- reading what is stored --------------------------------------------------
    def version_states(self, project_id: str) -> dict[tuple[int, int], bool]:
        """(job_id, version_id) -> is_final, for every version stored for the project."""
        rows = self.con.execute(
            "SELECT job_id, version_id, is_final FROM job_versions WHERE project_id = ?", [project_id]
        ).fetchall()
        return {(job, version): bool(final) for job, version, final in rows}

    # -- writing -----------------------------------------------------------------
    def land(self, records: Iterable[RawRecord], *, derive: bool = True, batch_records: int = DEFAULT_BATCH_RECORDS,
             batch_bytes: int = DEFAULT_BATCH_BYTES) -> LoadReport:
        """Store raw bodies, derive the tidy tables from the new ones, export Parquet.

        Streams: at most a few batches of records are held in memory at a time. With
        `derive=False` only the raw bodies are stored; `derive_pending()` derives them later.
        """
        load_id = new_load_id()
        report = LoadReport(load_id=load_id)
        chunks = _chunks(records, batch_records, batch_bytes)
        if derive:
            self._land_streamed(chunks, load_id, report)
        else:
            for chunk in chunks:
                report.add(self._land_raw_chunk(chunk, load_id))
        self.export()
        self.compact_raw_files()
        return report

    def compact_raw_files(self) -> int:
        """Merge the small raw landing files of projects that have many; returns the files merged.

        The merged file is written and flushed under a temporary name, the keys move to it and
        the old files are marked retired in one transaction, then it is published and the old
        files deleted (after a crash, by the next writer: no body is ever in no file)."""
        raw_dir = self.root / PARQUET_DIR / schema.RAW_PAYLOADS.name
        merged = 0
        crowded = self.con.execute("SELECT project_id FROM _raw_keys GROUP BY 1 HAVING count(DISTINCT file) > ?",
                                   [RAW_COMPACT_FILES]).fetchall()
        for (project,) in crowded:
            folder = raw_dir / project
            names = [n for (n,) in self.con.execute(
                "SELECT DISTINCT file FROM _raw_keys WHERE project_id = ? ORDER BY 1", [project]).fetchall()]
            small = [(n, (folder / n).stat().st_size) for n in names if (folder / n).exists()]
            small = [(n, size) for n, size in small if size < RAW_SMALL_BYTES]
            if len(small) <= RAW_COMPACT_FILES:
                continue
            for group in _groups_up_to(small, RAW_MERGED_BYTES):
                if len(group) > 1:
                    self._merge_raw_files(folder, project, group)
                    merged += len(group)
        return merged

    def _merge_raw_files(self, folder: Path, project: str, names: list[str]) -> None:
        name = f"raw-merged-{new_load_id()}.parquet"
        concat_parquet_files(folder, name, [folder / n for n in names], schema.RAW_PAYLOADS.schema)
        with _transaction(self.con, "raw_merge"):
            self.con.execute("UPDATE _raw_keys SET file = ? WHERE project_id = ? AND file IN (SELECT unnest(?))",
                             [name, project, names])
            self.con.executemany("INSERT INTO _raw_retired VALUES (?, ?)", [[project, n] for n in names])
        publish(folder, name)
        self._delete_retired_raw_files()

    def _delete_retired_raw_files(self) -> None:
        raw_dir = self.root / PARQUET_DIR / schema.RAW_PAYLOADS.name
        for project, name in self.con.execute("SELECT project_id, file FROM _raw_retired").fetchall():
            _unlink(raw_dir / project / name)
        self.con.execute("DELETE FROM _raw_retired")

    def _land_streamed(self, chunks: Iterator[list[RawRecord]], load_id: str, report: LoadReport) -> None:
        """land() on both cores. This thread reads and flattens; a "raw" thread commits each
        batch's raw bodies and hands it to a "duckdb" thread that commits its tidy rows (two
        transactions, in that order, as land() always does, overlapping with the next batch's
        raw commit); a "parquet" thread appends the same Arrow batches to the load's Parquet
        files, which are renamed into place once every batch is committed."""
        plan = _PartPlan(load_id)
        files = StreamedFiles(self.root / PARQUET_DIR)
        state = _StreamState(load_id)
        raw_con = self.con.cursor()  # the raw thread's connection; the duckdb thread writes on self.con
        slots = threading.BoundedSemaphore(IN_FLIGHT_BATCHES)
        duck, parquet = self._derive_stages(lambda item: self._duck_step(item, load_id, state), files, state, slots)
        raw_stage = _Stage(lambda item: self._raw_step(item, load_id, raw_con, duck), "warehouse-raw")
        checker = self.con.cursor()  # for reads on this thread
        precheck = checker.execute("SELECT EXISTS (SELECT 1 FROM _raw_keys)").fetchall()[0][0]
        try:
            for chunk in chunks:
                for record in chunk:
                    validate_project_id(record.project_id)
                raw = _raw_table(chunk, load_id)
                if precheck:  # skip flattening what is stored already (re-ingest): a read, no lock
                    keep = _not_stored(checker, raw)
                    if len(keep) < len(chunk):
                        raw, chunk_fresh = raw.take(pa.array(keep, pa.int64())), [chunk[i] for i in keep]
                    else:
                        chunk_fresh = chunk
                        precheck = False  # nothing was stored: later chunks are new too, most likely
                else:
                    chunk_fresh = chunk
                shas = raw.column("payload_sha256").to_pylist()
                batch = flatten(chunk_fresh, redact=self.redact, shas=shas) if chunk_fresh else None
                if batch is not None:
                    raw = _with_payload_ids(raw, batch.raw_keys)
                # the bodies are in `raw` now: the batch in flight does not keep a second copy
                chunk_fresh = [dataclasses.replace(r, body=b"") for r in chunk_fresh]
                item = _Loaded(len(chunk), chunk_fresh, shas, raw, batch, plan.assign(batch) if batch else [])
                del raw, batch, chunk, chunk_fresh
                _acquire(slots, (raw_stage, duck, parquet))
                raw_stage.put(item)
                parquet.put(item)
                del item
                _release_arrow_memory()
            raw_stage.finish()
            duck.finish()
            parquet.finish()
        except BaseException:
            raw_stage.stop()
            duck.stop()
            parquet.stop()
            files.abort()
            raise
        finally:
            checker.close()
            raw_con.close()
        report.add(state.report)
        if not state.streamable:
            files.abort()  # the export below writes everything from DuckDB instead
            return
        self._publish_parts(files, state)

    def _derive_stages(self, commit, files: StreamedFiles, state: "_StreamState",
                       slots: threading.BoundedSemaphore) -> tuple["_Stage", "_Stage"]:
        """The "duckdb" thread, which runs `commit` on each batch, and the "parquet" thread, which
        appends the batch to the part files, of land() and derive_pending() alike.

        `slots` counts the batches handed on and not yet done by both: a bound on the memory in
        flight (queues alone would let ~5 batches pile up behind the duckdb thread). The duckdb
        thread checkpoints after its last batch, while the parquet thread still writes, so
        closing the warehouse has nothing left to compress."""
        duck = _Stage(lambda item: _done_by(item, slots, commit, item), "warehouse-duckdb", on_finish=self._checkpoint)
        parquet = _Stage(lambda item: _done_by(item, slots, _write_parquet, files, item.batch, item.part_ids, state),
                         "warehouse-parquet")
        return duck, parquet

    def _publish_parts(self, files: StreamedFiles, state: "_StreamState") -> None:
        """Rename a load's part files into place and forget their export marks. Parts that lost
        versions during the load stay marked, for export() to write from DuckDB."""
        for project, part in state.moved_parts:
            for table in schema.TIDY_TABLES:
                files.discard((table.name, project, part_file(part)))
        published = files.finish()
        if published:
            self.con.executemany("DELETE FROM _dirty WHERE table_name = ? AND project_id = ? AND load_id = ?",
                                 [list(state.dirty[key]) for key in published])

    def _raw_step(self, item: "_Loaded", load_id: str, con: duckdb.DuckDBPyConnection, duck: "_Stage") -> None:
        """The raw thread: commit one batch's raw bodies, then pass the batch on for deriving."""
        if item.records:
            item.landed = self._land_raw_rows(item.records, load_id, con, raw=item.raw)
        duck.put(item)

    def _duck_step(self, item: "_Loaded", load_id: str, state: "_StreamState") -> None:
        """The duckdb thread: commit one batch's tidy rows (its raw bodies are committed)."""
        report = LoadReport(duplicates=item.chunk_size - len(item.records))
        if item.records:
            fresh, shas, new_raw = item.landed
            report.landed = len(fresh)
            report.duplicates += len(item.records) - len(fresh)
            if len(fresh) == len(item.records):
                batch, part_ids = item.batch, item.part_ids
            else:  # stored meanwhile by an earlier batch of this load: derive only what is new
                state.streamable = False
                fresh = _records_from_raw(new_raw) if fresh else []  # item.records are without their bodies
                batch = flatten(fresh, redact=self.redact, shas=shas) if fresh else None
                part_ids = state.fallback_parts.assign(batch) if batch else []
            if batch is not None:
                derived, moved = self._commit_derived(batch, {r.project_id for r in fresh}, load_id, part_ids)
                report.add(derived)
                state.moved_parts.update(moved)
        state.report.add(report)
        self._checkpoint_if_wal_over(WAL_CHECKPOINT_BYTES)

    def _checkpoint_if_wal_over(self, limit: int) -> None:
        """Checkpoint now rather than all at close, so that DuckDB does not keep a whole long
        load's worth of WAL'd rows in memory."""
        try:
            if os.path.getsize(self.root / (DB_FILE + ".wal")) > limit:
                self._checkpoint()
        except OSError:
            pass  # no WAL yet

    def _checkpoint(self) -> None:
        try:
            self.con.execute("CHECKPOINT")
        except duckdb.TransactionException:
            pass  # another transaction is open: the next batch or close() does it

    def derive_pending(self, project_id: str | None = None, *, export: bool = True,
                       include_deferred: bool = True) -> LoadReport:
        """Derive tidy rows for raw bodies landed with `derive=False` (or left by a crash).

        On open, only a crash's leftovers are derived (`include_deferred=False`): bodies landed
        with `derive=False` wait for their own derive step (Dagster's table assets).
        """
        report = LoadReport(load_id="pending")
        conditions = (["u.project_id = $project"] if project_id else []) + ([] if include_deferred else ["NOT u.deferred"])
        where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
        params = {"project": project_id} if project_id else {}
        files = [str(self.root / PARQUET_DIR / schema.RAW_PAYLOADS.name / project / name) for project, name in
                 self.con.execute("SELECT DISTINCT k.project_id, k.file FROM _raw_keys k JOIN _underived u "
                                  f"USING (project_id, source, payload_sha256) {where} ORDER BY ALL",
                                  params).fetchall()]
        if files:
            self._derive_files(files, where, params, report)
        if export:
            self.export()
        return report

    def _derive_files(self, files: list[str], where: str, params: dict, report: LoadReport) -> None:
        """Derive the pending bodies of these landing files, in landing order, on both cores as
        land() does: this thread reads and flattens, a "duckdb" thread commits each batch, a
        "parquet" thread appends it to the Parquet part files (published at the end), so
        nothing is read back out of DuckDB to export it."""
        plan = _PartPlan(new_load_id())
        files_out, state = StreamedFiles(self.root / PARQUET_DIR), _StreamState(plan.load_id)
        slots = threading.BoundedSemaphore(IN_FLIGHT_BATCHES)
        duck, parquet = self._derive_stages(lambda item: self._derive_step(item, state), files_out, state, slots)
        reader = self.con.cursor()
        try:
            for rows in _pending_bodies(reader, files, where, params):
                for load_id in dict.fromkeys(rows.column("load_id").to_pylist()):  # rejections keep their load
                    group = rows.filter(pa.compute.equal(rows.column("load_id"), load_id))
                    records = _records_from_raw(group)
                    batch = flatten(records, redact=self.redact, shas=group.column("payload_sha256").to_pylist())
                    item = _Derived(load_id, {r.project_id for r in records}, batch, plan.assign(batch))
                    del records, batch, group
                    _acquire(slots, (duck, parquet))
                    duck.put(item)
                    parquet.put(item)
                    del item
            duck.finish()
            parquet.finish()
        except BaseException:
            duck.stop()
            parquet.stop()
            files_out.abort()
            raise
        finally:
            reader.close()
        report.add(state.report)
        self._publish_parts(files_out, state)

    def _derive_step(self, item: "_Derived", state: "_StreamState") -> None:
        """The duckdb thread of derive_pending(): commit one flattened batch."""
        derived, moved = self._commit_derived(item.batch, item.projects, item.load_id, item.part_ids)
        state.report.add(derived)
        state.moved_parts.update(moved)
        self._checkpoint_if_wal_over(WAL_CHECKPOINT_BYTES)

    def _land_raw_chunk(self, chunk: list[RawRecord], load_id: str) -> LoadReport:
        """land(derive=False): one batch's raw bodies, marked to wait for derive_pending()."""
        for record in chunk:
            validate_project_id(record.project_id)
        fresh, _, _ = self._land_raw_rows(chunk, load_id, self.con, deferred=True)
        return LoadReport(landed=len(fresh), duplicates=len(chunk) - len(fresh),
                          projects={r.project_id for r in fresh})

    def _land_raw_rows(self, chunk: list[RawRecord], load_id: str, con: duckdb.DuckDBPyConnection,
                       raw: pa.Table | None = None, deferred: bool = False
                       ) -> tuple[list[RawRecord], list[str], pa.Table | None]:
        """Land the bodies of `chunk` not stored yet, on a given connection (and with the chunk's
        raw rows if already built); returns their records, SHA-256s and raw rows.
        `deferred` rows wait for derive_pending().

        The new bodies go to a Parquet file per project, written and flushed to disk under a
        temporary name; their keys commit in DuckDB (that commit is the landing); then the
        file is renamed into place (after a crash, by the next writer)."""
        if raw is None:
            raw = _raw_table(chunk, load_id)
        new_raw = None
        # an explicit row index: row_number() OVER () need not follow the Arrow order
        con.register("batch_raw", raw.select(["project_id", "source", "payload_sha256"]).append_column(
            "idx", pa.array(np.arange(raw.num_rows, dtype=np.int64))))
        written: list[tuple[Path, str]] = []
        try:
            with _transaction(con, "raw"):
                new_idx = con.execute(
                    """
                    SELECT b.idx FROM batch_raw b
                    WHERE NOT EXISTS (SELECT 1 FROM _raw_keys r WHERE r.project_id = b.project_id
                                      AND r.source = b.source AND r.payload_sha256 = b.payload_sha256)
                    QUALIFY row_number() OVER (PARTITION BY b.project_id, b.source, b.payload_sha256 ORDER BY b.idx) = 1
                    ORDER BY b.idx
                    """
                ).fetchall()
                keep = [i for (i,) in new_idx]
                if keep:
                    new_raw = raw if len(keep) == raw.num_rows else raw.take(keep)
                    written = self._write_raw_files(new_raw, load_id)
                    con.register("new_raw", new_raw.select(["project_id", "source", "payload_sha256"]))
                    for folder, name in written:
                        con.execute("INSERT INTO _raw_keys SELECT project_id, source, payload_sha256, ? FROM new_raw "
                                    "WHERE project_id = ?", [name, folder.name])
                    con.execute("INSERT INTO _underived SELECT project_id, source, payload_sha256, ? FROM new_raw",
                                [deferred])
                    con.unregister("new_raw")
        except BaseException:
            for folder, name in written:
                _unlink(folder / hidden_name(name))
            raise
        finally:
            con.unregister("batch_raw")
        for folder, name in written:
            publish(folder, name)
        failpoints.hit("raw_published")
        shas = raw.column("payload_sha256").to_pylist()
        return [chunk[i] for i in keep], [shas[i] for i in keep], new_raw

    def _write_raw_files(self, raw: pa.Table, load_id: str) -> list[tuple[Path, str]]:
        """One landing file per project, under its temporary name; returns (folder, file name)s."""
        raw_dir = self.root / PARQUET_DIR / schema.RAW_PAYLOADS.name
        name = f"raw-{load_id}-{secrets.token_hex(4)}.parquet"
        projects = raw.column("project_id").unique().to_pylist()
        written = []
        for project in projects:
            rows = raw if len(projects) == 1 else raw.filter(pa.compute.equal(raw.column("project_id"), project))
            folder = raw_dir / validate_project_id(project)
            write_parquet_file(folder, name, rows)
            written.append((folder, name))
        return written

    def _commit_derived(self, batch: FlatBatch, projects: set[str], load_id: str,
                        part_ids: list[str]) -> tuple[LoadReport, list[tuple[str, str]]]:
        """Upsert a flattened batch in one transaction, its versions going to `part_ids` (in
        `batch.keys` order). Returns the report and the (project, part)s that lost versions to it."""
        report = LoadReport(
            versions_loaded=batch.versions_loaded,
            rejected=batch.rejected.num_rows,
            field_issues=batch.tables["field_issues"].num_rows,
            projects=projects,
        )
        con = self.con
        with _transaction(con, "derive"):
            old_parts = self._upsert_versions(batch, part_ids)
            self._insert_rejected(batch, load_id)
            con.register("derived", batch.raw_keys)
            con.execute("DELETE FROM _underived u USING derived d WHERE u.project_id = d.project_id "
                        "AND u.source = d.source AND u.payload_sha256 = d.payload_sha256")
            con.unregister("derived")
        return report, old_parts

    def _upsert_versions(self, batch: FlatBatch, part_ids: list[str]) -> list[tuple[str, str]]:
        """Replace the batch's versions in every tidy table; returns the (project, part)s they left."""
        if batch.keys.num_rows == 0:
            return []
        con = self.con
        con.register("batch_keys", batch.keys)
        existing = con.execute(
            "SELECT count(*) FROM job_versions v JOIN batch_keys k USING (project_id, job_id, version_id)"
        ).fetchall()[0][0]
        for table in schema.DUCKDB_TIDY_TABLES:
            if existing:
                con.execute(f'DELETE FROM "{table.name}" t USING batch_keys k WHERE t.project_id = k.project_id '
                            "AND t.job_id = k.job_id AND t.version_id = k.version_id")
            data = batch.series if table is schema.SYSTEM_METRIC_SERIES else batch.tables[table.name]
            if data.num_rows:
                con.register("batch_rows", data)
                con.execute(f'INSERT INTO "{table.name}" BY NAME SELECT * FROM batch_rows')
                con.unregister("batch_rows")
        self._refresh_jobs()
        con.register("batch_parts", batch.keys.append_column("part_id", pa.array(part_ids, pa.string())))
        old_parts = []
        if existing:
            old_parts = con.execute(
                "SELECT DISTINCT p.project_id, p.part_id FROM _version_parts p JOIN batch_keys k "
                "USING (project_id, job_id, version_id)").fetchall()
            con.execute("DELETE FROM _version_parts p USING batch_keys k WHERE p.project_id = k.project_id "
                        "AND p.job_id = k.job_id AND p.version_id = k.version_id")
        con.execute("INSERT INTO _version_parts SELECT project_id, job_id, version_id, part_id FROM batch_parts")
        con.execute(
            "INSERT INTO _dirty SELECT DISTINCT t.name, p.project_id, p.part_id FROM batch_parts p, "
            "(SELECT unnest(?::VARCHAR[]) AS name) t",
            [[t.name for t in schema.TIDY_TABLES]],
        )
        if old_parts:
            con.executemany("INSERT INTO _dirty SELECT unnest(?::VARCHAR[]), ?, ?",
                            [[[t.name for t in schema.TIDY_TABLES], project, part] for project, part in old_parts])
        con.execute("INSERT INTO _dirty SELECT DISTINCT 'jobs', project_id, NULL FROM batch_keys")
        con.unregister("batch_parts")
        con.unregister("batch_keys")
        return old_parts

    def _refresh_jobs(self) -> None:
        con = self.con
        con.execute("CREATE OR REPLACE TEMP TABLE touched_jobs AS SELECT DISTINCT project_id, job_id FROM batch_keys")
        con.execute("DELETE FROM jobs j USING touched_jobs t WHERE j.project_id = t.project_id AND j.job_id = t.job_id")
        con.execute(
            """
            INSERT INTO jobs BY NAME
            SELECT project_id, job_id,
                   max_by(job_name, ord) AS job_name, max_by(job_desc, ord) AS job_desc,
                   max_by(version_id, ord) AS latest_version_id, max_by(status, ord) AS latest_status,
                   max_by(status_name, ord) AS latest_status_name, max_by(is_final, ord) AS latest_is_final,
                   count(*) AS version_count,
                   min(create_time) AS first_create_time, max(create_time) AS last_create_time
            FROM (SELECT v.*, row_number() OVER (PARTITION BY v.project_id, v.job_id
                         ORDER BY v.create_time ASC NULLS FIRST, v.version_id ASC) AS ord
                  FROM job_versions v JOIN touched_jobs t USING (project_id, job_id))
            GROUP BY project_id, job_id
            """
        )
        con.execute("DROP TABLE touched_jobs")

    def _insert_rejected(self, batch: FlatBatch, load_id: str) -> None:
        if batch.rejected.num_rows == 0:
            return
        rejected = batch.rejected.set_column(
            batch.rejected.schema.get_field_index("load_id"), "load_id",
            pa.array([load_id] * batch.rejected.num_rows, pa.string()))
        con = self.con
        con.register("batch_rejected", rejected)
        con.execute(
            """
            INSERT INTO rejected_payloads BY NAME
            SELECT * FROM batch_rejected b WHERE NOT EXISTS (
                SELECT 1 FROM rejected_payloads r WHERE r.project_id = b.project_id
                AND r.source = b.source AND r.payload_sha256 = b.payload_sha256)
            """
        )
        con.execute("INSERT INTO _dirty SELECT DISTINCT 'rejected_payloads', project_id, ? FROM batch_rejected",
                    [load_id])
        con.unregister("batch_rejected")

    def rebuild(self) -> LoadReport:
        """Drop every derived row and derive it again from raw_payloads, in landing order.

        The drop and the "still to derive" marks commit together, so a rebuild that is
        killed half-way is finished by the next writer that opens the warehouse.
        """
        con = self.con
        with _transaction(con):
            for table in schema.DUCKDB_TIDY_TABLES + (schema.JOBS, schema.REJECTED_PAYLOADS):
                con.execute(f'DELETE FROM "{table.name}"')
            con.execute("DELETE FROM _version_parts")
            con.execute("DELETE FROM _underived")
            con.execute("INSERT INTO _underived SELECT project_id, source, payload_sha256, false FROM _raw_keys")
            con.execute("INSERT INTO _dirty SELECT DISTINCT t.name, r.project_id, NULL FROM "
                        "(SELECT DISTINCT project_id FROM _raw_keys) r, (SELECT unnest(?::VARCHAR[]) AS name) t",
                        [[t.name for t in schema.TIDY_TABLES] + ["jobs"]])
        report = self.derive_pending(export=False)
        report.load_id = "rebuild"
        # derive_pending wrote every live part from the batches it committed (a part that lost
        # versions meanwhile keeps a mark of its own): of the whole-project marks, what is left to
        # do is deleting the files of the parts that are gone
        whole = con.execute("SELECT DISTINCT table_name, project_id FROM _dirty WHERE load_id IS NULL "
                            "AND table_name IN (SELECT unnest(?::VARCHAR[]))",
                            [[t.name for t in schema.TIDY_TABLES]]).fetchall()
        for table_name, project_id in whole:
            self._delete_dead_part_files(table_name, project_id, self._live_parts(project_id))
        con.execute("DELETE FROM _dirty WHERE load_id IS NULL AND table_name IN (SELECT unnest(?::VARCHAR[]))",
                    [[t.name for t in schema.TIDY_TABLES]])
        self.export(full=True)
        return report

    # -- Parquet export ----------------------------------------------------------
    def export(self, full: bool = False) -> None:
        """Write every dirty partition to Parquet (temp file + rename), then forget it."""
        con = self.con
        dirty = con.execute("SELECT DISTINCT table_name, project_id, load_id FROM _dirty "
                            "WHERE table_name <> 'raw_payloads'").fetchall()  # raw files are landed, not exported
        if full:
            for name in APPEND_TABLES:
                for (project,) in con.execute(f'SELECT DISTINCT project_id FROM "{name}"').fetchall():
                    _clear_dir(self.root / PARQUET_DIR / name / project)
                dirty += [(name, p, lid) for p, lid in con.execute(
                    f'SELECT DISTINCT project_id, load_id FROM "{name}"').fetchall()]
        whole = {(d[0], d[1]) for d in dirty if d[0] in VERSION_SCOPED and d[2] is None}
        for table_name, project_id, load_id in sorted(set(dirty), key=lambda d: (d[0], d[1], d[2] or "")):
            if table_name in VERSION_SCOPED:
                if load_id is None or (table_name, project_id) not in whole:
                    self._export_parts(table_name, project_id, load_id)
            else:
                self._export_partition(table_name, project_id, load_id if table_name in APPEND_TABLES else None)
        for project_id in {d[1] for d in dirty}:
            self._export_placeholders(project_id)
        con.execute("DELETE FROM _dirty")
        (self.root / PARQUET_DIR).mkdir(parents=True, exist_ok=True)

    def _export_placeholders(self, project_id: str) -> None:
        """An empty file where a project has no file yet, so every table's glob always matches."""
        for table in schema.ALL_TABLES:
            folder = self.root / PARQUET_DIR / table.name / project_id
            if not any(folder.glob("*.parquet")):
                folder.mkdir(parents=True, exist_ok=True)
                tmp, target = folder / ".empty.parquet.tmp", folder / "empty.parquet"
                self.con.execute(f"COPY (SELECT * FROM \"{table.name}\" LIMIT 0) TO '{_sql_path(tmp)}' (FORMAT parquet)")
                os.replace(tmp, target)

    def _export_partition(self, table_name: str, project_id: str, load_id: str | None) -> None:
        folder = self.root / PARQUET_DIR / table_name / validate_project_id(project_id)
        name = f"load-{load_id}.parquet" if load_id else "data.parquet"
        where = "project_id = ?" + (" AND load_id = ?" if load_id else "")
        params = [project_id] + ([load_id] if load_id else [])
        self._copy(folder, name, f'SELECT * FROM "{table_name}" WHERE {where}', params)

    def _export_parts(self, table_name: str, project_id: str, part_id: str | None) -> None:
        """One part file of a version-scoped table (deleted once its last version moved out).

        `part_id` None means the whole project: every part is written again and files of
        parts that no longer exist (and a pre-parts `data.parquet`) are removed after.
        """
        folder = self.root / PARQUET_DIR / table_name / validate_project_id(project_id)
        if part_id is None:
            live = self._live_parts(project_id)
            for part in live:
                self._export_parts(table_name, project_id, part)
            self._delete_dead_part_files(table_name, project_id, live)
            return
        target = folder / part_file(part_id)
        versions = self.con.execute("SELECT count(*) FROM _version_parts WHERE project_id = ? AND part_id = ?",
                                    [project_id, part_id]).fetchall()[0][0]
        if versions == 0:
            if target.exists():
                target.unlink()
            return
        self._copy(folder, target.name,
                   f'SELECT t.* FROM "{table_name}" t SEMI JOIN (SELECT job_id, version_id FROM _version_parts '
                   "WHERE project_id = ? AND part_id = ?) p USING (job_id, version_id) WHERE t.project_id = ?",
                   [project_id, part_id, project_id])

    def _live_parts(self, project_id: str) -> list[str]:
        return [p for (p,) in self.con.execute(
            "SELECT DISTINCT part_id FROM _version_parts WHERE project_id = ? ORDER BY 1", [project_id]).fetchall()]

    def _delete_dead_part_files(self, table_name: str, project_id: str, live: list[str]) -> None:
        """Files of parts that hold no version any more (and a pre-parts `data.parquet`)."""
        keep = {part_file(p) for p in live} | {"empty.parquet"}
        for stale in (self.root / PARQUET_DIR / table_name / validate_project_id(project_id)).glob("*.parquet"):
            if stale.name not in keep:
                stale.unlink()

    def _copy(self, folder: Path, name: str, select: str, params: list) -> None:
        """COPY a query to `folder/name` through a temporary file, so readers never see half a file."""
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / name
        tmp = folder / f".{name}.tmp"
        self.con.execute(
            f"COPY ({select}) TO '{_sql_path(tmp)}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 262144)",
            params,
        )
        failpoints.hit("export_tmp_written")
        os.replace(tmp, target)
        failpoints.hit("export_partition_done")


class _PartPlan:
    """Which part file each version derived by one load (or derive pass) goes to."""

    def __init__(self, load_id: str):
        self.load_id = load_id
        self._fill: dict[tuple[str, str], tuple[int, int]] = {}  # (project, c|h) -> (part number, versions)

    def assign(self, batch: FlatBatch) -> list[str]:
        versions = batch.tables["job_versions"]
        out = []
        for project, final in zip(versions.column("project_id").to_pylist(), versions.column("is_final").to_pylist()):
            kind = "c" if final else "h"
            number, used = self._fill.get((project, kind), (0, 0))
            if used >= PART_VERSIONS:
                number, used = number + 1, 0
            self._fill[(project, kind)] = (number, used + 1)
            out.append(f"{self.load_id}-{kind}{number}")
        return out


def part_file(part_id: str) -> str:
    return f"part-{part_id}.parquet"


def _part_kind(part_id: str) -> str:
    """"c" or "h" (plus the plan's suffix): parts of one kind fill up one after the other."""
    return part_id.rstrip("0123456789")


@dataclass
class _Loaded:
    """One chunk of a streamed load, as the reading thread hands it to the other two."""

    chunk_size: int
    records: list[RawRecord]  # those not stored before the load (as far as the reading thread saw)
    shas: list[str]
    raw: pa.Table  # their raw_payloads rows
    batch: FlatBatch | None
    part_ids: list[str]  # part of each version in batch.keys
    landed: tuple | None = None  # (records, shas, raw rows) the raw commit found new, set by the raw thread
    users: int = 2  # the duckdb and the parquet thread: the batch's slot is free once both are done


_USERS_LOCK = threading.Lock()


def _release_arrow_memory() -> None:
    """Give this thread's freed Arrow memory back to the OS: Arrow's allocator (mimalloc) keeps
    it otherwise, ~150 MB over a load of the benchmark corpus."""
    pa.default_memory_pool().release_unused()


def _done_by(item: "_Loaded | _Derived", slots: threading.BoundedSemaphore, step, *args) -> None:
    """Run one thread's step on a batch; the last of its two users frees its in-flight slot."""
    try:
        step(*args)
        _release_arrow_memory()
    finally:
        with _USERS_LOCK:
            item.users -= 1
            last = item.users == 0
        if last:
            slots.release()


@dataclass
class _StreamState:
    load_id: str
    report: LoadReport = field(default_factory=LoadReport)
    streamable: bool = True  # False: the streamed files would not match DuckDB; export from DuckDB
    moved_parts: set = field(default_factory=set)  # (project, part) that lost versions during the load
    dirty: dict = field(default_factory=dict)  # streamed file -> its _dirty row
    current_parts: dict = field(default_factory=dict)  # (project, part kind) -> part being written
    fallback_parts: "_PartPlan" = None

    def __post_init__(self):
        self.fallback_parts = _PartPlan(self.load_id + "-r")


class _Stage:
    """A worker thread that handles items in order; its first error is raised in the caller."""

    def __init__(self, handle, name: str, on_finish=None):
        self._handle = handle
        self._on_finish = on_finish  # run on the thread after the last item (not after stop())
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item) -> None:
        while True:
            self.raise_if_failed()
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        self.put(None)
        self._thread.join()
        self.raise_if_failed()

    def stop(self) -> None:
        """After an error or Ctrl-C: let the current item end, drop the rest."""
        self._stopping = True
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join()

    def raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is None or self._stopping:
                    if item is None and not self._stopping and self._on_finish is not None:
                        self._on_finish()
                    return
                self._handle(item)
                del item
        except BaseException as exc:  # handed to the caller's thread
            self._error = exc


def _write_parquet(files: StreamedFiles, batch: FlatBatch | None, part_ids: list[str], state: _StreamState) -> None:
    """The parquet thread: append one committed batch to the files of its parts."""
    if batch is None:
        return
    keys = batch.keys
    if keys.num_rows:
        projects = keys.column("project_id").to_pylist()
        groups: dict[tuple[str, str], int] = {}
        version_group = np.fromiter((groups.setdefault(g, len(groups)) for g in zip(projects, part_ids)),
                                    dtype=np.int32, count=len(projects))
        completed = []
        for project, part in groups:  # every table gets a file per part, even an empty one
            previous = state.current_parts.get((project, _part_kind(part)))
            if previous is not None and previous != part:  # the plan moved on: that part is complete
                completed.append((project, previous))
            state.current_parts[(project, _part_kind(part))] = part
            for table in schema.TIDY_TABLES:
                _open_streamed(files, state, table.name, project, part_file(part), _streamed_schema(table), part)
        for table in schema.TIDY_TABLES:
            if len(groups) == 1:
                project, part = next(iter(groups))
                files.write(table.name, project, part_file(part), batch.table(table.name))
                continue
            if table is schema.SYSTEM_METRIC_SAMPLES:  # split the series (a row per array), then unnest
                series_group = version_group[batch.series_rows]
                for (project, part), g in groups.items():
                    files.write(table.name, project, part_file(part), batch.samples(series_group == g))
                continue
            data = batch.tables[table.name]
            row_group = _row_groups(batch, table, data, version_group)
            for (project, part), g in groups.items():
                files.write(table.name, project, part_file(part), data.filter(pa.array(row_group == g)))
        for project, part in completed:  # footers written now: a long load keeps few files open
            for table in schema.TIDY_TABLES:
                files.complete((table.name, project, part_file(part)))


def _row_groups(batch: FlatBatch, table: schema.Table, data: pa.Table, version_group: np.ndarray) -> np.ndarray:
    """The group (part file) of each row of a version-scoped table, from its version's group."""
    if table is schema.JOB_VERSIONS:
        return version_group
    if table.name in batch.version_rows:
        return version_group[batch.version_rows[table.name]]
    keys = batch.keys  # field_issues: few rows, not in version order
    key_group = dict(zip(zip(keys.column("project_id").to_pylist(), keys.column("job_id").to_pylist(),
                             keys.column("version_id").to_pylist()), version_group.tolist()))
    return np.fromiter((key_group[k] for k in zip(data.column("project_id").to_pylist(),
                                                   data.column("job_id").to_pylist(),
                                                   data.column("version_id").to_pylist())),
                       dtype=np.int32, count=data.num_rows)


def _streamed_schema(table: schema.Table) -> pa.Schema:
    return SAMPLE_ARROW_SCHEMA if table is schema.SYSTEM_METRIC_SAMPLES else table.schema


def _open_streamed(files: StreamedFiles, state: _StreamState, table_name: str, project: str, name: str,
                   arrow_schema: pa.Schema, dirty_id: str) -> None:
    key = (table_name, project, name)
    if key not in files:
        files.open(table_name, validate_project_id(project), name, arrow_schema)
        state.dirty[key] = (table_name, project, dirty_id)


def _pending_bodies(reader: duckdb.DuckDBPyConnection, files: list[str], where: str,
                    params: dict) -> Iterator[pa.Table]:
    """The raw rows of these files still to derive, in landing order, a batch at a time.

    The order is worked out from the keys alone, then the bodies are read a batch at a time
    and put in order by Arrow: sorting the bodies in DuckDB needs them all in its memory at
    once, and it ran out at its limit (a 20,000-payload sync, 140 MB of JSON, did)."""
    reader.register("derive_files", pa.table({"file_idx": pa.array(range(len(files)), pa.int32()),
                                              "filename": pa.array(files, pa.string())}))
    order = reader.sql(
        f"SELECT f.file_idx, r.file_row_number, r.byte_size FROM ({raw_select(files, positions=True)}) r "
        "JOIN derive_files f USING (filename) JOIN _underived u USING (project_id, source, payload_sha256) "
        f"{where} ORDER BY r.load_id, r.fetched_at, f.file_idx, r.file_row_number", params=params,
    ).to_arrow_table()
    for start, stop in _cuts(order.column("byte_size").to_numpy(), DEFAULT_BATCH_RECORDS, DEFAULT_BATCH_BYTES):
        keys = order.slice(start, stop - start).select(["file_idx", "file_row_number"])
        reader.register("batch_order", keys.append_column("ord", pa.array(np.arange(keys.num_rows))))
        batch_files = [files[i] for i in pa.compute.unique(keys.column("file_idx")).to_pylist()]
        rows = reader.sql(
            f"SELECT r.* EXCLUDE (filename, file_row_number), o.ord FROM ({raw_select(batch_files, positions=True)}) r "
            "JOIN derive_files f USING (filename) JOIN batch_order o USING (file_idx, file_row_number)"
        ).to_arrow_table()
        reader.unregister("batch_order")
        yield rows.take(pa.compute.sort_indices(rows.column("ord"))).drop_columns(["ord"])


@dataclass
class _Derived:
    """One flattened batch of derive_pending(), as the reading thread hands it to the other two."""

    load_id: str
    projects: set[str]
    batch: FlatBatch
    part_ids: list[str]
    users: int = 2  # the duckdb and the parquet thread: the batch's slot is free once both are done


def _acquire(slots: threading.BoundedSemaphore, stages: tuple["_Stage", ...]) -> None:
    """Wait for an in-flight slot, raising a stage's error rather than waiting forever."""
    while not slots.acquire(timeout=0.2):
        for stage in stages:
            stage.raise_if_failed()


def _not_stored(con: duckdb.DuckDBPyConnection, raw: pa.Table) -> list[int]:
    """Indexes of the rows of `raw` whose (project_id, source, payload_sha256) is not in raw_payloads yet."""
    keys = raw.select(["project_id", "source", "payload_sha256"]).append_column(
        "idx", pa.array(np.arange(raw.num_rows, dtype=np.int64)))
    con.register("check_raw", keys)
    try:
        return [i for (i,) in con.execute(
            "SELECT b.idx FROM check_raw b "
            "WHERE NOT EXISTS (SELECT 1 FROM _raw_keys r WHERE r.project_id = b.project_id "
            "AND r.source = b.source AND r.payload_sha256 = b.payload_sha256) ORDER BY b.idx").fetchall()]
    finally:
        con.unregister("check_raw")


def _with_payload_ids(raw: pa.Table, raw_keys: pa.Table) -> pa.Table:
    """Raw rows keep the ids of their request; where it had none (a file), the payload's own."""
    for name in ("job_id", "version_id"):
        raw = raw.set_column(raw.schema.get_field_index(name), name,
                             pa.compute.coalesce(raw.column(name), raw_keys.column(name)))
    return raw


def _records_from_raw(table: pa.Table) -> list[RawRecord]:
    return [
        RawRecord(
            body=row["payload"], project_id=row["project_id"], source=row["source"], kind=row["kind"],
            http_status=row["http_status"], job_id=row["job_id"], version_id=row["version_id"],
            fetched_at=row["fetched_at"],
        )
        for row in table.to_pylist()
    ]


def _raw_table(chunk: list[RawRecord], load_id: str) -> pa.Table:
    from warehouse.flatten import sha256_hex

    cols = {name: [] for name in schema.RAW_PAYLOADS.column_names if name != "payload"}
    for r in chunk:
        cols["project_id"].append(r.project_id)
        cols["job_id"].append(r.job_id)
        cols["version_id"].append(r.version_id)
        cols["kind"].append(r.kind)
        cols["source"].append(r.source)
        cols["fetched_at"].append(r.fetched_at)
        cols["http_status"].append(r.http_status)
        cols["payload_sha256"].append(sha256_hex(r.body))
        cols["byte_size"].append(len(r.body))
        cols["load_id"].append(load_id)
    cols["payload"] = _binary_array([r.body for r in chunk], cols["byte_size"])
    return pa.Table.from_pydict(cols, schema=schema.RAW_PAYLOADS.schema)


def _binary_array(bodies: list[bytes], sizes: list[int]) -> pa.Array:
    """Bytes -> a binary array with one copy (one join), not one growing append per body."""
    total = sum(sizes)
    if total >= 2**31 - 1:
        return pa.array(bodies, pa.binary())
    offsets = np.zeros(len(bodies) + 1, dtype=np.int32)
    np.cumsum(sizes, out=offsets[1:])
    return pa.Array.from_buffers(pa.binary(), len(bodies), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(bodies))])


def _cuts(sizes: np.ndarray, max_records: int, max_bytes: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive runs of at most max_records items, each under max_bytes
    unless one item alone is larger: the batches _chunks makes, from sizes alone."""
    start = 0
    while start < len(sizes):
        ends = np.cumsum(sizes[start:start + max_records])
        stop = start + max(1, int(np.searchsorted(ends, max_bytes, side="left")))
        yield start, min(stop, len(sizes))
        start = stop


def _chunks(records: Iterable[RawRecord], max_records: int, max_bytes: int) -> Iterator[list[RawRecord]]:
    chunk, size = [], 0
    for record in records:
        chunk.append(record)
        size += len(record.body)
        if len(chunk) >= max_records or size >= max_bytes:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


@contextmanager
def _transaction(con: duckdb.DuckDBPyConnection, failpoint: str | None = None):
    """BEGIN ... COMMIT, rolled back on any error; `<failpoint>_before_commit` and
    `<failpoint>_committed` are where crash tests kill the process."""
    con.execute("BEGIN")
    try:
        yield
        if failpoint:
            failpoints.hit(f"{failpoint}_before_commit")
        con.execute("COMMIT")
    except BaseException:
        _rollback(con)
        raise
    if failpoint:
        failpoints.hit(f"{failpoint}_committed")


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass


def _groups_up_to(sized: list[tuple[str, int]], limit: int) -> list[list[str]]:
    """Names in order, cut into runs whose sizes add up to at most `limit` (a larger one alone)."""
    groups: list[list[str]] = [[]]
    total = 0
    for name, size in sized:
        if groups[-1] and total + size > limit:
            groups.append([])
            total = 0
        groups[-1].append(name)
        total += size
    return groups


def _is_base_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return con.execute("SELECT table_type FROM information_schema.tables WHERE table_schema = 'main' "
                       "AND table_name = ?", [name]).fetchall() == [("BASE TABLE",)]


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def glob_literal(path: str | Path) -> str:
    """`path` as a DuckDB file pattern that matches only itself: a folder named `wh[1]` must not
    read `wh1`'s files."""
    return re.sub(r"([\[*?])", r"[\1]", str(path))


def raw_select(files: list[str] | str, *, positions: bool = False) -> str:
    """SELECT of raw_payloads' columns, typed as schema.py says, from landing files (a list of
    paths, or one pattern whose wildcards are meant); `positions` adds each row's file and its
    row number there."""
    source = ("[" + ", ".join(f"'{_sql_path(glob_literal(f))}'" for f in files) + "]") if isinstance(files, list) \
        else f"'{_sql_path(files)}'"
    cols = ", ".join(f'CAST("{c.name}" AS {c.duckdb_type}) AS "{c.name}"' for c in schema.RAW_PAYLOADS.columns)
    if positions:
        return f"SELECT {cols}, filename, file_row_number FROM read_parquet({source}, filename = true, file_row_number = true)"
    return f"SELECT {cols} FROM read_parquet({source})"


def raw_view_ddl(raw_dir: Path, *, temp: bool = False) -> str:
    """The raw_payloads view over every landing file (`temp`: for a read-only connection)."""
    glob = glob_literal(raw_dir.resolve()) + "/**/*.parquet"
    return f'CREATE OR REPLACE {"TEMP " if temp else ""}VIEW "{schema.RAW_PAYLOADS.name}" AS {raw_select(glob)}'


def _clear_dir(folder: Path) -> None:
    if folder.is_dir():
        for f in folder.glob("*.parquet"):
            f.unlink()


def _sql_path(path: Path | str) -> str:
    return str(path).replace("'", "''")


def connect_writer(root: Path, *, memory_limit: str = DUCKDB_MEMORY_LIMIT,
                   threads: int = DUCKDB_THREADS) -> duckdb.DuckDBPyConnection:
    try:
        con = duckdb.connect(str(root / DB_FILE))
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise WarehouseBusy(
                f"{root / DB_FILE} is open in another process (a notebook or a DuckDB shell?); "
                "close that connection, or open it read-only with warehouse.connect()"
            ) from None
        raise WarehouseError(f"cannot open {root / DB_FILE}: {exc}") from None
    tmp = root / ".duckdb_tmp"
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET threads = {int(threads)}")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET checkpoint_threshold = '1GB'")
    con.execute(f"SET temp_directory = '{_sql_path(tmp)}'")
    return con

