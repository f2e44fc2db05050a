"""The analysis views: answers to the questions users ask, defined once like the contract tables.

They are plain SQL views over the stored tables, created in the lake by the writer's DDL
(`lake.create_tables`), documented in docs/tables.md and docs/analysis.md. A view costs
nothing at ingest and always agrees with the tables it reads, at every snapshot.

`parameters_wide` is not here: its columns are the parameter labels found in the data, and
a view's columns are fixed when it is created. `warehouse.dataset` pivots it on demand.
"""
from __future__ import annotations

from warehouse.schema import DATE, F64, I32, I64, KEY_COLUMNS, S, UTC_TS, VERSION_KEY, B, Column, Table
from warehouse.statuses import STATUS_CATEGORIES

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


def _status_category_sql(column: str) -> str:
    whens = " ".join(f"WHEN {column} IN ({', '.join(map(str, sorted(codes)))}) THEN '{name}'"
                     for name, codes in STATUS_CATEGORIES.items())
    return f"CASE {whens} ELSE 'other' END"


INTERVAL_MINUTES_SQL = (f"coalesce(try_cast(system_metric_interval AS DOUBLE), {DEFAULT_INTERVAL_MINUTES})")

_SERIES_STATS_SQL = """len(samples) AS samples, list_avg(samples) AS avg,
       list_aggregate(samples, 'quantile_cont', 0.5) AS p50, list_aggregate(samples, 'quantile_cont', 0.95) AS p95,
       list_max(samples) AS max"""


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
    "One row per version, the way MLflow's `runs_latest` is one row per run: names, status and its category, "
    "times, resources, GPU-hours, count/avg/p50/p95/max of the cpu, memory, GPU-utilisation and GPU-memory "
    "samples, the total metrics, and how many parameters and field issues it has.",
    KEY_COLUMNS + (
        _c("job_name", S, "Name of the training job"),
        _c("version_name", S, "Version name"),
        _c("status", I32, "Job status code"),
        _c("status_name", S, "Status name, e.g. COMPLETED"),
        _c("status_category", S, "succeeded (10), failed (3, 5, 6, 11, 14, 16, 17, 21, 22), stopped (12, 13), "
                                  "running (in progress: 1, 2, 4, 7, 8, 9, 15, 18, 19) or other (0, 20, unknown)"),
        _c("is_final", B, "True when the status never changes again"),
        _c("create_time", UTC_TS, "Creation time, UTC"),
        _c("start_time", UTC_TS, "Training start time, UTC (NULL if it never started)"),
        _c("end_time", UTC_TS, "start_time + duration: the end of a finished run; for a running one, "
                               "how far it had run when fetched"),
        _c("duration_ms", I64, "Running duration in milliseconds"),
        _c("duration_hours", F64, "duration_ms in hours"),
        _c("engine_name", S, "Engine name"),
        _c("spec_code", S, "Resource specification code"),
        _c("pool_name", S, "Resource pool name"),
        _c("gpu_type", S, "GPU type"),
        _c("gpu_num", I32, "GPUs per worker"),
        _c("worker_server_num", I32, "Number of workers"),
        _c("gpus", I64, "gpu_num x worker_server_num: GPUs the run held"),
        _c("gpu_hours", F64, "gpus x duration_hours (0 for a CPU-only run, NULL when gpu_num or duration is unknown)"),
        _c("gpu_hours_under_20", F64, "gpu_hours x the share of gpuUtil samples below 20 %: GPU time spent nearly "
                                      "idle (NULL without gpuUtil samples)"),
        _c("metric_interval_minutes", F64, "Sampling interval in minutes: `system_metric_interval` read as minutes "
                                           "(1 when not sent; an assumption, see docs/analysis.md)"),
    ) + _metric_columns() + (
        _c("total_accuracy", F64, "Total accuracy (model_metric_list)"),
        _c("total_precision", F64, "Total precision"),
        _c("total_recall", F64, "Total recall"),
        _c("parameter_count", I64, "Running parameters of the version"),
        _c("field_issue_count", I64, "field_issues rows of the version (fields that could not be typed)"),
    ),
    VERSION_KEY,
    version_scoped=False,
    view_sql=f"""WITH series AS (
    SELECT project_id, job_id, version_id, metric, {_SERIES_STATS_SQL},
           CASE WHEN metric = 'gpuUtil' AND list_count(samples) > 0
                THEN list_count(list_filter(samples, lambda x: x < {LOW_UTIL_PERCENT})) / list_count(samples)
           END AS low_share
    FROM system_metric_series
    WHERE metric IN ({', '.join(f"'{m}'" for m in SUMMARY_METRICS)})
), metrics AS (
    SELECT project_id, job_id, version_id,
       {_metric_select()},
       any_value(low_share) FILTER (WHERE metric = 'gpuUtil') AS gpu_low_share
    FROM series GROUP BY project_id, job_id, version_id
), params AS (
    SELECT project_id, job_id, version_id, count(*) AS n FROM parameters GROUP BY project_id, job_id, version_id
), issues AS (
    SELECT project_id, job_id, version_id, count(*) AS n FROM field_issues
    WHERE job_id IS NOT NULL AND version_id IS NOT NULL GROUP BY project_id, job_id, version_id
), versions AS (
    SELECT *, CAST(gpu_num AS BIGINT) * CAST(worker_server_num AS BIGINT) AS gpus,
           duration_ms / 3600000.0 AS duration_hours
    FROM job_versions
)
SELECT v.project_id, v.job_id, v.version_id, v.job_name, v.version_name, v.status, v.status_name,
       {_status_category_sql('v.status')} AS status_category, v.is_final,
       v.create_time, v.start_time, v.start_time + to_milliseconds(v.duration_ms) AS end_time,
       v.duration_ms, v.duration_hours, v.engine_name, v.spec_code, v.pool_name, v.gpu_type, v.gpu_num,
       v.worker_server_num, v.gpus, v.gpus * v.duration_hours AS gpu_hours,
       v.gpus * v.duration_hours * m.gpu_low_share AS gpu_hours_under_20,
       {INTERVAL_MINUTES_SQL} AS metric_interval_minutes,
       {', '.join(f'coalesce(m.{p}_samples, 0) AS {p}_samples' if s == 'samples' else f'm.{p}_{s}'
                  for p in SUMMARY_METRICS.values() for s, _, _ in STATS)},
       v.total_accuracy, v.total_precision, v.total_recall,
       coalesce(p.n, 0) AS parameter_count, coalesce(i.n, 0) AS field_issue_count
FROM versions v
LEFT JOIN metrics m USING (project_id, job_id, version_id)
LEFT JOIN params p USING (project_id, job_id, version_id)
LEFT JOIN issues i USING (project_id, job_id, version_id)""",
)

