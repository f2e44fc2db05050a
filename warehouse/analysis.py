"""The analysis views: answers to the questions users ask, defined once like the contract tables.

They are plain SQL views over the views across both API generations (schema_runs.py: `runs`,
`run_parameters`, `run_metric_series`), so a v2 job is one run beside the v1 versions, with
`api_version` and `run_id`; created in the lake by the writer's DDL
(`lake.create_tables`), documented in docs/tables.md and docs/analysis.md. A view costs
nothing at ingest and always agrees with the tables it reads, at every snapshot.

`parameters_wide` is not here: its columns are the parameter labels found in the data, and
a view's columns are fixed when it is created. `warehouse.dataset` pivots it on demand.
"""
from __future__ import annotations

from warehouse.schema import DATE, F64, I32, I64, S, UTC_TS, B, Column, Table
from warehouse.schema_runs import RUN_KEY, RUN_KEY_COLUMNS, V1_RUN_ID_SQL
from warehouse.statuses import PHASE_CATEGORIES, STATUS_CATEGORIES

LOW_UTIL_PERCENT = 20  # a GPU sample below this utilisation counts as under-used
DEFAULT_INTERVAL_MINUTES = 1  # assumed when a payload sends no `interval` (the docs' own example)

# metric array -> column prefix in version_summary; every other array is in metric_stats
SUMMARY_METRICS = {"cpuUsage": "cpu", "memUsage": "mem", "gpuUtil": "gpu_util", "gpuMemUsage": "gpu_mem"}
STATS = (("samples", I64, "number of samples in the array (NULL values included)"),
         ("avg", F64, "mean of the values"), ("p50", F64, "median (continuous quantile)"),
         ("p95", F64, "95th percentile (continuous quantile)"), ("max", F64, "largest value"))
BEST_METRICS = ("total_accuracy", "total_precision", "total_recall")


def _c(name, type_, doc) -> Column:
    return Column(name, type_, doc)


def _status_category_sql() -> str:
    """Over `runs`: v1 by status code, v2 by phase (statuses.py)."""
    v1 = " ".join(f"WHEN api_version = 'v1' AND status_code IN ({', '.join(map(str, sorted(codes)))}) THEN '{name}'"
                  for name, codes in STATUS_CATEGORIES.items())
    v2 = " ".join(f"WHEN api_version = 'v2' AND status IN ({', '.join(map(repr, sorted(phases)))}) THEN '{name}'"
                  for name, phases in PHASE_CATEGORIES.items())
    return f"CASE {v1} {v2} ELSE 'other' END"


# v1's `system_metric_interval` as minutes; v2 sends none (documented: one sample a minute)
INTERVAL_MINUTES_SQL = f"coalesce(try_cast(metric_interval AS DOUBLE), {DEFAULT_INTERVAL_MINUTES})"
_SUCCEEDED_CODES = ", ".join(map(str, sorted(STATUS_CATEGORIES["succeeded"])))
_SUCCEEDED_PHASES = ", ".join(map(repr, sorted(PHASE_CATEGORIES["succeeded"])))
SUCCEEDED_SQL = (f"((api_version = 'v1' AND status_code IN ({_SUCCEEDED_CODES})) "
                 f"OR (api_version = 'v2' AND status IN ({_SUCCEEDED_PHASES})))")

_SERIES_STATS_SQL = """len(samples) AS samples, list_avg(samples) AS avg,
       list_aggregate(samples, 'quantile_cont', 0.5) AS p50, list_aggregate(samples, 'quantile_cont', 0.95) AS p95,
       list_max(samples) AS max"""


_SUMMARY_METRICS_SQL = ", ".join(f"'{m}'" for m in SUMMARY_METRICS)


def _metric_columns() -> tuple[Column, ...]:
    cols = []
    for metric, prefix in SUMMARY_METRICS.items():
        for stat, type_, doc in STATS:
            cols.append(_c(f"{prefix}_{stat}", type_, f"`{metric}`: {doc}" + (" (0 when absent)"
                                                                            if stat == "samples" else "")))
    return tuple(cols)


