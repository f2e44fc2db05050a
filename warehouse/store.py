"""The warehouse folder: DuckDB is the working copy, Parquet the export beside it.

Layout: `<root>/modelarts.duckdb` and `<root>/parquet/<table>/<project_id>/*.parquet`.
(Project folders are deliberately not `key=value` hive folders: hive type inference
would turn a project id like "123" into a BIGINT. Every file carries `project_id`.)

Why it is safe:
- one writer at a time, enforced by a file lock; a second writer waits, then stops
  with a clear message (DuckDB itself allows one writing process per file);
- raw bytes are committed before anything parses them, and a payload whose raw row
  is already stored is not derived again, so re-loading changes nothing;
- every version's rows in every table are replaced in one DuckDB transaction;
- Parquet files are written to a temporary name and renamed into place, and the
  partitions still to export are recorded in the same transaction as the data, so a
  crash between the two is repaired by the next writer.
"""
from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
from filelock import FileLock, Timeout

from warehouse import failpoints, schema
from warehouse.flatten import FlatBatch, flatten
from warehouse.records import RawRecord

DB_FILE = "modelarts.duckdb"
PARQUET_DIR = "parquet"
LOCK_FILE = ".writer.lock"
DEFAULT_BATCH_RECORDS = 2000
DEFAULT_BATCH_BYTES = 48 * 1024 * 1024
APPEND_TABLES = ("raw_payloads", "rejected_payloads")  # exported one file per load, never rewritten
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
    "CREATE TABLE IF NOT EXISTS _underived (project_id VARCHAR, source VARCHAR, payload_sha256 VARCHAR)",
)


