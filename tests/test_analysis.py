"""The analysis views against values computed by hand: the seed example, crafted versions, and a
small simulator world synced over real HTTP (a version with no samples, a CPU-only job, running jobs)."""
from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from conftest import dicts, land, rows

from pipelines.modelarts.auth import StaticToken
from pipelines.modelarts.retry import RetryPolicy
from pipelines.modelarts.simulator import SimulatorServer, World
from pipelines.modelarts.sync import Target, sync_projects
from warehouse.statuses import FINAL_STATUSES, STATUS_NAMES, status_category
from warehouse.store import Warehouse

TOKEN = "analysis-test-token"
UTC = timezone.utc
SEED_START = datetime(2019, 7, 15, 6, 32, 42, tzinfo=UTC)


def _quantile(values: list[float], q: float) -> float:
    """Continuous quantile (linear interpolation), computed here rather than by DuckDB."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _version(seed_bytes: bytes, job_id: int, version_id: int, **fields) -> bytes:
    payload = orjson.loads(seed_bytes)
    payload.update(job_id=job_id, version_id=version_id, **fields)
    return orjson.dumps(payload)


# -- the seed example, by hand --------------------------------------------------------------
def test_version_summary_of_the_seed_example(wh_dir, seed_bytes):
    land(wh_dir, [seed_bytes])
    [s] = dicts(wh_dir, "SELECT * FROM version_summary")
    # cpuUsage 0, 3.10, 5.76, 0, 0, 0, 0: sorted, p95 sits at 0.95 x 6 = 5.7, i.e. 3.10 + 0.7 x (5.76 - 3.10)
    expected = {
        "status_name": "COMPLETED", "status_category": "succeeded", "is_final": True,
        "start_time": SEED_START, "end_time": SEED_START + timedelta(milliseconds=532003),
        "duration_ms": 532003, "gpus": 2, "pool_name": "p100", "spec_code": None,
        "cpu_samples": 7, "cpu_max": 5.76, "cpu_p50": 0.0, "mem_samples": 7, "gpu_util_samples": 7,
        "gpu_mem_samples": 0, "gpu_mem_avg": None, "gpu_mem_max": None,
        "total_accuracy": 0.000937, "total_precision": 0.000178, "total_recall": 0.005833,
        "parameter_count": 1, "field_issue_count": 0, "metric_interval_minutes": 1.0,
    }
    assert {k: s[k] for k in expected} == expected
    assert s["duration_hours"] == pytest.approx(532003 / 3_600_000)
    assert s["gpu_hours"] == pytest.approx(2 * 532003 / 3_600_000)  # 2 GPUs x 1 worker x 0.1478 h
    assert s["gpu_hours_under_20"] == pytest.approx(s["gpu_hours"])  # every gpuUtil sample is under 1 %
    assert s["cpu_avg"] == pytest.approx(8.86 / 7)
    assert s["cpu_p95"] == pytest.approx(3.10 + 0.7 * (5.76 - 3.10))
    assert s["mem_avg"] == pytest.approx(2.86 / 7) and s["mem_max"] == 2.09
    assert s["gpu_util_avg"] == pytest.approx(1.13 / 7)
    assert s["gpu_util_p95"] == pytest.approx(0.25 + 0.7 * (0.88 - 0.25))


def test_metric_history_and_stats_of_the_seed_example(wh_dir, seed_bytes):
    land(wh_dir, [seed_bytes])
    history = rows(wh_dir, "SELECT sample_index, sample_time, value, interval_raw, interval_minutes "
                           "FROM metric_history WHERE metric = 'cpuUsage' ORDER BY sample_index")
    cpu = [0, 3.10, 5.76, 0, 0, 0, 0]
    # the payload sends no interval: one minute is assumed, the raw value stays NULL
    assert history == [(i, SEED_START + timedelta(minutes=i), v, None, 1.0) for i, v in enumerate(cpu)]
    assert rows(wh_dir, "SELECT count(*) FROM metric_history") == [(21,)]
    stats = {r[0]: r[1:] for r in rows(wh_dir, "SELECT metric, samples, min, max, latest FROM metric_stats")}
    assert stats == {"cpuUsage": (7, 0.0, 5.76, 0.0), "memUsage": (7, 0.0, 2.09, 0.0),
                     "gpuUtil": (7, 0.0, 0.88, 0.0)}


def test_sample_time_reads_the_interval_as_minutes_and_keeps_the_raw_value(wh_dir, seed_bytes):
    payload = orjson.loads(seed_bytes)
    payload["system_metric_list"]["interval"] = 5
    land(wh_dir, [orjson.dumps(payload)])
    assert rows(wh_dir, "SELECT sample_index, sample_time, interval_raw, interval_minutes FROM metric_history "
                        "WHERE metric = 'gpuUtil' AND sample_index IN (0, 6) ORDER BY 1") == [
        (0, SEED_START, "5", 5.0), (6, SEED_START + timedelta(minutes=30), "5", 5.0)]
    assert rows(wh_dir, "SELECT metric_interval_minutes FROM version_summary") == [(5.0,)]


def test_status_categories_cover_the_job_statuses_table(wh_dir, seed_bytes):
    land(wh_dir, [_version(seed_bytes, 1, code, status=code) for code in STATUS_NAMES] +
         [_version(seed_bytes, 1, 99, status=99)])
    found = dict(rows(wh_dir, "SELECT status, status_category FROM version_summary"))
    assert {code: found[code] for code in (10, 11, 3, 22, 14, 12, 13, 8, 7, 9, 0, 20, 99)} == {
        10: "succeeded", 11: "failed", 3: "failed", 22: "failed", 14: "failed", 12: "stopped", 13: "stopped",
        8: "running", 7: "running", 9: "running", 0: "other", 20: "other", 99: "other"}
    failure_like = [code for code, name in STATUS_NAMES.items() if name.endswith("_FAILED") or name == "FAILED"]
    assert len(failure_like) == 8 and all(found[code] == "failed" for code in failure_like)
    assert all(found[code] == status_category(code) for code in found)


# -- best versions, by hand -----------------------------------------------------------------
def _metrics(accuracy: float, recall: float) -> str:
    values = {"recall": recall, "precision": 0.5, "accuracy": accuracy}
    return orjson.dumps({"metric": [], "total_metric": {"total_metric_values": values}}).decode()


def test_best_versions_pick_the_highest_succeeded_value_and_break_ties_by_newest(wh_dir, seed_bytes):
    t0 = 1_600_000_000_000
    land(wh_dir, [
        _version(seed_bytes, 1, 11, create_time=t0, model_metric_list=_metrics(0.90, 0.2)),
        _version(seed_bytes, 1, 12, create_time=t0 + 1000, model_metric_list=_metrics(0.90, 0.7)),  # tie: newer
        _version(seed_bytes, 1, 13, create_time=t0 + 2000, model_metric_list=_metrics(0.80, 0.9)),
        _version(seed_bytes, 1, 14, status=11, model_metric_list=_metrics(0.99, 0.99)),  # failed: not a candidate
        _version(seed_bytes, 2, 21, model_metric_list=_metrics(0.50, 0.1)),
        _version(seed_bytes, 3, 31, status=8),  # only a running version: no best
    ])
    assert rows(wh_dir, "SELECT job_id, version_id, value, candidates FROM best_versions ORDER BY job_id") == [
        (1, 12, 0.90, 3), (2, 21, 0.50, 1)]
    assert rows(wh_dir, "SELECT job_id, version_id, value FROM best_versions_by_metric "
                        "WHERE metric = 'total_recall' ORDER BY job_id") == [(1, 13, 0.9), (2, 21, 0.1)]
    from warehouse import dataset

    with dataset(wh_dir) as ds:
        by_recall = ds.best_versions(by="total_recall").select("job_id", "version_id").fetchall()
        shortest = ds.best_versions(by="duration_ms", higher_is_better=False).select("job_id", "version_id")
        assert by_recall == [(1, 13), (2, 21)] and shortest.fetchall() == [(1, 13), (2, 21)]  # equal: newest


# -- utilisation per day, by hand -----------------------------------------------------------
def test_utilisation_daily_weights_by_gpu_hours_and_counts_idle_gpu_time(wh_dir, seed_bytes):
    day = 1_700_000_000_000 - 1_700_000_000_000 % 86_400_000  # 2023-11-14 00:00 UTC
    busy = {"gpuUtil": ["90", "90", "10", "90"], "cpuUsage": ["1", "1", "1", "1"]}  # a quarter under 20 %
    idle = {"gpuUtil": ["5", "5"], "cpuUsage": ["1", "1"]}
    land(wh_dir, [
        _version(seed_bytes, 1, 1, start_time=day + 3_600_000, duration=2 * 3_600_000, gpu_num=4,
                 worker_server_num=1, spec_code="gpu.4", system_metric_list=busy),  # 8 GPU-hours
        _version(seed_bytes, 2, 2, start_time=day + 7_200_000, duration=3_600_000, gpu_num=2,
                 worker_server_num=1, spec_code="gpu.4", system_metric_list=idle),  # 2 GPU-hours
        _version(seed_bytes, 3, 3, start_time=day + 7_200_000, duration=3_600_000, gpu_num=0,
                 spec_code="gpu.4", system_metric_list={"gpuUtil": ["0"], "cpuUsage": ["50"]}),  # CPU only
        _version(seed_bytes, 4, 4, start_time=day + 86_400_000, duration=3_600_000, gpu_num=1,
                 spec_code="gpu.4", system_metric_list={}),  # the next day, no samples
    ])
    found = dicts(wh_dir, "SELECT * FROM utilisation_daily ORDER BY day")
    assert [(r["day"].isoformat(), r["runs"], r["gpu_runs"]) for r in found] == [
        ("2023-11-14", 3, 2), ("2023-11-15", 1, 1)]
    first, second = found
    assert first["gpu_hours"] == pytest.approx(10.0)
    assert first["avg_gpu_util"] == pytest.approx((8 * 70 + 2 * 5) / 10)  # weighted by GPU-hours
    assert first["gpu_hours_under_20"] == pytest.approx(8 * 0.25 + 2 * 1.0)
    assert first["low_util_share"] == pytest.approx(4 / 10)
    assert second["gpu_hours"] == pytest.approx(1.0)
    assert second["avg_gpu_util"] is None and second["low_util_share"] is None  # no samples to judge by
    summary = dict(rows(wh_dir, "SELECT job_id, gpu_hours_under_20 FROM version_summary"))
    assert summary[3] == 0.0 and summary[4] is None


# -- a small simulator world, synced over HTTP ------------------------------------------------
@pytest.fixture(scope="module")
def world_lake(tmp_path_factory):
    """World seed 2: 12 versions, one that never started (no samples), CPU-only jobs, running ones."""
    world = World(jobs=6, versions_per_job=(1, 3), seed=2, running_share=0.4)
    root = tmp_path_factory.mktemp("analysis") / "wh"
    with SimulatorServer(world, token=TOKEN) as sim, Warehouse.open(root) as wh:
        sync_projects(wh, [Target(sim.url, p) for p in world.project_ids], StaticToken(TOKEN),
                      retry=RetryPolicy(max_retries=2, backoff_base=0.01, backoff_max=0.05), concurrency=2)
    payloads = {(t.project_id, t.job_id, t.version_id): world.payload(*t.key) for t in world.truth()}
    return root, payloads


def _arrays(payload: dict) -> tuple[dict[str, list[float]], int | None]:
    metrics = payload["system_metric_list"]
    metrics = orjson.loads(metrics) if isinstance(metrics, str) else metrics
    return {k: [float(x) for x in v] for k, v in metrics.items() if k != "interval"}, metrics.get("interval")


def _expected_summary(p: dict) -> dict:
    arrays, interval = _arrays(p)
    gpus = p["gpu_num"] * p["worker_server_num"]
    hours = p["duration"] / 3_600_000
    out = {"status_category": status_category(p["status"]), "gpus": gpus, "gpu_hours": gpus * hours,
           "metric_interval_minutes": float(interval or 1), "parameter_count": len(p["parameter"])}
    for metric, prefix in (("cpuUsage", "cpu"), ("memUsage", "mem"), ("gpuUtil", "gpu_util"),
                           ("gpuMemUsage", "gpu_mem")):
        values = arrays.get(metric, [])
        out[f"{prefix}_samples"] = len(values)
        out[f"{prefix}_avg"] = sum(values) / len(values) if values else None
        out[f"{prefix}_p50"] = _quantile(values, 0.5) if values else None
        out[f"{prefix}_p95"] = _quantile(values, 0.95) if values else None
        out[f"{prefix}_max"] = max(values) if values else None
    gpu = arrays.get("gpuUtil")
    out["gpu_hours_under_20"] = gpus * hours * sum(v < 20 for v in gpu) / len(gpu) if gpu else None
    return out


def test_version_summary_matches_the_world(world_lake):
    root, payloads = world_lake
    summary = {(r["project_id"], r["job_id"], r["version_id"]): r for r in dicts(root, "SELECT * FROM version_summary")}
    assert summary.keys() == payloads.keys()
    for key, payload in payloads.items():
        expected = _expected_summary(payload)
        for column, value in expected.items():
            got = summary[key][column]
            assert got == (pytest.approx(value, rel=1e-9, abs=1e-12) if isinstance(value, float) else value), \
                (key, column)
    kinds = {
        "no samples": [k for k, p in payloads.items() if not _arrays(p)[0]],
        "cpu only": [k for k, p in payloads.items() if p["gpu_num"] == 0 and _arrays(p)[0]],
        "running": [k for k, p in payloads.items() if p["status"] not in FINAL_STATUSES],
    }
    assert all(kinds.values()), kinds
    for key in kinds["no samples"]:
        assert summary[key]["cpu_samples"] == 0 and summary[key]["cpu_avg"] is None
    for key in kinds["cpu only"]:
        assert summary[key]["gpu_hours"] == 0 and summary[key]["gpu_util_max"] == 0
    for key in kinds["running"]:
        s = summary[key]
        assert s["status_category"] in ("running", "other") and not s["is_final"]
        if s["start_time"] is not None:
            assert s["end_time"] == s["start_time"] + timedelta(milliseconds=payloads[key]["duration"])


def test_metric_history_spans_the_run(world_lake):
    """Samples ~ duration / interval, so the last sample falls within an interval of the run's end."""
    root, payloads = world_lake
    last = rows(root, "SELECT project_id, job_id, version_id, max(sample_time), count(*) FROM metric_history "
                      "WHERE metric = 'cpuUsage' GROUP BY ALL")
    assert last
    for project_id, job_id, version_id, sample_time, count in last:
        p = payloads[(project_id, job_id, version_id)]
        _, interval = _arrays(p)
        start = datetime.fromtimestamp(p["start_time"] / 1000, UTC)
        assert sample_time == start + timedelta(minutes=(count - 1) * interval)
        end = start + timedelta(milliseconds=p["duration"])
        assert abs((sample_time - end).total_seconds()) <= 2 * interval * 60 + 0.1 * p["duration"] / 1000


