"""The writer: raw bodies and their tidy rows into the lake, one snapshot at a time.

DuckLake does the hard parts (Parquet data files, atomic multi-table commits, snapshots),
so this module only decides what goes into each commit:

- a batch's new raw bodies commit first, as their own snapshot (step `raw`);
- its tidy rows then commit in one transaction across every table (step `derive`),
  deleting only versions already stored, so a fresh key costs no delete;
- every derive snapshot records `raw_through`, the last raw_payloads rowid it covers.
  Bodies past it (a crash between the two commits, or Dagster's raw-only step) are
  derived by the next `land` or `derive_pending`, in landing order.

One writer at a time per warehouse folder (a file lock): the version and raw-key
bookkeeping that keeps re-runs free of duplicates assumes nobody else commits meanwhile.
Readers never take that lock (see reader.py).
"""
from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
from filelock import FileLock, Timeout

from warehouse import batches, failpoints, lake, schema
from warehouse.flatten import FlatBatch, flatten, sha256_hex
from warehouse.lake import LakeConfig, LakeError
from warehouse.records import PROJECT_ID_PATTERN, RawRecord

LOCK_FILE = ".writer.lock"
DEFAULT_BATCH_RECORDS = 2000
DEFAULT_BATCH_BYTES = 8 * 1024 * 1024  # ~1,100 payloads of the benchmark corpus; bounds the samples per batch
# DuckDB's buffer pool; the lake's data goes straight to Parquet files, so this bounds query memory only.
DUCKDB_MEMORY_LIMIT = "256MB"
DUCKDB_THREADS = 2


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


@dataclass
class _Batch:
    """One batch on its way to the lake: the new raw rows, and their flattened tidy rows."""

    raw: pa.Table
    flat: FlatBatch | None
    raw_through: int | None = None  # set for bodies read back from the lake (their rowids are known)