METRIC_STATS = Table(
    "metric_stats",
    "One row per version and metric array (every array, the rates and unknown ones too): count, avg, p50, p95, "
    "min, max and the last value, like the min/max/latest per metric of MLflow's `runs_latest`.",
    KEY_COLUMNS + (
        _c("metric", S, "Array name as in the API: cpuUsage, memUsage, gpuUtil, gpuMemUsage, diskReadRate, ..."),
    ) + tuple(_c(stat, type_, doc[0].upper() + doc[1:]) for stat, type_, doc in STATS) + (
        _c("min", F64, "Smallest value"),
        _c("latest", F64, "The last value of the array"),
    ),
    VERSION_KEY + ("metric",),
    version_scoped=False,
    view_sql=f"""SELECT project_id, job_id, version_id, metric, {_SERIES_STATS_SQL},
       list_min(samples) AS min, samples[-1] AS latest
FROM system_metric_series""",
)

METRIC_HISTORY = Table(
    "metric_history",
    "Every system metric sample with a time axis, like MLflow's `run_metrics_history`: sample i of a version "
    "is at start_time + i x interval. The interval is read as minutes (an assumption: see docs/analysis.md); "
    "the raw value is kept beside it.",
    KEY_COLUMNS + (
        _c("metric", S, "Array name as in the API"),
        _c("sample_index", I32, "0-based index in the array"),
        _c("sample_time", UTC_TS, "start_time + sample_index x interval_minutes (NULL when the run has no start)"),
        _c("value", F64, "Sample value"),
        _c("interval_raw", S, "`system_metric_interval` exactly as sent (NULL when the payload has none)"),
        _c("interval_minutes", F64, "The interval used, in minutes: interval_raw as a number, else 1"),
    ),
    VERSION_KEY + ("metric", "sample_index"),
    version_scoped=False,
    view_sql=f"""SELECT s.project_id, s.job_id, s.version_id, s.metric, s.sample_index,
       v.start_time + to_microseconds(CAST(s.sample_index * v.interval_minutes * 60000000 AS BIGINT)) AS sample_time,
       s.value, v.system_metric_interval AS interval_raw, v.interval_minutes
FROM (SELECT project_id, job_id, version_id, metric, CAST(unnest(range(len(samples))) AS INTEGER) AS sample_index,
             unnest(samples) AS value
      FROM system_metric_series) s
JOIN (SELECT project_id, job_id, version_id, start_time, system_metric_interval,
             {INTERVAL_MINUTES_SQL} AS interval_minutes
      FROM job_versions) v USING (project_id, job_id, version_id)""",
)

