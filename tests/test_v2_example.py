"""The v2 reference pages' own example responses yield every value they show, field by field.

The four examples (tests/data/v2_*_example.json) are copied from the pages' code blocks with
the indentation removed; unlike v1's sample they are valid JSON, so nothing was repaired.
The detail's first running record ends before it starts (end_at < start_at): kept as sent.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from conftest import DATA, dicts, rows
from warehouse import schema_v2
from pipelines.modelarts.records import RawRecord
from warehouse.store import Warehouse

JOB = "3faf5c03-aaa1-4cbe-879d-24b05d997347"
BASE = "https://modelarts.example.com/v2/proj1"
UTC = timezone.utc


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _land(root, redact=True):
    def record(name, kind, path, job=JOB):
        return RawRecord((DATA / name).read_bytes(), "proj1", f"{BASE}/{path}", kind=kind, http_status=200,
                         training_job_id=job)
    records = [
        record("v2_search_example.json", "v2_job_search", "training-job-searches#offset=0&limit=1", None),
        record("v2_detail_example.json", "v2_job_detail", f"training-jobs/{JOB}"),
        record("v2_metrics_example.json", "v2_metrics", f"training-jobs/{JOB}/metrics/worker-0"),
        record("v2_events_example.json", "v2_events", f"training-jobs/{JOB}/events?offset=0&limit=10"),
    ]
    with Warehouse.open(root, redact=redact) as wh:
        return wh.land(records)


@pytest.fixture(scope="module")
def landed(tmp_path_factory):
    root = tmp_path_factory.mktemp("v2") / "wh"
    report = _land(root)
    assert report.v2_jobs_loaded == 1 and report.rejected == 0
    return root


def test_the_detail_example_field_by_field(landed):
    wh_dir = landed
    [job] = dicts(wh_dir, "SELECT * FROM v2_jobs")
    expected = {
        "project_id": "proj1", "training_job_id": JOB, "kind": "job", "name": "trainjob--py14_mem06-108",
        "description": "", "create_time": _utc(1636447346315), "workspace_id": "0", "user_name": "",
        "phase": "Abnormal", "is_final": True, "secondary_phase": "CreateFailed", "duration_ms": 0,
        "start_time": None,  # sent as 0: not started
        "task_names": ["worker-0"],
        "code_dir": "obs://test/economic_test/py_minist/",
        "boot_file": "obs://test/economic_test/py_minist/minist_common.py",
        "engine_id": "pytorch-cp36-1.4.0-v2", "engine_name": "PyTorch", "engine_version": "PyTorch-1.4.0-python3.6-v2",
        "flavor_id": "modelarts.vm.pnt1.large.eco", "node_count": 1, "flavor_type": "GPU",
        "billing_code": "modelarts.vm.gpu.pnt1.eco", "billing_unit_num": 1,
        "flavor_cpu_arch": "x86", "flavor_cpu_core_num": 8, "flavor_gpu_unit_num": 1, "flavor_gpu_memory": "8GB",
        "flavor_memory_size": 64, "flavor_memory_unit": "GB",
    }
    for column, value in expected.items():
        assert job[column] == value, column
    rest = set(job) - set(expected) - {"extracted_at", "payload_sha256"}
    assert all(job[c] is None for c in rest), {c: job[c] for c in rest if job[c] is not None}
    assert set(job) == set(schema_v2.V2_JOBS.column_names)

    channels = dicts(wh_dir, "SELECT * FROM v2_data_channels ORDER BY direction")
    assert [(c["direction"], c["position"], c["name"], c["local_dir"], c["remote_type"], c["obs_url"])
            for c in channels] == [
        ("input", 0, "data_url", "/home/ma-user/modelarts/inputs/data_url_0", "obs", "/test/data/py_minist/"),
        ("output", 0, "train_url", "/home/ma-user/modelarts/outputs/train_url_0", "obs", "/test/train_output/"),
    ]
    assert rows(wh_dir, "SELECT position, time, node_count FROM v2_node_counts ORDER BY position") == [
        (0, _utc(1636447746000), 0), (1, _utc(1636447755000), 0), (2, _utc(1636447756000), 0)]
    records = dicts(wh_dir, "SELECT * EXCLUDE (project_id, training_job_id) FROM v2_running_records ORDER BY position")
    assert records == [
        {"position": 0, "start_at": datetime.fromtimestamp(1701327093, UTC),
         "end_at": datetime.fromtimestamp(1701322341, UTC),  # seconds, not milliseconds
         "start_type": "init_or_rescheduled", "end_reason": "exit with 127", "end_related_task": "worker-2",
         "end_recover": "job_reschedule", "end_recover_before_downgrade": "npu_proc_restart"},
        {"position": 1, "start_at": datetime.fromtimestamp(1701323345, UTC),
         "end_at": datetime.fromtimestamp(1701325432, UTC), "start_type": "init_or_rescheduled",
         "end_reason": "job completed", "end_related_task": None, "end_recover": None,
         "end_recover_before_downgrade": None},
    ]
    assert rows(wh_dir, "SELECT count(*) FROM v2_field_issues") == [(0,)]  # every field of the example is known
    for table in ("v2_parameters", "v2_volumes", "v2_tasks", "v2_task_statuses", "v2_environments",
                  "v2_annotations", "v2_ssh_task_urls"):
        assert rows(wh_dir, f"SELECT count(*) FROM {table}") == [(0,)], table  # the example has none


def test_the_metrics_example_field_by_field(landed):
    wh_dir = landed
    series = rows(wh_dir, "SELECT task, metric, samples FROM v2_metric_series ORDER BY metric")
    assert [(t, m) for t, m, _ in series] == [("worker-0", m) for m in sorted(
        ["cpuUsage", "memUsage", "gpuUtil", "gpuMemUsage", "npuUtil", "npuMemUsage"])]
    cpu = dict((m, s) for _, m, s in series)["cpuUsage"]
    assert cpu == [-1, -1, 2.43, 4.524, 6.714, 12.422, 9.214, 5.36, 7.5, 10.088, 8.975, 11.423, 11.548, 14.563, 16.833]
    samples = rows(wh_dir, "SELECT sample_index, value, no_data FROM v2_metric_samples WHERE metric = 'memUsage' "
                           "ORDER BY sample_index")
    assert samples[:3] == [(0, None, True), (1, None, True), (2, 0.04, False)]
    assert samples[-1] == (14, 9.005, False) and len(samples) == 15
    assert rows(wh_dir, "SELECT count(*), count(value), bool_and(no_data) FROM v2_metric_samples "
                        "WHERE metric = 'gpuUtil'") == [(15, 0, True)]
    assert rows(wh_dir, "SELECT count(*) FROM run_metric_samples WHERE api_version = 'v2' AND task = 'worker-0'") \
        == [(90,)]


def test_the_events_and_search_examples_field_by_field(landed):
    wh_dir = landed
    events = rows(wh_dir, "SELECT time, time_text, level, message, source FROM v2_events ORDER BY time DESC, message")
    assert len(events) == 10
    cst = timezone(timedelta(hours=8))
    assert events[0] == (datetime(2022, 11, 26, 16, 3, 41, tzinfo=cst), "2022-11-26T16:03:41+08:00", "Error",
                         "Training job failed.", "Job")
    assert events[-1][1:] == ("2022-11-26T16:02:05+08:00", "Info", "[Pod: modelarts-job-5bd61eea-9de2-4864-a0f7-"
                              "5fae966171b5-worker-0] Pulled: Successfully pulled image \"resource-path/modelarts-"
                              "job-dev-image/modelarts-tool-container:1.0.0-5.3.1-b002.2\"", "K8s")
    assert rows(wh_dir, "SELECT training_job_id, name, create_time, phase FROM v2_job_listings") == [
        (JOB, "trainjob--py14_mem06-byd-108", _utc(1636447346315), "Abnormal")]


def test_the_example_is_one_run_in_the_unified_views(landed):
    wh_dir = landed
    assert dicts(wh_dir, "SELECT api_version, run_id, job_id, version_id, training_job_id, status, is_final, "
                         "flavor, node_count, gpu_count FROM runs") == [
        {"api_version": "v2", "run_id": JOB, "job_id": None, "version_id": None, "training_job_id": JOB,
         "status": "Abnormal", "is_final": True, "flavor": "modelarts.vm.pnt1.large.eco", "node_count": 1,
         "gpu_count": 1}]


def test_the_example_in_the_analysis_views(landed):
    """version_summary and metric_stats of the example: Abnormal (never started, a GPU flavor, 0 ms),
    cpuUsage's 13 values after two -1, every gpuUtil sample -1 (no data)."""
    [s] = dicts(landed, "SELECT * FROM version_summary")
    cpu = [2.43, 4.524, 6.714, 12.422, 9.214, 5.36, 7.5, 10.088, 8.975, 11.423, 11.548, 14.563, 16.833]
    expected = {
        "api_version": "v2", "run_id": JOB, "training_job_id": JOB, "job_id": None, "version_id": None,
        "job_name": "trainjob--py14_mem06-108", "version_name": None, "status": None, "status_name": "Abnormal",
        "status_category": "failed", "is_final": True, "create_time": _utc(1636447346315), "start_time": None,
        "end_time": None, "duration_ms": 0, "duration_hours": 0.0, "engine_name": "PyTorch",
        "spec_code": "modelarts.vm.pnt1.large.eco", "gpu_num": 1, "worker_server_num": 1, "gpus": 1,
        "gpu_hours": 0.0, "gpu_hours_under_20": None, "metric_interval_minutes": 1.0,
        "cpu_samples": 15, "cpu_max": 16.833, "gpu_util_samples": 15, "gpu_util_avg": None, "gpu_util_max": None,
        "total_accuracy": None, "parameter_count": 0, "field_issue_count": 0,
    }
    assert {k: s[k] for k in expected} == expected
    assert s["cpu_avg"] == pytest.approx(sum(cpu) / 13)
    assert rows(landed, "SELECT task, samples, min, latest FROM metric_stats WHERE metric = 'memUsage'") == [
        ("worker-0", 15, 0.04, 9.005)]
    assert rows(landed, "SELECT count(*) FROM metric_history WHERE sample_time IS NOT NULL") == [(0,)]  # not started
    assert rows(landed, "SELECT count(*) FROM best_versions") == [(0,)]  # Abnormal is no success
    assert rows(landed, "SELECT count(*) FROM utilisation_daily") == [(0,)]  # it never started


