"""The analysis views cover both API generations: v1 versions and v2 jobs synced together over real
HTTP from the simulator, and each v2 job is one run in version_summary, best_versions,
utilisation_daily, the report and the Dagster mart, with values computed here from the simulator's
own payloads and metrics."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone

import pytest
from conftest import dicts, rows

from pipelines.modelarts.auth import StaticToken
from pipelines.modelarts.simulator import SimulatorServer, World
from pipelines.modelarts.simulator.v2_world import V2World
from pipelines.modelarts.sync import Target, sync_projects
from warehouse.reader import connect
from warehouse.report import build_report, headline
from warehouse.statuses import phase_category
from warehouse.store import Warehouse

PROJECT = "proj-both"
TOKEN = "v2-analysis-token"


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """One project with v1 versions and v2 jobs (CPU, GPU and Ascend flavors, one to three tasks)."""
    world = World(projects=[PROJECT], jobs=3, versions_per_job=(1, 2), seed=5)
    v2 = V2World(projects=(PROJECT,), jobs=10, seed=4, running_share=0.3)
    root = tmp_path_factory.mktemp("v2-analysis") / "wh"
    with SimulatorServer(world, token=TOKEN, v2=v2) as sim, Warehouse.open(root) as wh:
        report = sync_projects(wh, [Target(sim.url, PROJECT)], StaticToken(TOKEN), api="both", concurrency=2)
        assert report.ok, report.error_line()
    return root, world, v2


def _expected(v2: V2World, job_id: str) -> dict:
    """version_summary's row of a v2 job, from the simulator's payload and its tasks' metrics."""
    payload = v2.payload(PROJECT, job_id)
    status, resource = payload["status"], payload["spec"]["resource"]
    gpus = resource["flavor_detail"]["flavor_info"]["gpu"]["unit_num"] * resource["node_count"]
    hours = status["duration"] / 3_600_000
    arrays = defaultdict(list)
    for task in status["tasks"]:
        for series in v2.metrics(PROJECT, job_id, task)["metrics"]:
            arrays[series["metric"]] += [None if x == -1 else x for x in series["value"]]
    cpu = [x for x in arrays["cpuUsage"] if x is not None]
    gpu = [x for x in arrays["gpuUtil"] if x is not None]
    return {
        "api_version": "v2", "run_id": job_id, "training_job_id": job_id, "job_id": None, "version_id": None,
        "job_name": payload["metadata"]["name"], "version_name": None, "status": None,
        "status_name": status["phase"], "status_category": phase_category(status["phase"]),
        "start_time": datetime.fromtimestamp(status["start_time"] / 1000, timezone.utc)
        if status["start_time"] else None,
        "duration_ms": status["duration"], "spec_code": resource["flavor_id"],
        "engine_name": payload["algorithm"]["engine"]["engine_name"], "gpus": gpus,
        "worker_server_num": resource["node_count"], "metric_interval_minutes": 1.0,
        "cpu_samples": len(arrays["cpuUsage"]), "cpu_max": max(cpu) if cpu else None,
        "gpu_util_samples": len(arrays["gpuUtil"]),
        "parameter_count": len(payload["algorithm"]["parameters"]), "field_issue_count": 0,
        "total_accuracy": None,
        "_cpu_avg": sum(cpu) / len(cpu) if cpu else None, "_gpu_hours": gpus * hours,
        "_under_20": gpus * hours * sum(x < 20 for x in gpu) / len(gpu) if gpu else None,
    }


def test_each_v2_job_is_one_run_of_version_summary(both):
    root, world, v2 = both
    summary = {r["run_id"]: r for r in dicts(root, "SELECT * FROM version_summary")}
    assert len(summary) == world.version_count() + len(v2.truth())
    assert sum(r["api_version"] == "v1" for r in summary.values()) == world.version_count()
    assert {r["status_category"] for r in summary.values() if r["api_version"] == "v2"} >= {"succeeded", "running"}
    assert any(r["gpus"] == 0 for r in summary.values() if r["api_version"] == "v2")  # a CPU flavor too
    for truth in v2.truth():
        row, expected = summary[truth.job_id], _expected(v2, truth.job_id)
        for column, value in expected.items():
            if not column.startswith("_"):
                assert row[column] == value, (truth.job_id, column)
        assert row["cpu_avg"] == pytest.approx(expected["_cpu_avg"])
        assert row["gpu_hours"] == pytest.approx(expected["_gpu_hours"])
        assert row["gpu_hours_under_20"] == pytest.approx(expected["_under_20"])