def _metric_select() -> str:
    parts = []
    for metric, prefix in SUMMARY_METRICS.items():
        for stat, _, _ in STATS:
            value = f"any_value({stat}) FILTER (WHERE metric = '{metric}')"
            parts.append(f"coalesce({value}, 0) AS {prefix}_{stat}" if stat == "samples"
                         else f"{value} AS {prefix}_{stat}")
    return ",\n       ".join(parts)


VERSION_SUMMARY = Table(
    "version_summary",
    "One row per run, the way MLflow's `runs_latest` is one row per run: a v1 version or a v2 job (api_version), "
    "with names, status and its category, times, resources, GPU-hours, count/avg/p50/p95/max of the cpu, memory, "
    "GPU-utilisation and GPU-memory samples (a v2 job's tasks together), the total metrics, and how many "
    "parameters and field issues it has.",
    RUN_KEY_COLUMNS + (
        _c("job_name", S, "Name of the training job (v2: metadata.name)"),
        _c("version_name", S, "Version name (NULL for v2: a v2 job has no versions)"),
        _c("status", I32, "v1 job status code (NULL for v2)"),
        _c("status_name", S, "v1 status name, e.g. COMPLETED; v2 phase, e.g. Completed"),
        _c("status_category", S, "succeeded (v1 10; v2 Completed), failed (v1 3, 5, 6, 11, 14, 16, 17, 21, 22; v2 "
                                  "Failed, Abnormal), stopped (v1 12, 13; v2 Terminated), running (in progress: v1 1, "
                                  "2, 4, 7, 8, 9, 15, 18, 19; v2 Creating, Pending, Running, Terminating) or other "
                                  "(v1 0, 20, unknown codes; unknown phases)"),
        _c("is_final", B, "True when the status never changes again"),
        _c("create_time", UTC_TS, "Creation time, UTC"),
        _c("start_time", UTC_TS, "Training start time, UTC (NULL if it never started)"),
        _c("end_time", UTC_TS, "start_time + duration: the end of a finished run; for a running one, "
                               "how far it had run when fetched"),
        _c("duration_ms", I64, "Running duration in milliseconds"),
        _c("duration_hours", F64, "duration_ms in hours"),
        _c("engine_name", S, "Engine name"),
        _c("spec_code", S, "Resource specification code (v2: flavor_id)"),
        _c("pool_name", S, "Resource pool name (v2: pool_id)"),
        _c("gpu_type", S, "GPU type (v2: the flavor's GPU product name)"),
        _c("gpu_num", I32, "GPUs per worker (v2: the flavor's GPU count)"),
        _c("worker_server_num", I32, "Number of workers (v2: node_count)"),
        _c("gpus", I64, "gpu_num x worker_server_num: GPUs the run held"),
        _c("gpu_hours", F64, "gpus x duration_hours (0 for a CPU-only run, NULL when gpu_num or duration is unknown)"),
        _c("gpu_hours_under_20", F64, "gpu_hours x the share of gpuUtil samples below 20 %: GPU time spent nearly "
                                      "idle (NULL without gpuUtil samples)"),
        _c("metric_interval_minutes", F64, "Sampling interval in minutes: v1 `system_metric_interval` read as minutes "
                                           "(1 when not sent; an assumption, see docs/analysis.md); v2 1 (documented)"),
    ) + _metric_columns() + (
        _c("total_accuracy", F64, "Total accuracy (model_metric_list; NULL for v2, which has none)"),
        _c("total_precision", F64, "Total precision"),
        _c("total_recall", F64, "Total recall"),
        _c("parameter_count", I64, "Running parameters of the run"),
        _c("field_issue_count", I64, "Field issues of the run (field_issues, v2_field_issues): fields that could not "
                                     "be typed"),
    ),
    RUN_KEY,
    version_scoped=False,
    view_sql=f"""WITH lists AS (
    SELECT project_id, api_version, run_id, metric, samples
    FROM run_metric_series WHERE task IS NULL AND metric IN ({_SUMMARY_METRICS_SQL})
    UNION ALL  -- a v2 job has a series per task: its tasks' samples together
    SELECT project_id, api_version, run_id, metric, flatten(list(samples ORDER BY task)) AS samples
    FROM run_metric_series WHERE task IS NOT NULL AND metric IN ({_SUMMARY_METRICS_SQL})
    GROUP BY project_id, api_version, run_id, metric
), series AS (
    SELECT project_id, api_version, run_id, metric, {_SERIES_STATS_SQL},
           CASE WHEN metric = 'gpuUtil' AND list_count(samples) > 0
                THEN list_count(list_filter(samples, lambda x: x < {LOW_UTIL_PERCENT})) / list_count(samples)
           END AS low_share
    FROM lists
), metrics AS (
    SELECT project_id, api_version, run_id,
       {_metric_select()},
       any_value(low_share) FILTER (WHERE metric = 'gpuUtil') AS gpu_low_share
    FROM series GROUP BY project_id, api_version, run_id
), params AS (
    SELECT project_id, api_version, run_id, count(*) AS n FROM run_parameters GROUP BY project_id, api_version, run_id
), issues AS (
    SELECT project_id, 'v1' AS api_version, {V1_RUN_ID_SQL} AS run_id, count(*) AS n FROM field_issues
    WHERE job_id IS NOT NULL AND version_id IS NOT NULL GROUP BY project_id, job_id, version_id
    UNION ALL
    SELECT project_id, 'v2' AS api_version, training_job_id AS run_id, count(*) AS n FROM v2_field_issues
    WHERE training_job_id IS NOT NULL GROUP BY project_id, training_job_id
), versions AS (
    SELECT *, CAST(gpu_count AS BIGINT) * CAST(node_count AS BIGINT) AS gpus,
           duration_ms / 3600000.0 AS duration_hours
    FROM runs
)
SELECT v.project_id, v.api_version, v.run_id, v.job_id, v.version_id, v.training_job_id, v.name AS job_name,
       v.version_name, v.status_code AS status, v.status AS status_name,
       {_status_category_sql()} AS status_category, v.is_final,
       v.create_time, v.start_time, v.start_time + to_milliseconds(v.duration_ms) AS end_time,
       v.duration_ms, v.duration_hours, v.engine_name, v.flavor AS spec_code, v.pool_name, v.gpu_type,
       v.gpu_count AS gpu_num, v.node_count AS worker_server_num, v.gpus, v.gpus * v.duration_hours AS gpu_hours,
       v.gpus * v.duration_hours * m.gpu_low_share AS gpu_hours_under_20,
       {INTERVAL_MINUTES_SQL} AS metric_interval_minutes,
       {', '.join(f'coalesce(m.{p}_samples, 0) AS {p}_samples' if s == 'samples' else f'm.{p}_{s}'
                  for p in SUMMARY_METRICS.values() for s, _, _ in STATS)},
       v.total_accuracy, v.total_precision, v.total_recall,
       coalesce(p.n, 0) AS parameter_count, coalesce(i.n, 0) AS field_issue_count
FROM versions v
LEFT JOIN metrics m USING (project_id, api_version, run_id)
LEFT JOIN params p USING (project_id, api_version, run_id)
LEFT JOIN issues i USING (project_id, api_version, run_id)""",
)

