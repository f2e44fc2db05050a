"""The views across both API generations: one row per run, a v1 job version or a v2 job.

`runs`, `run_parameters`, `run_metric_series` and `run_metric_samples` are UNION ALL views
over the v1 and v2 tables, with `api_version` and `run_id`, so that the analysis views
(analysis.py) read every run in one place. Each doc says what has no counterpart on the other side.
"""
from __future__ import annotations

import pyarrow as pa

from warehouse.schema import Table
from warehouse.schema_v2 import B, F64, I32, I64, S, UTC_TS, computed

V1_RUN_ID_SQL = "CAST(job_id AS VARCHAR) || '/' || CAST(version_id AS VARCHAR)"
RUN_KEY_COLUMNS = (
    computed("project_id", S, "ModelArts project"),
    computed("api_version", S, "v1 (a version of an old-version job) or v2 (a new-version job)"),
    computed("run_id", S, "v1: '<job_id>/<version_id>'; v2: the training job UUID"),
    computed("job_id", I64, "v1 job id (NULL for v2)"),
    computed("version_id", I64, "v1 version id (NULL for v2: a v2 job has no versions)"),
    computed("training_job_id", S, "v2 job UUID (NULL for v1)"),
)
RUN_KEY = ("project_id", "api_version", "run_id")

RUNS = Table(
    "runs",
    "One row per run across both API generations: a v1 job version or a v2 job. Without a counterpart: v1's "
    "version_name, pre_version_id, dataset fields and class metrics; v2's secondary_phase, workspace, tasks, "
    "running records and events (see their own tables). status is v1's status_name or v2's phase.",
    RUN_KEY_COLUMNS + (
        computed("name", S, "v1 job_name; v2 metadata.name"),
        computed("status", S, "v1 status_name (e.g. COMPLETED); v2 phase (e.g. Completed)"),
        computed("is_final", B, "The status never changes again"),
        computed("create_time", UTC_TS, "Creation time, UTC"),
        computed("start_time", UTC_TS, "Start time, UTC"),
        computed("duration_ms", I64, "Running duration in milliseconds"),
        computed("engine_name", S, "Engine name"),
        computed("engine_version", S, "Engine version"),
        computed("flavor", S, "v1 spec_code; v2 flavor_id"),
        computed("node_count", I32, "v1 worker_server_num; v2 spec.resource.node_count"),
        computed("gpu_count", I32, "GPUs per node: v1 gpu_num; v2 flavor_gpu_unit_num"),
        computed("command", S, "v1 user_command; v2 algorithm.command (secrets redacted)"),
        computed("payload_sha256", S, "The raw detail body the row came from"),
        computed("version_name", S, "v1 version name (NULL for v2)"),
        computed("status_code", I32, "v1 status code (NULL for v2, whose phase is a name)"),
        computed("pool_name", S, "v1 pool_name; v2 spec.resource.pool_id"),
        computed("gpu_type", S, "v1 gpu_type; v2 the flavor's GPU product name"),
        computed("metric_interval", S, "v1 system_metric_interval as sent; NULL for v2 (documented: one sample "
                                       "a minute)"),
        computed("total_accuracy", F64, "v1 total accuracy (NULL for v2: its API reports no model metrics)"),
        computed("total_precision", F64, "v1 total precision (NULL for v2)"),
        computed("total_recall", F64, "v1 total recall (NULL for v2)"),
    ),
    RUN_KEY,
    version_scoped=False,
    view_sql=f"""SELECT project_id, 'v1' AS api_version, {V1_RUN_ID_SQL} AS run_id, job_id, version_id,
       CAST(NULL AS VARCHAR) AS training_job_id, job_name AS name,
       status_name AS status, is_final, create_time, start_time, duration_ms, engine_name, engine_version,
       spec_code AS flavor, worker_server_num AS node_count, gpu_num AS gpu_count, user_command AS command,
       payload_sha256, version_name, status AS status_code, pool_name, gpu_type,
       system_metric_interval AS metric_interval, total_accuracy, total_precision, total_recall
FROM job_versions
UNION ALL BY NAME
SELECT project_id, 'v2' AS api_version, training_job_id AS run_id, CAST(NULL AS BIGINT) AS job_id,
       CAST(NULL AS BIGINT) AS version_id, training_job_id, name, phase AS status, is_final, create_time,
       start_time, duration_ms, engine_name, engine_version, flavor_id AS flavor, node_count,
       flavor_gpu_unit_num AS gpu_count, command, payload_sha256, pool_id AS pool_name,
       flavor_gpu_product_name AS gpu_type
FROM v2_jobs""",
)