def test_a_multi_task_job_has_a_metric_stats_row_per_task(both):
    root, _, v2 = both
    job = next(t for t in v2.truth() if len(t.tasks) > 1 and t.phase not in ("Creating", "Pending"))
    found = rows(root, "SELECT task, samples, latest FROM metric_stats WHERE run_id = ? AND metric = 'cpuUsage' "
                       "ORDER BY task", [job.job_id])
    expected = [(task, len(v), v[-1]) for task in job.tasks
                for v in [next(s["value"] for s in v2.metrics(PROJECT, job.job_id, task)["metrics"]
                               if s["metric"] == "cpuUsage")]]
    assert found == expected
    history = rows(root, "SELECT count(*), count(value), max(sample_index) FROM metric_history "
                         "WHERE run_id = ? AND metric = 'cpuUsage'", [job.job_id])
    assert history == [(sum(n for _, n, _ in expected), sum(n - 2 for _, n, _ in expected),
                        max(n for _, n, _ in expected) - 1)]  # the first two samples of each task are -1


def test_a_completed_v2_job_is_its_own_best_run(both):
    root, world, v2 = both
    best = {(r["api_version"], r["job_id"], r["training_job_id"]): r
            for r in dicts(root, "SELECT * FROM best_versions")}
    completed = {t.job_id for t in v2.truth() if t.phase == "Completed"}
    assert completed and {k[2] for k in best if k[0] == "v2"} == completed
    for job_id in completed:
        row = best[("v2", None, job_id)]
        assert (row["run_id"], row["value"], row["candidates"], row["version_id"]) == (job_id, None, 1, None)
        assert row["job_name"] == v2.payload(PROJECT, job_id)["metadata"]["name"]
    v1 = [k for k in best if k[0] == "v1"]
    assert v1 and all(best[k]["value"] is not None for k in v1)
    per_metric = rows(root, "SELECT metric, count(*) FROM best_versions_by_metric WHERE api_version = 'v2' "
                            "GROUP BY ALL ORDER BY ALL")
    assert per_metric == [(m, len(completed)) for m in ("total_accuracy", "total_precision", "total_recall")]


def test_utilisation_daily_counts_v2_jobs_on_the_day_they_started(both):
    root, _, v2 = both
    expected = defaultdict(lambda: [0, 0.0])
    for truth in v2.truth():
        e = _expected(v2, truth.job_id)
        if e["start_time"] is not None:
            cell = expected[(e["start_time"].date(), e["engine_name"], e["spec_code"])]
            cell[0] += 1
            cell[1] += e["_gpu_hours"]
    found = {(d, engine, spec): (runs, hours) for d, engine, spec, runs, hours in rows(
        root, "SELECT day, engine_name, spec_code, runs, gpu_hours FROM utilisation_daily WHERE api_version = 'v2'")}
    assert expected and found.keys() == expected.keys()
    for key, (runs, hours) in expected.items():
        assert found[key][0] == runs and found[key][1] == pytest.approx(hours), key
    assert rows(root, "SELECT count(*) > 0 FROM utilisation_daily WHERE api_version = 'v1'") == [(True,)]


def test_the_report_and_the_mart_count_v2_jobs(both, tmp_path):
    import dagster as dg

    from assets.marts import version_summary_metadata

    root, world, v2 = both
    con = connect(root)
    try:
        figures = headline(con)
        metadata = version_summary_metadata(con)
        under = dict(rows(root, "SELECT run_id, gpu_hours_under_20 FROM version_summary "
                                "WHERE api_version = 'v2' AND gpu_hours_under_20 > 0"))
    finally:
        con.close()
    assert (figures["runs"], figures["v1_versions"], figures["v2_jobs"]) == (
        world.version_count() + len(v2.truth()), world.version_count(), len(v2.truth()))
    assert metadata["v2_jobs"] == dg.MetadataValue.int(len(v2.truth()))
    page = build_report(root, tmp_path / "report.html").read_text()
    assert f"<tr><th>v2 jobs</th><td>{len(v2.truth())}</td></tr>" in page
    assert under, "the world has a v2 GPU job spending time under 20 %"
    top = max(under, key=under.get)
    assert f"<td>{top}</td>" in page  # the most under-used v2 job is in the report's table, by its UUID
