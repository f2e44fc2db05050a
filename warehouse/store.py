"""The writer: raw bodies and their tidy rows into the lake, one snapshot at a time.

DuckLake does the hard parts (Parquet data files, atomic multi-table commits, snapshots),
so this module only decides what goes into each commit:

- a batch's new raw bodies commit first, as their own snapshot (step `raw`);
- its tidy rows then commit in one transaction across every table (step `derive`),
  deleting only versions already stored, so a fresh key costs no delete;
- every derive snapshot records `raw_through`, the last raw_payloads rowid it covers.
  Bodies past it (a crash between the two commits, or Dagster's raw-only step) are
  derived by the next `land` or `derive_pending`, in landing order.

One writer at a time per project (file locks, writerlock.py): the version and raw-key
bookkeeping that keeps re-runs free of duplicates assumes nobody else commits that
project's rows meanwhile. On the embedded catalog a writer has the whole warehouse; on a
shared catalog (PostgreSQL) a writer opened with `projects=` owns just those, and writers
of other projects commit beside it (progress.py says what each has derived). Readers never
take a lock (see reader.py).
"""
from __future__ import annotations

import json
import logging
import os
import random
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset  # noqa: F401 - DuckDB imports it when it first reads an Arrow table: done here, in one
import pyarrow.substrait  # noqa: F401 - thread, as a Ctrl-C in the middle of that import once left its lock held

from pipelines.modelarts import failpoints
from warehouse import batches, datafiles, lake, progress, schema, store_v2, writerlock
from warehouse.conflicts import CONFLICT_RETRIES, ConflictError, with_conflict_retries
from warehouse.flatten import FlatBatch, flatten, sha256_hex
from warehouse.flatten_v2 import V2Batch, flatten_v2, has_v2
from warehouse.lake import LakeConfig, LakeError
from pipelines.modelarts.records import PROJECT_ID_PATTERN, RawRecord