RUN_PARAMETERS = Table(
    "run_parameters",
    "Parameters of every run of both generations: v1 `parameter[]` (label) and v2 `algorithm.parameters[]` "
    "(name). v2's description and constraint have no v1 counterpart (see v2_parameters).",
    RUN_KEY_COLUMNS + (
        computed("position", I32, "0-based position in the payload's list"),
        computed("name", S, "v1 label; v2 name"),
        computed("value", S, "Value as text (secrets redacted)"),
        computed("value_number", F64, "The value as a number, where it is numeric"),
    ),
    RUN_KEY + ("position",),
    version_scoped=False,
    view_sql=f"""SELECT project_id, 'v1' AS api_version, {V1_RUN_ID_SQL} AS run_id, job_id, version_id,
       CAST(NULL AS VARCHAR) AS training_job_id, position, label AS name, value,
       value_number
FROM parameters
UNION ALL BY NAME
SELECT project_id, 'v2' AS api_version, training_job_id AS run_id, CAST(NULL AS BIGINT) AS job_id,
       CAST(NULL AS BIGINT) AS version_id, training_job_id, position, name, value, value_number
FROM v2_parameters""",
)

RUN_METRIC_SERIES = Table(
    "run_metric_series",
    "System metric series of every run, one row per array: v1 `system_metric_list` (task NULL) and v2 metrics per "
    "task, with v2's -1 ('no data') as NULL. The analysis views read this (a list per array is cheaper than a row "
    "per sample); run_metric_samples has the rows.",
    RUN_KEY_COLUMNS + (
        computed("task", S, "v2 task (worker-0, ...); NULL for v1"),
        computed("metric", S, "Metric name as in the API"),
        computed("samples", pa.list_(F64), "The samples in order (v2: -1 as NULL)"),
    ),
    RUN_KEY + ("task", "metric"),
    version_scoped=False,
    view_sql=f"""SELECT project_id, 'v1' AS api_version, {V1_RUN_ID_SQL} AS run_id, job_id, version_id,
       CAST(NULL AS VARCHAR) AS training_job_id, CAST(NULL AS VARCHAR) AS task, metric, samples
FROM system_metric_series
UNION ALL BY NAME
SELECT project_id, 'v2' AS api_version, training_job_id AS run_id, CAST(NULL AS BIGINT) AS job_id,
       CAST(NULL AS BIGINT) AS version_id, training_job_id, task, metric,
       list_transform(samples, lambda x: CASE WHEN x = -1 THEN NULL ELSE x END) AS samples
FROM v2_metric_series""",
)

RUN_METRIC_SAMPLES = Table(
    "run_metric_samples",
    "System metric samples of every run: v1 `system_metric_list` (one series per version, task NULL) and v2 "
    "metrics per task (-1 'no data' as NULL with no_data true). v1 samples have no task; v2 samples no interval "
    "other than the documented minute.",
    RUN_KEY_COLUMNS + (
        computed("task", S, "v2 task (worker-0, ...); NULL for v1"),
        computed("metric", S, "Metric name as in the API"),
        computed("sample_index", I32, "0-based index in the series"),
        computed("value", F64, "The sample"),
        computed("no_data", B, "v2: the API sent -1; v1: false"),
    ),
    RUN_KEY + ("task", "metric", "sample_index"),
    version_scoped=False,
    view_sql=f"""SELECT project_id, 'v1' AS api_version, {V1_RUN_ID_SQL} AS run_id, job_id, version_id,
       CAST(NULL AS VARCHAR) AS training_job_id, CAST(NULL AS VARCHAR) AS task,
       metric, sample_index, value, false AS no_data
FROM system_metric_samples
UNION ALL BY NAME
SELECT project_id, 'v2' AS api_version, training_job_id AS run_id, CAST(NULL AS BIGINT) AS job_id,
       CAST(NULL AS BIGINT) AS version_id, training_job_id, task, metric, sample_index, value, no_data
FROM v2_metric_samples""",
)

VIEWS: tuple[Table, ...] = (RUNS, RUN_PARAMETERS, RUN_METRIC_SERIES, RUN_METRIC_SAMPLES)