class Warehouse:
    """A writer on a warehouse. Use `with Warehouse.open(folder) as wh:`."""

    def __init__(self, root: str | os.PathLike, *, catalog: str | None = None, data_path: str | None = None,
                 lock_timeout: float = 600, redact: bool = True, source: str = "library",
                 memory_limit: str = DUCKDB_MEMORY_LIMIT, threads: int = DUCKDB_THREADS):
        self.root = Path(root)
        self.redact = redact
        self.source = source
        self._config_args = (catalog, data_path)
        self._lock = FileLock(str(self.root / LOCK_FILE))
        self._lock_timeout = lock_timeout
        self._settings = {"memory_limit": memory_limit, "threads": threads}
        self.config: LakeConfig | None = None
        self.con: duckdb.DuckDBPyConnection | None = None
        self._reader: duckdb.DuckDBPyConnection | None = None  # the reading thread's own connection
        self._raw_keys: dict[str, set[str]] = {}  # per project: digests of stored (source, sha256)
        self._versions: dict[str, set[tuple[int, int]]] = {}  # per project: stored (job_id, version_id)

    @classmethod
    def open(cls, root: str | os.PathLike, **kwargs) -> "Warehouse":
        return cls(root, **kwargs)

    # -- lifecycle ---------------------------------------------------------------
    def __enter__(self) -> "Warehouse":
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WarehouseError(f"cannot create warehouse folder {self.root}: {exc.strerror}") from None
        try:
            self.config = LakeConfig.for_folder(self.root, *self._config_args)
        except LakeError as exc:
            raise WarehouseError(str(exc)) from None
        try:
            self._lock.acquire(timeout=self._lock_timeout)
        except Timeout:
            raise WarehouseBusy(
                f"another writer is using the warehouse {self.root} (waited {self._lock_timeout:.0f} s); "
                "wait for it to finish or raise the lock timeout"
            ) from None
        try:
            self.con = lake.new_connection(**self._settings)
            lake.attach(self.con, self.config)
            self.con.execute(f"USE {lake.ALIAS}")
            lake.create_tables(self.con)
            self._reader = self.con.cursor()
            from warehouse.migrate import migrate_legacy_layout

            migrate_legacy_layout(self)
        except LakeError as exc:
            self.close()
            raise WarehouseError(str(exc)) from None
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self.con is not None:
            self.con.close()
            self.con = None
        if self._lock.is_locked:
            self._lock.release()

    # -- reading what is stored --------------------------------------------------
    def version_states(self, project_id: str) -> dict[tuple[int, int], bool]:
        """(job_id, version_id) -> is_final, for every version stored for the project."""
        rows = self.con.execute(
            "SELECT job_id, version_id, is_final FROM job_versions WHERE project_id = ?", [project_id]
        ).fetchall()
        return {(job, version): bool(final) for job, version, final in rows}

    def snapshot_id(self) -> int:
        return self.con.execute(f"SELECT id FROM {lake.ALIAS}.current_snapshot()").fetchone()[0]

    def raw_through(self) -> int:
        """The last raw_payloads rowid whose body is derived (-1: none yet)."""
        row = self.con.execute("SELECT max(raw_through) FROM loads").fetchone()
        return -1 if row[0] is None else row[0]

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
        self._commit_each(self._stored_batches(self.raw_through(), batch_records, batch_bytes), report)
        return report

    def rebuild(self, *, batch_records: int = DEFAULT_BATCH_RECORDS,
                batch_bytes: int = DEFAULT_BATCH_BYTES) -> LoadReport:
        """Every derived row again from raw_payloads, as one snapshot: readers see the old tables
        until it commits, and a rebuild that fails or is killed leaves them as they were."""
        report = LoadReport(load_id=new_load_id())
        self._versions = {}
        with transaction(self.con, "rebuild"):
            for table in schema.STORED_TIDY_TABLES + (schema.REJECTED_PAYLOADS,):
                self.con.execute(f'DELETE FROM "{table.name}"')
            for batch in self._stored_batches(-1, batch_records, batch_bytes):
                self._write_derived(batch, report)
                failpoints.hit("rebuild_batch_written")
            self.label_snapshot("rebuild", report, raw_through=self._max_raw_rowid())
        report.load_id = "rebuild"
        return report

    def mark_deleted_upstream(self, project_id: str, live_job_ids: Iterable[int], at: datetime) -> int:
        """After a complete job listing: mark the stored versions of jobs it lacks as deleted upstream
        at `at`, and clear the mark of jobs it lists again. One snapshot, none when nothing changes.
        Returns how many versions were newly marked."""
        self.con.register("live_jobs", pa.table({"job_id": pa.array(sorted(set(live_job_ids)), pa.int64())}))
        try:
            gone = ("project_id = ? AND deleted_upstream_at IS NULL "
                    "AND job_id NOT IN (SELECT job_id FROM live_jobs)")
            back = "project_id = ? AND deleted_upstream_at IS NOT NULL AND job_id IN (SELECT job_id FROM live_jobs)"
            marked, cleared = (self.con.execute(f"SELECT count(*) FROM job_versions WHERE {where}",
                                                [project_id]).fetchone()[0] for where in (gone, back))
            if marked or cleared:
                with transaction(self.con, "deleted_upstream"):
                    self.con.execute(f"UPDATE job_versions SET deleted_upstream_at = ? WHERE {gone}", [at, project_id])
                    self.con.execute(f"UPDATE job_versions SET deleted_upstream_at = NULL WHERE {back}", [project_id])
                    self.label_snapshot("deleted_upstream", LoadReport(projects={project_id}))
        finally:
            self.con.unregister("live_jobs")
        return marked

    # -- preparing batches (the reading thread) ------------------------------------
    def _prepared(self, records: Iterable[RawRecord], report: LoadReport, derive: bool,
                  batch_records: int, batch_bytes: int) -> Iterator[_Batch]:
        for chunk in batches.chunks(records, batch_records, batch_bytes):
            for record in chunk:
                validate_project_id(record.project_id)
            shas = [sha256_hex(r.body) for r in chunk]
            fresh = self._not_stored(chunk, shas)
            report.duplicates += len(chunk) - len(fresh)
            if not fresh:
                continue
            chunk, shas = [chunk[i] for i in fresh], [shas[i] for i in fresh]
            raw = batches.raw_table(chunk, shas, report.load_id)
            flat = None
            if derive:
                flat = flatten(chunk, redact=self.redact, shas=shas)
                raw = batches.with_payload_ids(raw, flat.raw_keys)
                flat.rejected = batches.rejected_with_load_ids(flat.rejected, raw)
            yield _Batch(raw, flat)

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
            digests = self._reader.execute(
                f"SELECT left(sha256(CAST(length(source) AS VARCHAR) || ':' || source || payload_sha256), 32) "
                f"AS d FROM {lake.ALIAS}.raw_payloads WHERE project_id = ?", [project_id]).to_arrow_table()
            keys = self._raw_keys[project_id] = set(digests.column("d").to_pylist())
        return keys

    def _stored_batches(self, after: int, batch_records: int, batch_bytes: int) -> Iterator[_Batch]:
        """Raw bodies past rowid `after`, flattened a batch at a time. The batches are cut from the
        keys alone; only one batch of bodies is read at a time, so memory does not grow with the lake."""
        cursor = self._reader
        listed = cursor.execute(f"SELECT rowid, byte_size FROM {lake.ALIAS}.raw_payloads WHERE rowid > ? ORDER BY rowid",
                                [after]).to_arrow_table()
        rowids = listed.column("rowid").to_numpy()
        sizes = listed.column("byte_size").to_numpy()
        cols = ", ".join(f'"{c}"' for c in schema.RAW_PAYLOADS.column_names)
        for start, stop in batches.cuts(sizes, batch_records, batch_bytes):
            first, last = int(rowids[start]), int(rowids[stop - 1])
            raw = cursor.execute(f"SELECT {cols} FROM {lake.ALIAS}.raw_payloads WHERE rowid BETWEEN ? AND ? "
                                 "ORDER BY rowid", [first, last]).to_arrow_table()
            records = batches.records_from_raw(raw)
            flat = flatten(records, redact=self.redact, shas=raw.column("payload_sha256").to_pylist())
            flat.rejected = batches.rejected_with_load_ids(flat.rejected, raw)
            yield _Batch(raw.slice(0, 0), flat, raw_through=last)

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
            if batch.flat is not None:
                batch.raw_through = self._max_raw_rowid()
        if batch.flat is None:
            return
        with transaction(self.con, "derive"):
            derived = LoadReport()
            self._write_derived(batch, derived)
            self.label_snapshot("derive", derived, load_id=report.load_id, raw_through=batch.raw_through)
        report.add(derived)

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
        value = self.con.execute("SELECT max(rowid) FROM raw_payloads").fetchone()[0]
        return -1 if value is None else value

    def label_snapshot(self, step: str, report: LoadReport, *, load_id: str | None = None,
                        raw_through: int | None = None) -> None:
        info = {"step": step, "load_id": load_id or report.load_id or None, "source": self.source,
                "projects": ",".join(sorted(report.projects)), "landed": report.landed,
                "versions_loaded": report.versions_loaded, "rejected": report.rejected,
                "field_issues": report.field_issues}
        if raw_through is not None:
            info["raw_through"] = raw_through
        self.con.execute(f"CALL {lake.ALIAS}.set_commit_message('modelarts-etl', ?, extra_info => ?)",
                         [f"{step} {info['load_id'] or ''}".strip(), json.dumps(info)])


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