LOCK_FILE = writerlock.LOCK_FILE
DEFAULT_BATCH_RECORDS = 2000
DEFAULT_BATCH_BYTES = 8 * 1024 * 1024  # ~1,100 payloads of the benchmark corpus; bounds the samples per batch
# DuckDB's buffer pool; the lake's data goes straight to Parquet files, so this bounds query memory only.
DUCKDB_MEMORY_LIMIT = "256MB"
DUCKDB_THREADS = 2
READABLE_RAW = "memory.main.readable_raw"  # raw_payloads without its damaged files (datafiles.py)
log = logging.getLogger("warehouse")


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
    v2_jobs_loaded: int = 0  # v2 job details whose tidy rows were (re)written
    load_id: str = ""
    projects: set[str] = field(default_factory=set)
    damage: list = field(default_factory=list)  # datafiles.Damage of the raw files that could not be read
    versions_kept: int = 0  # rebuild: versions whose body is unreadable, kept as they were

    def add(self, other: "LoadReport") -> None:
        for name in ("landed", "duplicates", "versions_loaded", "rejected", "field_issues", "v2_jobs_loaded"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.projects |= other.projects


@dataclass
class _Batch:
    """One batch on its way to the lake: the new raw rows, and their flattened tidy rows."""

    raw: pa.Table
    flat: FlatBatch | None
    raw_through: int | None = None  # set for bodies read back from the lake (their rowids are known)
    v2: V2Batch | None = None  # the batch's v2 bodies, flattened (None when it has none)


class Warehouse:
    """A writer on a warehouse. Use `with Warehouse.open(folder) as wh:`."""

    def __init__(self, root: str | os.PathLike, *, catalog: str | None = None, data_path: str | None = None,
                 lock_timeout: float = 600, redact: bool = True, source: str = "library",
                 memory_limit: str = DUCKDB_MEMORY_LIMIT, threads: int = DUCKDB_THREADS, create: bool = True,
                 projects: Iterable[str] | None = None, connection: duckdb.DuckDBPyConnection | None = None):
        self.root = Path(root)
        self._lent = connection  # an earlier writer's, from keep_connection(): no second attach to pay for
        self.create = create  # False: refuse a folder that is not a warehouse yet
        self.redact = redact
        self.source = source
        self._config_args = (catalog, data_path)
        self.scope = sorted(set(projects)) if projects else None  # the projects this writer owns; None: all
        self._lock = writerlock.WriterLock(self.root)
        self._created: list[Path] = []  # what this open made, removed again if it fails having landed nothing
        self._discard = False
        self._opened = False  # __enter__ finished: from then on a broken catalog is not ours to remove
        self._lock_timeout = lock_timeout
        self._settings = {"memory_limit": memory_limit, "threads": threads}
        self.config: LakeConfig | None = None
        self.con: duckdb.DuckDBPyConnection | None = None
        self._reader: duckdb.DuckDBPyConnection | None = None  # the reading thread's own connection
        self._raw_keys: dict[str, set[str]] = {}  # per project: digests of stored (source, sha256)
        self._versions: dict[str, set[tuple[int, int]]] = {}  # per project: stored (job_id, version_id)
        self._raw = f"{lake.ALIAS}.raw_payloads"  # READABLE_RAW once a damaged raw file is found
        self.damage: list[datafiles.Damage] = []

    @classmethod
    def open(cls, root: str | os.PathLike, **kwargs) -> "Warehouse":
        return cls(root, **kwargs)

    # -- lifecycle ---------------------------------------------------------------
    def __enter__(self) -> "Warehouse":
        try:
            self.config = LakeConfig.for_folder(self.root, *self._config_args)
        except LakeError as exc:
            raise WarehouseError(str(exc)) from None
        self._refuse_unusable_folder()
        data = Path(self.config.data_path) if self.config.local_data else None
        self._created = [p for p in (self.root, self.root / LOCK_FILE, self.config.sqlite_file, data)
                         if p is not None and not os.path.lexists(p)]
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if self.scope and not self.config.embedded:
                self._lock = writerlock.ProjectLocks(self.root, self.scope)
            self.acquire_lock()
            self.con = self._attached()
            self.con.execute(f"USE {lake.ALIAS}")
            if not self.config.embedded:
                self.con.execute(CONFLICT_RETRIES)
            _retrying(lambda: lake.create_tables(self.con), "creating the tables")
            self._reader = self.con.cursor()
            from warehouse.migrate import migrate_legacy_layout

            migrate_legacy_layout(self)
            self._opened = True
        except LakeError as exc:
            self._close_failed()
            raise WarehouseError(f"{exc}{recover_hint(self.config)}") from None
        except OSError as exc:
            self._close_failed()
            raise WarehouseError(writerlock.write_refused(self.root, exc)) from None
        except BaseException:
            self._close_failed()
            raise
        return self

    def _attached(self) -> duckdb.DuckDBPyConnection:
        """A connection with the lake attached. Writers opening a new shared catalog at the same moment
        race to create DuckLake's own tables; the losers find them made when they try again."""
        if self._lent is not None:
            con, self._lent = self._lent, None
            return con
        for attempt in range(3):
            con = lake.new_connection(**self._settings)
            try:
                lake.attach(con, self.config)
                return con
            except LakeError as exc:
                con.close()
                if self.config.embedded or attempt == 2 or "initialize DuckLake" not in str(exc):
                    raise
                time.sleep(0.5 + random.random())

    def acquire_lock(self) -> None:
        """Take the writer lock, saying once for whom it waits."""
        try:
            self._lock.acquire(self._lock_timeout)
        except writerlock.LockBusy as exc:
            raise WarehouseBusy(str(exc)) from None
        except writerlock.LockError as exc:
            raise WarehouseError(str(exc)) from None

    def _refuse_unusable_folder(self) -> None:
        """A folder that is not a warehouse (with create=False), or a local lake that lost its catalog:
        opening it would make a new empty catalog over data it does not know."""
        from warehouse.migrate import needs_migration
        from warehouse.recover import has_raw_files

        if self.config.exists() or needs_migration(self.root):
            return
        if self.config.embedded and has_raw_files(self.root):
            raise WarehouseError(f"the warehouse {self.root} has data files but no catalog "
                                 f"({self.config.sqlite_file.name} is missing): run `modelarts-etl recover "
                                 f"--warehouse {self.root}` to rebuild it from the raw data files")
        if not self.create:
            raise WarehouseError(f"no warehouse at {self.root.absolute()}: run `modelarts-etl ingest` or `sync` "
                                 "first, or pass --warehouse")

    def discard_if_empty(self) -> None:
        """Mark a load that failed without raising (a sync's report): if this open created the
        warehouse and nothing landed, closing removes it again."""
        self._discard = True

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None and not self._discard:
            self.close()
        else:
            self._close_failed()

    def _close_failed(self) -> None:
        """Close; if this open created the warehouse and nothing was landed, remove it again, so a
        mistyped folder or a sync that failed before its first answer leaves no empty warehouse."""
        created = bool(self._created) and (self.con is None or self._nothing_landed())
        self.close()
        if created:
            for path in reversed(self._created):
                _remove(path, self.config)

    def _nothing_landed(self) -> bool:
        try:
            return self.con.execute("SELECT count(*) FROM raw_payloads").fetchone()[0] == 0
        except duckdb.Error:
            return not self._opened  # interrupted while making the catalog: nothing can have landed

    def keep_connection(self) -> duckdb.DuckDBPyConnection:
        """Hand this writer's connection, lake attached, to the caller instead of closing it.

        For a process that opens writer after writer on one lake (a Dagster run's steps):
        attaching costs ~0.5 s a time. The caller passes it to the next writer as
        `connection=`, or reads on a cursor of it (it sees each new snapshot), and closes it.
        """
        con, self.con = self.con, None
        return con

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        for con in (self.con, self._lent):  # a lent connection never used: the open failed before it
            if con is not None:
                con.close()
        self.con = self._lent = None
        self._lock.release()

    # -- reading what is stored --------------------------------------------------
    def version_states(self, project_id: str) -> dict[tuple[int, int], bool]:
        """(job_id, version_id) -> is_final, for every version stored for the project."""
        rows = self.con.execute(
            "SELECT job_id, version_id, is_final FROM job_versions WHERE project_id = ?", [project_id]
        ).fetchall()
        return {(job, version): bool(final) for job, version, final in rows}

    def v2_job_states(self, project_id: str) -> dict[str, tuple[bool, int | None]]:
        """training_job_id -> (is_final, create_time ms) of every v2 job stored for the project."""
        return store_v2.job_states(self, project_id)

    def v2_listed_jobs(self, project_id: str) -> dict[str, int | None]:
        """training_job_id -> create_time ms of every v2 job the search listed for the project."""
        return store_v2.listed_jobs(self, project_id)

    def snapshot_id(self) -> int:
        return self.con.execute(f"SELECT id FROM {lake.ALIAS}.current_snapshot()").fetchone()[0]

    def raw_through(self) -> int:
        """The highest raw_payloads rowid up to which every body is derived (-1: none yet)."""
        return progress.derived_through(self.con, self._raw)

    # -- writing -----------------------------------------------------------------
    def land(self, records: Iterable[RawRecord], *, derive: bool = True, batch_records: int = DEFAULT_BATCH_RECORDS,
             batch_bytes: int = DEFAULT_BATCH_BYTES, load_id: str | None = None) -> LoadReport:
        """Land every body not stored yet, then (unless `derive=False`) its tidy rows, batch by batch.

        This thread reads and flattens batch n+1 while another commits batch n: DuckDB's writes
        release the GIL, so both cores work. Bodies left underived by an earlier load are derived first.
        """
        report = LoadReport(load_id=load_id or new_load_id())
        if derive:
            report.add(self.derive_pending())
        self._commit_each(self._prepared(records, report, derive, batch_records, batch_bytes), report)
        return report

    def derive_pending(self, *, batch_records: int = DEFAULT_BATCH_RECORDS,
                       batch_bytes: int = DEFAULT_BATCH_BYTES) -> LoadReport:
        """Derive every landed body past the last derive snapshot, in landing order."""
        report = LoadReport(load_id=new_load_id())
        unscoped = progress.load_thresholds(self.con)
        self._commit_each(self._stored_batches(progress.pending_where(unscoped, self.scope), batch_records,
                                               batch_bytes), report)
        return report

    def rebuild(self, *, batch_records: int = DEFAULT_BATCH_RECORDS,
                batch_bytes: int = DEFAULT_BATCH_BYTES) -> LoadReport:
        """Every derived row again from raw_payloads, as one snapshot (see rebuild.py)."""
        from warehouse.rebuild import rebuild

        return rebuild(self, batch_records=batch_records, batch_bytes=batch_bytes)

    def mark_deleted_upstream(self, project_id: str, live_job_ids: Iterable[int], at: datetime) -> int:
        """After a complete job listing (see upstream.py); returns how many versions were newly marked."""
        from warehouse.upstream import mark_deleted_upstream

        return mark_deleted_upstream(self, project_id, live_job_ids, at)

    # -- preparing batches (the reading thread) ------------------------------------

    def _prepared(self, records: Iterable[RawRecord], report: LoadReport, derive: bool,
                  batch_records: int, batch_bytes: int) -> Iterator[_Batch]:
        for chunk in batches.chunks(records, batch_records, batch_bytes):
            for record in chunk:
                validate_project_id(record.project_id)
                if self.scope and record.project_id not in self.scope:
                    raise WarehouseError(f"this writer owns projects {', '.join(self.scope)}, not "
                                         f"{record.project_id}: open it with that project too")
            shas = [sha256_hex(r.body) for r in chunk]
            fresh = self._not_stored(chunk, shas)
            report.duplicates += len(chunk) - len(fresh)
            if not fresh:
                continue
            chunk, shas = [chunk[i] for i in fresh], [shas[i] for i in fresh]
            raw = batches.raw_table(chunk, shas, report.load_id)
            flat = v2 = None
            if derive:
                flat = flatten(chunk, redact=self.redact, shas=shas)
                raw = batches.with_payload_ids(raw, flat.raw_keys)
                flat.rejected = batches.rejected_with_load_ids(flat.rejected, raw)
                v2 = self._flatten_v2(chunk, shas, raw)
            yield _Batch(raw, flat, v2=v2)

    def _not_stored(self, chunk: list[RawRecord], shas: list[str]) -> list[int]:
        """Indexes of the records whose raw key (project, source, sha256) is stored neither in the
        lake nor earlier in this load; marks them as stored."""
        return [i for i, (record, sha) in enumerate(zip(chunk, shas))
                if self.claim_raw_key(record.project_id, record.source, sha)]

    def claim_raw_key(self, project_id: str, source: str, sha: str) -> bool:
        """True (and the key is now taken) if this body is not stored yet."""
        keys = self._stored_raw_keys(project_id)
        digest = _raw_digest(source, sha)
        if digest in keys:
            return False
        keys.add(digest)
        return True

    def _stored_raw_keys(self, project_id: str) -> set[str]:
        """Digests of the project's stored raw keys, computed by DuckDB: 200,000 keys as Python
        tuples would cost more memory than the set itself."""
        keys = self._raw_keys.get(project_id)
        if keys is None:
            digests = self._read_raw(
                "SELECT left(sha256(CAST(length(source) AS VARCHAR) || ':' || source || payload_sha256), 32) "
                "AS d FROM {raw} WHERE project_id = ?", [project_id])
            keys = self._raw_keys[project_id] = set(digests.column("d").to_pylist())
        return keys

    def _stored_batches(self, pending: tuple[str, list], batch_records: int,
                        batch_bytes: int) -> Iterator[_Batch]:
        """The raw bodies `pending` keeps (a WHERE over `r`, progress.py), flattened a batch at a time.
        The batches are cut from the keys alone; only one batch of bodies is read at a time, so memory
        does not grow with the lake."""
        where, params = pending
        source = progress.pending_from("{raw}")
        listed = self._read_raw(f"SELECT r.rowid, r.byte_size FROM {source} WHERE {where} ORDER BY r.rowid", params)
        rowids = listed.column("rowid").to_numpy()
        sizes = listed.column("byte_size").to_numpy()
        cols = ", ".join(f'r."{c}"' for c in schema.RAW_PAYLOADS.column_names)
        for start, stop in batches.cuts(sizes, batch_records, batch_bytes):
            first, last = int(rowids[start]), int(rowids[stop - 1])
            raw = self._read_raw(f"SELECT {cols} FROM {source} WHERE r.rowid BETWEEN ? AND ? AND {where} "
                                 "ORDER BY r.rowid", [first, last, *params])
            records = batches.records_from_raw(raw)
            flat = flatten(records, redact=self.redact, shas=raw.column("payload_sha256").to_pylist())
            flat.rejected = batches.rejected_with_load_ids(flat.rejected, raw)
            v2 = self._flatten_v2(records, raw.column("payload_sha256").to_pylist(), raw)
            yield _Batch(raw.slice(0, 0), flat, raw_through=last, v2=v2)

    def _flatten_v2(self, records: list[RawRecord], shas: list[str], raw: pa.Table) -> V2Batch | None:
        if not has_v2(records):
            return None
        v2 = flatten_v2(records, redact=self.redact, shas=shas)
        v2.rejected = batches.rejected_with_load_ids(v2.rejected, raw)
        return v2

    def _read_raw(self, sql: str, params: list) -> pa.Table:
        """`sql` on raw_payloads (`{raw}`); a damaged raw file switches every later read to the readable ones."""
        try:
            return self._reader.execute(sql.format(raw=self._raw), params).to_arrow_table()
        except duckdb.Error as exc:
            if self._raw == READABLE_RAW or not datafiles.is_damage_error(exc):
                raise
        self.use_readable_raw(datafiles.damaged(self.con, [schema.RAW_PAYLOADS.name]))
        return self._reader.execute(sql.format(raw=self._raw), params).to_arrow_table()

    def use_readable_raw(self, damage: list) -> None:
        """Read raw bodies from the undamaged files only, and say so once."""
        if not damage:
            raise WarehouseError("raw_payloads could not be read, but every data file reads whole: "
                                 "run `modelarts-etl check` and report the error")
        if self._raw != READABLE_RAW:
            log.warning("warning: %d raw data file(s) of %s are damaged (%d bodies unreadable); the other "
                        "bodies are used. Run `modelarts-etl check --warehouse %s` for the list, then restore "
                        "the files from a backup or run `modelarts-etl recover`", len(damage), self.root,
                        sum(d.file.rows for d in damage), self.root)
        self.damage = damage
        self._raw = READABLE_RAW
        self.con.execute(f"CREATE OR REPLACE VIEW {READABLE_RAW} AS {datafiles.readable_raw_sql(self.con, damage)}")

    # -- committing (the commit thread) ------------------------------------------------
    def _commit_each(self, prepared: Iterator[_Batch], report: LoadReport) -> None:
        """Commit batches on one thread while this one prepares the next (at most one in flight)."""
        with ThreadPoolExecutor(1, thread_name_prefix="lake-commit") as pool:
            committing = None
            for batch in prepared:
                if committing is not None:
                    committing.result()
                committing = pool.submit(self._commit, batch, report)
            if committing is not None:
                committing.result()

    def _commit(self, batch: _Batch, report: LoadReport) -> None:
        """The raw snapshot, then the derived one."""
        if batch.raw.num_rows:
            with transaction(self.con, "raw"):
                self.insert(schema.RAW_PAYLOADS.name, batch.raw)
                landed = LoadReport(landed=batch.raw.num_rows,
                                    projects=set(batch.raw.column("project_id").unique().to_pylist()))
                self.label_snapshot("raw", landed, load_id=report.load_id)
            report.add(landed)
            if self._raw == READABLE_RAW:
                self.use_readable_raw(self.damage)  # the view names files: add the one just committed
            if batch.flat is not None:
                batch.raw_through = self._max_raw_rowid()
        if batch.flat is None:
            return
        derived = _retrying(lambda: self._commit_derived(batch, report.load_id), "deriving")
        report.add(derived)

    def _commit_derived(self, batch: _Batch, load_id: str) -> LoadReport:
        with transaction(self.con, "derive"):
            derived = LoadReport()
            self._write_derived(batch, derived)
            self.label_snapshot("derive", derived, load_id=load_id, raw_through=batch.raw_through)
        return derived

    def _write_derived(self, batch: _Batch, report: LoadReport) -> None:
        """Replace the batch's versions in every tidy table and add its rejections (inside a transaction)."""
        flat, con = batch.flat, self.con
        replaced = self._already_stored(flat.keys)
        if replaced is not None:
            con.register("replaced_keys", replaced)
            for table in schema.STORED_TIDY_TABLES:
                con.execute(f'DELETE FROM "{table.name}" WHERE (project_id, job_id, version_id) IN '
                            "(SELECT (project_id, job_id, version_id) FROM replaced_keys)")
            con.unregister("replaced_keys")
        for table in schema.STORED_TIDY_TABLES:
            data = flat.series if table is schema.SYSTEM_METRIC_SERIES else flat.tables[table.name]
            self.insert(table.name, data)
        self.insert(schema.REJECTED_PAYLOADS.name, flat.rejected)
        if batch.v2 is not None:
            store_v2.write(self, batch.v2)
            report.add(LoadReport(v2_jobs_loaded=batch.v2.jobs_loaded, rejected=batch.v2.rejected.num_rows,
                                  field_issues=batch.v2.tables["v2_field_issues"].num_rows,
                                  projects=set(batch.v2.detail_keys.column("project_id").to_pylist())))
        for project, job, version in zip(*(flat.keys.column(c).to_pylist() for c in schema.VERSION_KEY)):
            self._stored_versions(project).add((job, version))
        report.add(LoadReport(versions_loaded=flat.versions_loaded, rejected=flat.rejected.num_rows,
                              field_issues=flat.tables["field_issues"].num_rows,
                              projects=set(flat.keys.column("project_id").unique().to_pylist())))

    def _already_stored(self, keys: pa.Table) -> pa.Table | None:
        """The rows of `keys` whose version is stored (None when there are none: nothing to delete)."""
        mask = [(job, version) in self._stored_versions(project)
                for project, job, version in zip(*(keys.column(c).to_pylist() for c in schema.VERSION_KEY))]
        return keys.filter(pa.array(mask, pa.bool_())) if any(mask) else None

    def _stored_versions(self, project_id: str) -> set[tuple[int, int]]:
        versions = self._versions.get(project_id)
        if versions is None:
            rows = self.con.execute("SELECT job_id, version_id FROM job_versions WHERE project_id = ?",
                                    [project_id]).fetchall()
            versions = self._versions[project_id] = set(rows)
        return versions

    def insert(self, table_name: str, data: pa.Table) -> None:
        if data.num_rows == 0:
            return
        self.con.register("batch_rows", data)
        self.con.execute(f'INSERT INTO "{table_name}" BY NAME SELECT * FROM batch_rows')
        self.con.unregister("batch_rows")

    def _max_raw_rowid(self) -> int:
        """The newest body this writer may vouch for: of its projects only, when it owns some."""
        where = "project_id IN (SELECT unnest(?::VARCHAR[]))" if self.scope else "TRUE"
        value = self.con.execute(f"SELECT max(rowid) FROM {self._raw} WHERE {where}",
                                 [self.scope] if self.scope else []).fetchone()[0]
        return -1 if value is None else value

    def label_snapshot(self, step: str, report: LoadReport, *, load_id: str | None = None,
                        raw_through: int | None = None) -> None:
        info = {"step": step, "load_id": load_id or report.load_id or None, "source": self.source,
                "projects": ",".join(sorted(report.projects)), "landed": report.landed,
                "versions_loaded": report.versions_loaded, "rejected": report.rejected,
                "field_issues": report.field_issues, "v2_jobs_loaded": report.v2_jobs_loaded}
        if raw_through is not None:
            info["raw_through"] = raw_through
            if self.scope:
                info["scope"] = self.scope
        self.con.execute(f"CALL {lake.ALIAS}.set_commit_message('modelarts-etl', ?, extra_info => ?)",
                         [f"{step} {info['load_id'] or ''}".strip(), json.dumps(info)])


def _retrying(attempt, what: str):
    try:
        return with_conflict_retries(attempt, what)
    except ConflictError as exc:
        raise WarehouseError(str(exc)) from None


def recover_hint(config: LakeConfig | None) -> str:
    if config is None or not config.embedded or not config.sqlite_file.exists():
        return ""
    return (f"; if {config.sqlite_file.name} is damaged, run `modelarts-etl recover --warehouse {config.root}` "
            "(it rebuilds the catalog from the raw data files and keeps the old files aside)")


def _remove(path: Path, config: LakeConfig) -> None:
    """Remove what a failed first open created (the catalog with its -wal/-shm, empty folders)."""
    try:
        if config.sqlite_file is not None and path == config.sqlite_file:
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
        elif path == config.root:
            path.rmdir()  # only if empty: never anything of the user's
        elif path.is_dir():
            shutil.rmtree(path)  # a data folder this open made: no snapshot names any file in it
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def _raw_digest(source: str, sha: str) -> str:
    """A raw key (within a project) as 128 bits; the length prefix keeps (source, sha) unambiguous."""
    return sha256_hex(f"{len(source)}:{source}{sha}".encode())[:32]


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection, failpoint: str | None = None):
    """BEGIN ... COMMIT, rolled back on any error; `<failpoint>_before_commit` and
    `<failpoint>_committed` are where crash tests kill the process."""
    con.execute("BEGIN")
    try:
        yield
        if failpoint:
            failpoints.hit(f"{failpoint}_before_commit")
        con.execute("COMMIT")
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass
        raise
    if failpoint:
        failpoints.hit(f"{failpoint}_committed")