class Warehouse:
    """A writer on a warehouse folder. Use `Warehouse.open(root)` as a context manager."""

    def __init__(self, root: str | os.PathLike, *, lock_timeout: float = 600, redact: bool = True,
                 memory_limit: str = "512MB", threads: int = 2):
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
        for table in schema.ALL_TABLES:
            self.con.execute(table.ddl())
        for ddl in _INTERNAL_DDL:
            self.con.execute(ddl)

    def _repair(self) -> None:
        """Finish what a crashed writer left: derive landed-but-underived raw rows, export dirty partitions."""
        for stale in (self.root / PARQUET_DIR).glob("*/*/.*.tmp"):
            stale.unlink()  # a crashed export's half-written file; never visible to readers
        self.derive_pending(export=False)
        self.export()

    # -- reading what is stored --------------------------------------------------
    def version_states(self, project_id: str) -> dict[tuple[int, int], bool]:
        """(job_id, version_id) -> is_final, for every version stored for the project."""
        rows = self.con.execute(
            "SELECT job_id, version_id, is_final FROM job_versions WHERE project_id = ?", [project_id]
        ).fetchall()
        return {(job, version): bool(final) for job, version, final in rows}

    # -- writing -----------------------------------------------------------------
    def land(self, records: Iterable[RawRecord], *, derive: bool = True, batch_records: int = DEFAULT_BATCH_RECORDS,
             batch_bytes: int = DEFAULT_BATCH_BYTES, export: bool = True) -> LoadReport:
        """Store raw bodies, derive the tidy tables from the new ones, export Parquet.

        Streams: at most one batch of records is held in memory at a time. With
        `derive=False` only the raw bodies are stored; `derive_pending()` derives them later.
        """
        load_id = new_load_id()
        report = LoadReport(load_id=load_id)
        for chunk in _chunks(records, batch_records, batch_bytes):
            report.add(self._land_chunk(chunk, load_id, derive))
        if export:
            self.export()
        return report

    def derive_pending(self, project_id: str | None = None, *, export: bool = True) -> LoadReport:
        """Derive tidy rows for raw bodies landed with `derive=False` (or left by a crash)."""
        report = LoadReport(load_id="pending")
        where = "WHERE r.project_id = $project" if project_id else ""
        params = {"project": project_id} if project_id else {}
        reader = self.con.cursor()
        try:
            batches = reader.sql(
                "SELECT r.* FROM raw_payloads r JOIN _underived u USING (project_id, source, payload_sha256) "
                f"{where} ORDER BY r.load_id, r.fetched_at", params=params,
            ).to_arrow_reader(DEFAULT_BATCH_RECORDS)
            for rb in batches:
                report.add(self._derive_raw_rows(pa.Table.from_batches([rb])))
        finally:
            reader.close()
        if export:
            self.export()
        return report

    def _derive_raw_rows(self, table: pa.Table) -> LoadReport:
        report = LoadReport()
        for load_id in dict.fromkeys(table.column("load_id").to_pylist()):
            part = table.filter(pa.compute.equal(table.column("load_id"), load_id))
            report.add(self._derive(_records_from_raw(part), load_id, part.column("payload_sha256").to_pylist()))
        return report

    def _land_chunk(self, chunk: list[RawRecord], load_id: str, derive: bool) -> LoadReport:
        for record in chunk:
            validate_project_id(record.project_id)
        fresh, shas = self._land_raw(chunk, load_id)
        report = self._derive(fresh, load_id, shas) if derive else LoadReport(projects={r.project_id for r in fresh})
        report.duplicates = len(chunk) - len(fresh)
        report.landed = len(fresh)
        return report

    def _land_raw(self, chunk: list[RawRecord], load_id: str) -> tuple[list[RawRecord], list[str]]:
        """Commit the raw bodies that are not stored yet; return their records."""
        raw = _raw_table(chunk, load_id)
        con = self.con
        con.register("batch_raw", raw)
        try:
            con.execute("BEGIN")
            new_idx = con.execute(
                """
                SELECT b.idx FROM (SELECT row_number() OVER () - 1 AS idx, project_id, source, payload_sha256
                                   FROM batch_raw) b
                WHERE NOT EXISTS (SELECT 1 FROM raw_payloads r WHERE r.project_id = b.project_id
                                  AND r.source = b.source AND r.payload_sha256 = b.payload_sha256)
                QUALIFY row_number() OVER (PARTITION BY b.project_id, b.source, b.payload_sha256 ORDER BY b.idx) = 1
                ORDER BY b.idx
                """
            ).fetchall()
            keep = [i for (i,) in new_idx]
            if keep:
                con.register("new_raw", raw.take(keep))
                con.execute("INSERT INTO raw_payloads BY NAME SELECT * FROM new_raw")
                con.execute("INSERT INTO _underived SELECT project_id, source, payload_sha256 FROM new_raw")
                con.execute("INSERT INTO _dirty SELECT DISTINCT 'raw_payloads', project_id, ? FROM new_raw", [load_id])
                con.unregister("new_raw")
            failpoints.hit("raw_before_commit")
            con.execute("COMMIT")
        except BaseException:
            _rollback(con)
            raise
        finally:
            con.unregister("batch_raw")
        failpoints.hit("raw_committed")
        shas = raw.column("payload_sha256").to_pylist()
        return [chunk[i] for i in keep], [shas[i] for i in keep]

    def _derive(self, records: list[RawRecord], load_id: str, shas: list[str] | None = None) -> LoadReport:
        """Flatten records whose raw rows are stored and upsert every tidy table in one transaction."""
        batch = flatten(records, redact=self.redact, shas=shas)
        report = LoadReport(
            versions_loaded=batch.versions_loaded,
            rejected=batch.rejected.num_rows,
            field_issues=batch.tables["field_issues"].num_rows,
            projects={r.project_id for r in records},
        )
        con = self.con
        try:
            con.execute("BEGIN")
            self._upsert_versions(batch)
            self._insert_rejected(batch, load_id)
            con.register("derived", batch.raw_keys)
            con.execute("DELETE FROM _underived u USING derived d WHERE u.project_id = d.project_id "
                        "AND u.source = d.source AND u.payload_sha256 = d.payload_sha256")
            con.execute("INSERT INTO _dirty SELECT DISTINCT 'raw_payloads', r.project_id, r.load_id "
                        "FROM raw_payloads r JOIN derived d USING (project_id, source, payload_sha256) "
                        "WHERE r.job_id IS DISTINCT FROM d.job_id OR r.version_id IS DISTINCT FROM d.version_id")
            con.execute("UPDATE raw_payloads r SET job_id = d.job_id, version_id = d.version_id FROM derived d "
                        "WHERE r.project_id = d.project_id AND r.source = d.source "
                        "AND r.payload_sha256 = d.payload_sha256 AND (r.job_id IS DISTINCT FROM d.job_id "
                        "OR r.version_id IS DISTINCT FROM d.version_id)")
            con.unregister("derived")
            failpoints.hit("derive_before_commit")
            con.execute("COMMIT")
        except BaseException:
            _rollback(con)
            raise
        failpoints.hit("derive_committed")
        return report

    def _upsert_versions(self, batch: FlatBatch) -> None:
        if batch.keys.num_rows == 0:
            return
        con = self.con
        con.register("batch_keys", batch.keys)
        existing = con.execute(
            "SELECT count(*) FROM job_versions v JOIN batch_keys k USING (project_id, job_id, version_id)"
        ).fetchall()[0][0]
        for table in schema.TIDY_TABLES:
            if existing:
                con.execute(f'DELETE FROM "{table.name}" t USING batch_keys k WHERE t.project_id = k.project_id '
                            "AND t.job_id = k.job_id AND t.version_id = k.version_id")
            data = batch.tables[table.name]
            if data.num_rows:
                con.register("batch_rows", data)
                con.execute(f'INSERT INTO "{table.name}" BY NAME SELECT * FROM batch_rows')
                con.unregister("batch_rows")
        self._refresh_jobs()
        con.execute(
            "INSERT INTO _dirty SELECT DISTINCT t.name, k.project_id, NULL FROM batch_keys k, "
            "(SELECT unnest(?::VARCHAR[]) AS name) t",
            [[t.name for t in schema.TIDY_TABLES] + ["jobs"]],
        )
        con.unregister("batch_keys")

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
        try:
            con.execute("BEGIN")
            for table in schema.TIDY_TABLES + (schema.JOBS, schema.REJECTED_PAYLOADS):
                con.execute(f'DELETE FROM "{table.name}"')
            con.execute("DELETE FROM _underived")
            con.execute("INSERT INTO _underived SELECT project_id, source, payload_sha256 FROM raw_payloads")
            con.execute("INSERT INTO _dirty SELECT DISTINCT t.name, r.project_id, NULL FROM "
                        "(SELECT DISTINCT project_id FROM raw_payloads) r, (SELECT unnest(?::VARCHAR[]) AS name) t",
                        [[t.name for t in schema.TIDY_TABLES] + ["jobs"]])
            con.execute("COMMIT")
        except BaseException:
            _rollback(con)
            raise
        report = self.derive_pending(export=False)
        report.load_id = "rebuild"
        self.export(full=True)
        return report

    # -- Parquet export ----------------------------------------------------------
    def export(self, full: bool = False) -> None:
        """Write every dirty partition to Parquet (temp file + rename), then forget it."""
        con = self.con
        dirty = con.execute("SELECT DISTINCT table_name, project_id, load_id FROM _dirty").fetchall()
        if full:
            for name in APPEND_TABLES:
                for (project,) in con.execute(f'SELECT DISTINCT project_id FROM "{name}"').fetchall():
                    _clear_dir(self.root / PARQUET_DIR / name / project)
                dirty += [(name, p, lid) for p, lid in con.execute(
                    f'SELECT DISTINCT project_id, load_id FROM "{name}"').fetchall()]
        for table_name, project_id, load_id in sorted(set(dirty), key=lambda d: (d[0], d[1], d[2] or "")):
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
        folder.mkdir(parents=True, exist_ok=True)
        name = f"load-{load_id}.parquet" if load_id else "data.parquet"
        target = folder / name
        tmp = folder / f".{name}.tmp"
        where = "project_id = ?" + (" AND load_id = ?" if load_id else "")
        params = [project_id] + ([load_id] if load_id else [])
        self.con.execute(
            f"COPY (SELECT * FROM \"{table_name}\" WHERE {where}) TO '{_sql_path(tmp)}' "
            "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 262144)",
            params,
        )
        failpoints.hit("export_tmp_written")
        os.replace(tmp, target)
        failpoints.hit("export_partition_done")


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

    cols = {name: [] for name in schema.RAW_PAYLOADS.column_names}
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
        cols["payload"].append(r.body)
        cols["load_id"].append(load_id)
    return pa.Table.from_pydict(cols, schema=schema.RAW_PAYLOADS.schema)


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


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass


def _clear_dir(folder: Path) -> None:
    if folder.is_dir():
        for f in folder.glob("*.parquet"):
            f.unlink()


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def connect_writer(root: Path, *, memory_limit: str = "512MB", threads: int = 2) -> duckdb.DuckDBPyConnection:
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