METRIC_STATS = Table(
    "metric_stats",
    "One row per run, task and metric array (every array, the rates and unknown ones too): count, avg, p50, p95, "
    "min, max and the last value, like the min/max/latest per metric of MLflow's `runs_latest`. v1 arrays have no "
    "task; v2's -1 ('no data') values are NULL here.",
    RUN_KEY_COLUMNS + (
        _c("task", S, "v2 task (worker-0, ...); NULL for v1"),
        _c("metric", S, "Array name as in the API: cpuUsage, memUsage, gpuUtil, gpuMemUsage, diskReadRate, ..."),
    ) + tuple(_c(stat, type_, doc[0].upper() + doc[1:]) for stat, type_, doc in STATS) + (
        _c("min", F64, "Smallest value"),
        _c("latest", F64, "The last value of the array"),
    ),
    RUN_KEY + ("task", "metric"),
    version_scoped=False,
    view_sql=f"""SELECT project_id, api_version, run_id, job_id, version_id, training_job_id, task, metric,
       {_SERIES_STATS_SQL}, list_min(samples) AS min, samples[-1] AS latest
FROM run_metric_series""",
)

METRIC_HISTORY = Table(
    "metric_history",
    "Every system metric sample with a time axis, like MLflow's `run_metrics_history`: sample i of a run "
    "is at start_time + i x interval. v1's interval is read as minutes (an assumption: see docs/analysis.md), the "
    "raw value kept beside it; v2 sends one sample a minute per task.",
    RUN_KEY_COLUMNS + (
        _c("task", S, "v2 task (worker-0, ...); NULL for v1"),
        _c("metric", S, "Array name as in the API"),
        _c("sample_index", I32, "0-based index in the array"),
        _c("sample_time", UTC_TS, "start_time + sample_index x interval_minutes (NULL when the run has no start)"),
        _c("value", F64, "Sample value (v2: NULL where the API sent -1, no data)"),
        _c("interval_raw", S, "v1 `system_metric_interval` exactly as sent (NULL when the payload has none, and "
                              "for v2)"),
        _c("interval_minutes", F64, "The interval used, in minutes: interval_raw as a number, else 1"),
    ),
    RUN_KEY + ("task", "metric", "sample_index"),
    version_scoped=False,
    view_sql=f"""SELECT s.project_id, s.api_version, s.run_id, s.job_id, s.version_id, s.training_job_id, s.task,
       s.metric, s.sample_index,
       v.start_time + to_microseconds(CAST(s.sample_index * v.interval_minutes * 60000000 AS BIGINT)) AS sample_time,
       s.value, v.metric_interval AS interval_raw, v.interval_minutes
FROM (SELECT project_id, api_version, run_id, job_id, version_id, training_job_id, task, metric,
             CAST(unnest(range(len(samples))) AS INTEGER) AS sample_index, unnest(samples) AS value
      FROM run_metric_series) s
JOIN (SELECT project_id, api_version, run_id, start_time, metric_interval, {INTERVAL_MINUTES_SQL} AS interval_minutes
      FROM runs) v USING (project_id, api_version, run_id)""",
)