def test_raw_bodies_keep_their_bytes_and_training_job_id(wh_dir):
    _land(wh_dir)
    stored = dict(rows(wh_dir, "SELECT kind, payload FROM raw_payloads"))
    assert stored["v2_job_detail"] == (DATA / "v2_detail_example.json").read_bytes()
    assert rows(wh_dir, "SELECT kind, training_job_id, job_id, version_id FROM raw_payloads ORDER BY kind") == [
        ("v2_events", JOB, None, None), ("v2_job_detail", JOB, None, None), ("v2_job_search", None, None, None),
        ("v2_metrics", JOB, None, None)]
    assert _land(wh_dir).landed == 0  # the raw-key dedupe holds for v2 bodies


def test_rebuild_reproduces_the_v2_tables(wh_dir):
    _land(wh_dir)
    before = {t.name: sorted(map(repr, rows(wh_dir, f'SELECT * EXCLUDE (extracted_at) FROM "{t.name}"'
                                            if "extracted_at" in t.column_names else f'SELECT * FROM "{t.name}"')))
              for t in schema_v2.STORED if t.name != "v2_job_listings"}
    with Warehouse.open(wh_dir) as wh:
        wh.rebuild()
    after = {t.name: sorted(map(repr, rows(wh_dir, f'SELECT * EXCLUDE (extracted_at) FROM "{t.name}"'
                                           if "extracted_at" in t.column_names else f'SELECT * FROM "{t.name}"')))
             for t in schema_v2.STORED if t.name != "v2_job_listings"}
    assert after == before