def test_utilisation_daily_matches_the_world(world_lake):
    root, payloads = world_lake
    groups = defaultdict(lambda: {"runs": 0, "gpu_hours": 0.0})
    for p in payloads.values():
        if p["start_time"] is None:
            continue
        day = datetime.fromtimestamp(p["start_time"] / 1000, UTC).date()
        g = groups[(day, p["engine_name"], p["spec_code"])]
        g["runs"] += 1
        g["gpu_hours"] += _expected_summary(p)["gpu_hours"]
    found = {(r[0], r[1], r[2]): {"runs": r[3], "gpu_hours": r[4]} for r in rows(
        root, "SELECT day, engine_name, spec_code, runs, gpu_hours FROM utilisation_daily")}
    assert found.keys() == groups.keys()
    for key, group in groups.items():
        assert found[key]["runs"] == group["runs"]
        assert found[key]["gpu_hours"] == pytest.approx(group["gpu_hours"])


def test_views_are_in_an_old_lake_after_a_writer_opens_it(wh_dir, seed_bytes):
    """A lake made before the analysis views gets them from the writer's DDL, like a new table."""
    land(wh_dir, [seed_bytes])
    with Warehouse.open(wh_dir) as wh:
        wh.con.execute("DROP VIEW modelarts.best_versions")
    assert not rows(wh_dir, "SELECT * FROM duckdb_views() WHERE view_name = 'best_versions'")
    with Warehouse.open(wh_dir):
        pass
    assert rows(wh_dir, "SELECT job_id, version_id FROM best_versions") == [(10, 10)]


def test_every_sql_block_of_docs_analysis_runs(world_lake):
    import re
    from pathlib import Path

    root, _ = world_lake
    text = (Path(__file__).resolve().parents[1] / "docs" / "analysis.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", text, re.S)
    assert len(blocks) >= 8
    for sql in blocks:
        assert rows(root, sql) is not None, sql
    assert rows(root, blocks[0])  # the best versions of the world
