"""Every table and view of the warehouse, defined once.

The Arrow schemas below drive the flattener's column builders, the DuckLake DDL (with
each table's and column's doc as its catalog comment), the exports, docs/tables.md and
the tests. Change a table here and nowhere else.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

UTC_TS = pa.timestamp("us", tz="UTC")
DATE = pa.date32()

_DUCKDB_TYPES = {
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
    pa.binary(): "BLOB",
    UTC_TS: "TIMESTAMPTZ",
    DATE: "DATE",
    pa.list_(pa.float64()): "DOUBLE[]",
    pa.list_(pa.string()): "VARCHAR[]",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    doc: str

    @property
    def duckdb_type(self) -> str:
        return _DUCKDB_TYPES[self.type]


@dataclass(frozen=True)
class Table:
    name: str
    doc: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    # Rows are replaced per payload version: loading a version again drops every row
    # of it first. Tables without a version scope are keyed differently (see store.py).
    version_scoped: bool = True
    # Set when the lake serves this table as a view over stored tables (same columns), not as rows of its own.
    view_sql: str | None = None

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type) for c in self.columns])

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def is_view(self) -> bool:
        return self.view_sql is not None

    def ddl(self, name: str | None = None) -> str:
        """CREATE TABLE (or VIEW); `name` may be qualified, e.g. 'modelarts."jobs"'."""
        name = name or f'"{self.name}"'
        if self.view_sql:
            return f"CREATE VIEW IF NOT EXISTS {name} AS {self.view_sql}"
        cols = ",\n  ".join(f'"{c.name}" {c.duckdb_type}' for c in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {name} (\n  {cols}\n)"

    def comments(self, name: str | None = None) -> list[str]:
        """The docs as catalog comments, so `duckdb_tables()` and `duckdb_columns()` explain themselves."""
        name = name or f'"{self.name}"'
        out = [f"COMMENT ON TABLE {name} IS {_sql_text(self.doc)}"]
        out += [f'COMMENT ON COLUMN {name}."{c.name}" IS {_sql_text(c.doc)}' for c in self.columns]
        return out


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _c(name: str, type_: pa.DataType, doc: str) -> Column:
    return Column(name, type_, doc)


S, I64, I32, F64, B = pa.string(), pa.int64(), pa.int32(), pa.float64(), pa.bool_()

KEY_COLUMNS = (
    _c("project_id", S, "ModelArts project the version was fetched from (not in the payload itself)"),
    _c("job_id", I64, "Training job id"),
    _c("version_id", I64, "Training job version id"),
)
VERSION_KEY = ("project_id", "job_id", "version_id")


def _child(name: str, doc: str, cols: list[Column], key_extra: tuple[str, ...], **options) -> Table:
    return Table(name, doc, KEY_COLUMNS + tuple(cols), VERSION_KEY + key_extra, **options)


JOB_VERSIONS = Table(
    "job_versions",
    "One row per training-job version: every scalar field of the version-detail payload, typed.",
    KEY_COLUMNS
    + (
        _c("job_name", S, "Name of the training job"),
        _c("job_desc", S, "Description of the training job"),
        _c("version_name", S, "Version name"),
        _c("pre_version_id", I64, "Id of the previous version"),
        _c("engine_type", I32, "Engine type code (13 = Ascend-Powered-Engine, 10 = PyTorch, ...)"),
        _c("engine_name", S, "Engine name"),
        _c("engine_id", I64, "Engine id"),
        _c("engine_version", S, "Engine version, e.g. TensorFlow-1.15.0"),
        _c("status", I32, "Job status code (see status_name)"),
        _c("status_name", S, "Status name from the Job Statuses table, e.g. COMPLETED"),
        _c("is_final", B, "True when the status never changes again (not fetched again)"),
        _c("app_url", S, "Code directory"),
        _c("boot_file_url", S, "Boot file"),
        _c("create_time", UTC_TS, "Creation time (from epoch ms), UTC"),
        _c("start_time", UTC_TS, "Training start time (from epoch ms), UTC"),
        _c("duration_ms", I64, "Running duration in milliseconds (payload field `duration`)"),
        _c("spec_id", I64, "Resource specification id"),
        _c("core", S, "Cores of the specification (documented String; integers are kept as text)"),
        _c("cpu", S, "CPU memory of the specification (documented String)"),
        _c("gpu_num", I32, "Number of GPUs"),
        _c("gpu_type", S, "GPU type"),
        _c("gpu", B, "GPU flag (some API editions only)"),
        _c("worker_server_num", I32, "Number of workers"),
        _c("data_url", S, "Dataset path"),
        _c("train_url", S, "OBS path of the output"),
        _c("log_url", S, "OBS path of the logs"),
        _c("dataset_version_id", S, "Dataset version id"),
        _c("dataset_id", S, "Dataset id"),
        _c("model_id", I64, "Model id"),
        _c("user_image_url", S, "SWR URL of the custom image"),
        _c("user_command", S, "Boot command of the custom image (secrets redacted, see README)"),
        _c("resource_id", S, "Charged resource id"),
        _c("dataset_name", S, "Dataset name"),
        _c("spec_code", S, "Resource specification code"),
        _c("dataset_version_name", S, "Dataset version name"),
        _c("pool_name", S, "Resource pool name"),
        _c("pool_id", S, "Resource pool id"),
        _c("nas_mount_path", S, "SFS Turbo local mount path"),
        _c("nas_share_addr", S, "SFS Turbo shared path"),
        _c("nas_type", S, "NAS type (nfs)"),
        _c("system_metric_interval", S, "`system_metric_list.interval`, the sampling interval, as sent"),
        _c("total_recall", F64, "model_metric_list.total_metric.total_metric_values.recall"),
        _c("total_precision", F64, "model_metric_list.total_metric.total_metric_values.precision"),
        _c("total_accuracy", F64, "model_metric_list.total_metric.total_metric_values.accuracy"),
        _c("extracted_at", UTC_TS, "When the payload was fetched or read (lineage)"),
        _c("payload_sha256", S, "SHA-256 of the raw payload this row came from (joins raw_payloads)"),
        _c("deleted_upstream_at", UTC_TS, "When a sync's complete job list first lacked this version's job: the "
           "job was deleted upstream. The row stays, with the last status seen (a RUNNING version stays RUNNING), "
           "and is not fetched again; NULL while the job exists, cleared if it is listed again"),
    ),
    VERSION_KEY,
)

JOBS = Table(
    "jobs",
    "One row per training job, summarised from its stored versions (latest = highest create_time, ties by "
    "version_id). A view over job_versions, so it can never disagree with it.",
    KEY_COLUMNS[:2]
    + (
        _c("job_name", S, "Job name, from the latest version"),
        _c("job_desc", S, "Job description, from the latest version"),
        _c("latest_version_id", I64, "Id of the latest stored version"),
        _c("latest_status", I32, "Status code of the latest version"),
        _c("latest_status_name", S, "Status name of the latest version"),
        _c("latest_is_final", B, "Whether the latest version's status is final"),
        _c("version_count", I64, "Number of versions stored"),
        _c("first_create_time", UTC_TS, "Earliest create_time over stored versions"),
        _c("last_create_time", UTC_TS, "Latest create_time over stored versions"),
        _c("deleted_upstream_at", UTC_TS, "When the job was found deleted upstream (see job_versions); NULL while "
           "it exists"),
    ),
    ("project_id", "job_id"),
    version_scoped=False,
    view_sql="""SELECT project_id, job_id,
       max_by(job_name, ord) AS job_name, max_by(job_desc, ord) AS job_desc,
       max_by(version_id, ord) AS latest_version_id, max_by(status, ord) AS latest_status,
       max_by(status_name, ord) AS latest_status_name, max_by(is_final, ord) AS latest_is_final,
       count(*) AS version_count,
       min(create_time) AS first_create_time, max(create_time) AS last_create_time,
       max(deleted_upstream_at) AS deleted_upstream_at