JOB_PARTITION = "project_id, api_version, job_id, training_job_id"  # a v1 job, or a v2 job (its own only run)


def _best_sql() -> str:
    # v2 reports no model metrics: a succeeded v2 job competes alone, with value NULL
    finished = " UNION ALL\n    ".join(
        f"SELECT *, '{m}' AS metric, {m} AS value FROM finished WHERE {m} IS NOT NULL OR api_version = 'v2'"
        for m in BEST_METRICS)
    return f"""WITH finished AS (
    SELECT project_id, api_version, run_id, job_id, version_id, training_job_id, name AS job_name, version_name,
           create_time, CAST(gpu_count AS BIGINT) * node_count * duration_ms / 3600000.0 AS gpu_hours,
           total_accuracy, total_precision, total_recall
    FROM runs WHERE {SUCCEEDED_SQL}
), candidates AS (
    {finished}
)
SELECT project_id, api_version, job_id, training_job_id, metric, version_id, run_id, value, job_name, version_name,
       create_time, gpu_hours, total_accuracy, total_precision, total_recall,
       count(*) OVER (PARTITION BY {JOB_PARTITION}, metric) AS candidates
FROM candidates
QUALIFY row_number() OVER (PARTITION BY {JOB_PARTITION}, metric
                           ORDER BY value DESC NULLS LAST, create_time DESC NULLS LAST, version_id DESC) = 1"""


_BEST_COLUMNS = (
    _c("project_id", S, "ModelArts project"),
    _c("api_version", S, "v1 (a job with versions) or v2 (a job that is one run)"),
    _c("job_id", I64, "v1 training job id (NULL for v2)"),
    _c("training_job_id", S, "v2 training job UUID (NULL for v1)"),
    _c("metric", S, "The metric the version is best by"),
    _c("version_id", I64, "The best version (NULL for v2)"),
    _c("run_id", S, "The best run: v1 '<job_id>/<version_id>', v2 the job UUID"),
    _c("value", F64, "Its value of the metric (NULL for v2: its API reports no model metrics)"),
    _c("job_name", S, "Name of the training job"),
    _c("version_name", S, "Version name"),
    _c("create_time", UTC_TS, "The version's creation time"),
    _c("gpu_hours", F64, "The version's GPU-hours"),
    _c("total_accuracy", F64, "The version's total accuracy"),
    _c("total_precision", F64, "The version's total precision"),
    _c("total_recall", F64, "The version's total recall"),
    _c("candidates", I64, "v1: succeeded versions of the job with a value of the metric; v2: 1, the job itself"),
)
TIE_BREAK = "the highest value; ties go to the newest version (latest create_time, then highest version_id)"
BEST_KEY = ("project_id", "api_version", "job_id", "training_job_id")