def _best_sql() -> str:
    finished = " UNION ALL\n    ".join(
        f"SELECT *, '{m}' AS metric, {m} AS value FROM finished WHERE {m} IS NOT NULL" for m in BEST_METRICS)
    return f"""WITH finished AS (
    SELECT project_id, job_id, version_id, job_name, version_name, create_time,
           CAST(gpu_num AS BIGINT) * worker_server_num * duration_ms / 3600000.0 AS gpu_hours,
           total_accuracy, total_precision, total_recall
    FROM job_versions WHERE status IN ({', '.join(map(str, sorted(STATUS_CATEGORIES['succeeded'])))})
), candidates AS (
    {finished}
)
SELECT project_id, job_id, metric, version_id, value, job_name, version_name, create_time, gpu_hours,
       total_accuracy, total_precision, total_recall,
       count(*) OVER (PARTITION BY project_id, job_id, metric) AS candidates
FROM candidates
QUALIFY row_number() OVER (PARTITION BY project_id, job_id, metric
                           ORDER BY value DESC, create_time DESC NULLS LAST, version_id DESC) = 1"""


_BEST_COLUMNS = KEY_COLUMNS[:2] + (
    _c("metric", S, "The metric the version is best by"),
    _c("version_id", I64, "The best version"),
    _c("value", F64, "Its value of the metric"),
    _c("job_name", S, "Name of the training job"),
    _c("version_name", S, "Version name"),
    _c("create_time", UTC_TS, "The version's creation time"),
    _c("gpu_hours", F64, "The version's GPU-hours"),
    _c("total_accuracy", F64, "The version's total accuracy"),
    _c("total_precision", F64, "The version's total precision"),
    _c("total_recall", F64, "The version's total recall"),
    _c("candidates", I64, "Succeeded versions of the job with a value of the metric"),
)
TIE_BREAK = "the highest value; ties go to the newest version (latest create_time, then highest version_id)"

BEST_VERSIONS_BY_METRIC = Table(
    "best_versions_by_metric",
    "Per job and metric (total_accuracy, total_precision, total_recall): the best succeeded (COMPLETED) "
    f"version, {TIE_BREAK}. Versions without a value of the metric do not compete.",
    _BEST_COLUMNS,
    ("project_id", "job_id", "metric"),
    version_scoped=False,
    view_sql=_best_sql(),
)

BEST_VERSIONS = Table(
    "best_versions",
    f"Per job, the best succeeded (COMPLETED) version by total accuracy: {TIE_BREAK}. For another metric use "
    "best_versions_by_metric (WHERE metric = 'total_recall') or `dataset(...).best_versions(by=...)`.",
    _BEST_COLUMNS,
    ("project_id", "job_id"),
    version_scoped=False,
    view_sql="SELECT * FROM best_versions_by_metric WHERE metric = 'total_accuracy'",
)

UTILISATION_DAILY = Table(
    "utilisation_daily",
    "Capacity per project, engine, spec and day (the UTC day a run started; a run counts whole on that day): "
    "runs, GPU-hours, GPU-hour-weighted average GPU utilisation, and the share of GPU-hours spent under "
    f"{LOW_UTIL_PERCENT} % utilisation. Runs that never started are not counted.",
    (
        _c("day", DATE, "UTC day the runs started"),
        _c("project_id", S, "ModelArts project"),
        _c("engine_name", S, "Engine name"),
        _c("spec_code", S, "Resource specification code"),
        _c("runs", I64, "Versions that started that day"),
        _c("gpu_runs", I64, "Of them, runs that held at least one GPU"),
        _c("gpu_hours", F64, "Sum of version_summary.gpu_hours"),
        _c("avg_gpu_util", F64, "Average gpuUtil (percent), each run weighted by its GPU-hours; runs without "
                                "gpuUtil samples left out"),
        _c("gpu_hours_under_20", F64, "Sum of version_summary.gpu_hours_under_20"),
        _c("low_util_share", F64, f"gpu_hours_under_20 / the GPU-hours of runs with gpuUtil samples: the share "
                                  f"spent under {LOW_UTIL_PERCENT} % utilisation"),
    ),
    ("day", "project_id", "engine_name", "spec_code"),
    version_scoped=False,
    view_sql="""SELECT CAST(timezone('UTC', start_time) AS DATE) AS day, project_id, engine_name, spec_code,
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