FROM (SELECT *, row_number() OVER (PARTITION BY project_id, job_id
             ORDER BY create_time ASC NULLS FIRST, version_id ASC) AS ord
      FROM job_versions)
GROUP BY project_id, job_id""",
)

PARAMETERS = _child(
    "parameters",
    "Running parameters of a version (`parameter[]`), in payload order.",
    [
        _c("position", I32, "0-based position in the payload's list"),
        _c("label", S, "Parameter name"),
        _c("value", S, "Value as text; a JSON number keeps its text (0.01 -> '0.01'); secrets redacted"),
        _c("value_number", F64, "The value as a number, where it is numeric"),
    ],
    ("position",),
)

DATA_SOURCES = _child(
    "data_sources",
    "Datasets of a version (`data_source[]`), in payload order.",
    [
        _c("position", I32, "0-based position in the payload's list"),
        _c("type", S, "Dataset type, e.g. obs"),
        _c("dataset_id", S, "Dataset id"),
        _c("dataset_version", S, "Dataset version id"),
        _c("data_url", S, "OBS bucket path"),
    ],
    ("position",),
)

CLASS_METRICS = _child(
    "class_metrics",
    "Per-class validation metrics, parsed out of the JSON string `model_metric_list`.",
    [
        _c("position", I32, "0-based position in `metric[]`"),
        _c("class_id", I64, "metric_meta.class_id"),
        _c("class_name", S, "metric_meta.class_name (the docs' sample sends an integer: kept as text)"),
        _c("recall", F64, "metric_values.recall"),
        _c("precision", F64, "metric_values.precision"),
        _c("accuracy", F64, "metric_values.accuracy"),
    ],
    ("position",),
)

SYSTEM_METRIC_SERIES = _child(
    "system_metric_series",
    "How the lake stores `system_metric_samples`: one row per metric array, its samples as a list. "
    "Writing and scanning a list per array costs a tenth of 11 million rows.",
    [
        _c("metric", S, "Array name as in the API: cpuUsage, memUsage, gpuUtil, gpuMemUsage, ..."),
        _c("samples", pa.list_(F64), "The array's values in order (NULL where a value was not a number)"),
    ],
    ("metric",),
)

SYSTEM_METRIC_SAMPLES = _child(
    "system_metric_samples",
    "System monitoring samples (`system_metric_list`), one row per array element. "
    "A view that unnests `system_metric_series`.",
    [
        _c("metric", S, "Array name as in the API: cpuUsage, memUsage, gpuUtil, gpuMemUsage, ..."),
        _c("sample_index", I32, "0-based index in the array"),
        _c("value", F64, "Sample value, converted from the API's numeric string"),
    ],
    ("metric", "sample_index"),
    view_sql="SELECT project_id, job_id, version_id, metric, CAST(unnest(range(len(samples))) AS INTEGER) "
                "AS sample_index, unnest(samples) AS value FROM system_metric_series",
)

VOLUMES = _child(
    "volumes",
    "Storage volumes of a version (`volumes[]`), in payload order.",
    [
        _c("position", I32, "0-based position in the payload's list"),
        _c("volume_type", S, "nfs or host_path"),
        _c("nfs_id", S, "SFS Turbo file system id (nfs only)"),
        _c("src_path", S, "Source path"),
        _c("dest_path", S, "Path inside the training job"),
        _c("read_only", B, "Whether dest_path is read-only (default false, as documented)"),
    ],
    ("position",),
)

_NULLABLE_KEY = (
    _c("project_id", S, "Project the payload belongs to"),
    _c("job_id", I64, "Job id where known (NULL when neither payload nor URL said)"),
    _c("version_id", I64, "Version id where known"),
)

_RAW_KEY = (
    _c("project_id", S, "Project the payload belongs to"),
    _c("job_id", I64, "Job id of the request (from its URL); for files, the payload's own; NULL when unknown"),
    _c("version_id", I64, "Version id of the request (from its URL); for files, the payload's own"),
)

RAW_PAYLOADS = Table(
    "raw_payloads",
    "Every body fetched or read, byte for byte: the system of record the tidy tables are rebuilt from. "
    "Each batch's bodies commit as their own snapshot before anything derived from them.",
    _RAW_KEY
    + (
        _c("kind", S, "version_detail, job_list or version_list (v1); v2_job_search, v2_job_detail, v2_metrics or "
                      "v2_events (v2)"),
        _c("source", S, "URL (no credentials) or file path (with :line for JSONL)"),
        _c("fetched_at", UTC_TS, "When it was received"),
        _c("http_status", I32, "HTTP status of the response (NULL for files)"),
        _c("payload_sha256", S, "SHA-256 of the bytes"),
        _c("byte_size", I64, "Length of the bytes"),
        _c("payload", pa.binary(), "The bytes exactly as received"),
        _c("load_id", S, "The load (one ingest or sync) that landed it"),
        _c("training_job_id", S, "v2 bodies: the training job UUID of the request (job_id and version_id are NULL)"),
    ),
    ("project_id", "source", "payload_sha256"),
    version_scoped=False,
)

REJECTED_PAYLOADS = Table(
    "rejected_payloads",
    "Payloads that could not become a version row, with the reason.",
    _NULLABLE_KEY
    + (
        _c("source", S, "Where the payload came from"),
        _c("payload_sha256", S, "SHA-256 of the bytes (joins raw_payloads)"),
        _c("stage", S, "fetch (HTTP error), decode (bytes -> JSON) or validate (JSON -> version)"),
        _c("error_kind", S, "http_error, invalid_json, not_an_object, api_error, missing_key, ..."),
        _c("error_message", S, "What was wrong, in one line"),
        _c("rejected_at", UTC_TS, "When the payload was fetched or read"),
        _c("load_id", S, "The load that landed the payload (new rejections of a run share it)"),
    ),
    ("project_id", "source", "payload_sha256"),
    version_scoped=False,
)

FIELD_ISSUES = _child(
    "field_issues",
    "One row per field that could not be typed as the contract says, or that the contract does not know.",
    [
        _c("table_name", S, "Tidy table the field belongs to"),
        _c("field", S, "Path in the payload, e.g. gpu_num, system_metric_list.cpuUsage[3]"),
        _c("raw_value", S, "The value as JSON text (truncated to 1,000 characters)"),
        _c("problem", S, "wrong_type, not_a_number, invalid_json, unknown_field, key_mismatch, ..."),
    ],
    ("table_name", "field"),
)

LOADS = Table(
    "loads",
    "The load ledger, like dlt's `_dlt_loads`: one row per snapshot this package committed, from DuckLake's "
    "snapshot list (its commit message and extra info). Query any table as of one with `connect(snapshot=...)`.",
    (
        _c("snapshot_id", I64, "DuckLake snapshot id (time travel: `connect(snapshot=...)` or `AT (VERSION => id)`)"),
        _c("snapshot_time", UTC_TS, "When the snapshot was committed"),
        _c("step", S, "raw (bodies landed), derive (tidy rows), rebuild, migrate, maintenance or schema"),
        _c("load_id", S, "The load (one ingest, sync or rebuild) the snapshot belongs to"),
        _c("source", S, "What ran it: ingest, sync, dagster, rebuild, migrate, ..."),
        _c("projects", S, "Projects touched, comma-separated"),
        _c("landed", I64, "Raw bodies newly stored"),
        _c("versions_loaded", I64, "Versions whose tidy rows were (re)written"),
        _c("rejected", I64, "Payloads newly rejected"),
        _c("field_issues", I64, "Field issues written"),
        _c("raw_through", I64, "Every raw_payloads row up to this rowid is derived (what derive_pending resumes "
                               "from), for the projects in `scope`"),
        _c("scope", pa.list_(S), "The projects the writer owned (parallel writers on a shared catalog); "
                                 "NULL: the whole warehouse"),
    ),
    ("snapshot_id",),
    version_scoped=False,
    view_sql="""SELECT snapshot_id, snapshot_time,
       json_extract_string(commit_extra_info, '$.step') AS step,
       json_extract_string(commit_extra_info, '$.load_id') AS load_id,
       json_extract_string(commit_extra_info, '$.source') AS source,
       json_extract_string(commit_extra_info, '$.projects') AS projects,
       CAST(json_extract(commit_extra_info, '$.landed') AS BIGINT) AS landed,
       CAST(json_extract(commit_extra_info, '$.versions_loaded') AS BIGINT) AS versions_loaded,
       CAST(json_extract(commit_extra_info, '$.rejected') AS BIGINT) AS rejected,
       CAST(json_extract(commit_extra_info, '$.field_issues') AS BIGINT) AS field_issues,
       CAST(json_extract(commit_extra_info, '$.raw_through') AS BIGINT) AS raw_through,
       CAST(json_extract(commit_extra_info, '$.scope') AS VARCHAR[]) AS scope