BEST_VERSIONS_BY_METRIC = Table(
    "best_versions_by_metric",
    "Per job and metric (total_accuracy, total_precision, total_recall): the best succeeded (v1 COMPLETED) "
    f"version, {TIE_BREAK}. Versions without a value of the metric do not compete. A succeeded v2 job (Completed) "
    "is its own only run: it appears once per metric, with value NULL.",
    _BEST_COLUMNS,
    BEST_KEY + ("metric",),
    version_scoped=False,
    view_sql=_best_sql(),
)

BEST_VERSIONS = Table(
    "best_versions",
    f"Per job, the best succeeded (v1 COMPLETED) version by total accuracy: {TIE_BREAK}. A succeeded v2 job is "
    "its own best run (value NULL). For another metric use best_versions_by_metric (WHERE metric = "
    "'total_recall') or `dataset(...).best_versions(by=...)`.",
    _BEST_COLUMNS,
    BEST_KEY,
    version_scoped=False,
    view_sql="SELECT * FROM best_versions_by_metric WHERE metric = 'total_accuracy'",
)

UTILISATION_DAILY = Table(
    "utilisation_daily",
    "Capacity per project, API generation, engine, spec and day (the UTC day a run started; a run counts whole on "
    "that day): runs, GPU-hours, GPU-hour-weighted average GPU utilisation, and the share of GPU-hours spent under "
    f"{LOW_UTIL_PERCENT} % utilisation. Runs that never started are not counted.",
    (
        _c("day", DATE, "UTC day the runs started"),
        _c("project_id", S, "ModelArts project"),
        _c("api_version", S, "v1 (versions) or v2 (jobs)"),
        _c("engine_name", S, "Engine name"),
        _c("spec_code", S, "Resource specification code (v2: flavor_id)"),
        _c("runs", I64, "Runs (v1 versions, v2 jobs) that started that day"),
        _c("gpu_runs", I64, "Of them, runs that held at least one GPU"),
        _c("gpu_hours", F64, "Sum of version_summary.gpu_hours"),
        _c("avg_gpu_util", F64, "Average gpuUtil (percent), each run weighted by its GPU-hours; runs without "
                                "gpuUtil samples left out"),
        _c("gpu_hours_under_20", F64, "Sum of version_summary.gpu_hours_under_20"),
        _c("low_util_share", F64, f"gpu_hours_under_20 / the GPU-hours of runs with gpuUtil samples: the share "
                                  f"spent under {LOW_UTIL_PERCENT} % utilisation"),
    ),
    ("day", "project_id", "api_version", "engine_name", "spec_code"),
    version_scoped=False,
    view_sql="""SELECT CAST(timezone('UTC', start_time) AS DATE) AS day, project_id, api_version, engine_name,
       spec_code,
       count(*) AS runs, count(*) FILTER (WHERE gpus > 0) AS gpu_runs, coalesce(sum(gpu_hours), 0) AS gpu_hours,
       sum(gpu_hours * gpu_util_avg) / nullif(sum(gpu_hours) FILTER (WHERE gpu_util_avg IS NOT NULL), 0)
           AS avg_gpu_util,
       sum(gpu_hours_under_20) AS gpu_hours_under_20,
       sum(gpu_hours_under_20) / nullif(sum(gpu_hours) FILTER (WHERE gpu_hours_under_20 IS NOT NULL), 0)
           AS low_util_share
FROM version_summary
WHERE start_time IS NOT NULL
GROUP BY ALL""",
)

ANALYSIS_VIEWS: tuple[Table, ...] = (
    VERSION_SUMMARY, METRIC_STATS, METRIC_HISTORY, BEST_VERSIONS_BY_METRIC, BEST_VERSIONS, UTILISATION_DAILY,
)
"""In creation order: a view comes after the views it reads."""
VIEWS: dict[str, Table] = {t.name: t for t in ANALYSIS_VIEWS}