FROM ducklake_snapshots('modelarts')
WHERE author = 'modelarts-etl'""",
)

TIDY_TABLES: tuple[Table, ...] = (
    JOB_VERSIONS, PARAMETERS, DATA_SOURCES, CLASS_METRICS, SYSTEM_METRIC_SAMPLES, VOLUMES, FIELD_ISSUES,
)
"""Tables written per payload version (all replaced together when a version is loaded again)."""

V1_TABLES: tuple[Table, ...] = (
    JOB_VERSIONS, JOBS, PARAMETERS, DATA_SOURCES, CLASS_METRICS, SYSTEM_METRIC_SAMPLES, VOLUMES,
    RAW_PAYLOADS, REJECTED_PAYLOADS, FIELD_ISSUES,
)
"""The tables of the v1 API, and the shared raw and rejected tables."""

from warehouse import schema_runs, schema_v2  # noqa: E402  (built from Column and Table above)

ALL_TABLES: tuple[Table, ...] = V1_TABLES + schema_v2.ALL + schema_runs.VIEWS
TABLES: dict[str, Table] = {t.name: t for t in ALL_TABLES}

STORED_TIDY_TABLES: tuple[Table, ...] = tuple(SYSTEM_METRIC_SERIES if t is SYSTEM_METRIC_SAMPLES else t
                                              for t in TIDY_TABLES)
"""What the lake stores per version: the tidy tables, with the samples as series."""

STORED_TABLES: tuple[Table, ...] = (RAW_PAYLOADS,) + STORED_TIDY_TABLES + (REJECTED_PAYLOADS,) + schema_v2.STORED
"""Every table with rows of its own in the lake (the others are views over them)."""

VIEWS: tuple[Table, ...] = tuple(t for t in V1_TABLES if t.is_view) + schema_v2.VIEWS + schema_runs.VIEWS + (LOADS,)
"""Views in the lake, created after the tables they read."""
