"""The seed document's own example yields exactly the values it shows, in every table."""
from __future__ import annotations

from datetime import datetime, timezone

from conftest import dicts, land, rows


def _one(root, table):
    found = dicts(root, f"SELECT * FROM {table} ORDER BY ALL")
    assert len(found) == 1, found
    return found[0]


def test_job_version_row_field_by_field(wh_dir, seed_bytes):
    land(wh_dir, [seed_bytes])
    v = _one(wh_dir, "job_versions")
    expected = {
        "project_id": "proj1", "job_id": 10, "version_id": 10,
        "job_name": "TestModelArtsJob", "job_desc": "TestModelArtsJob desc",
        "version_name": "jobVersion", "pre_version_id": 5,
        "engine_type": 13, "engine_name": "Ascend-Powered-Engine", "engine_id": 1,
        "engine_version": "TensorFlow-1.15.0",
        "status": 10, "status_name": "COMPLETED", "is_final": True,
        "app_url": "/usr/app/", "boot_file_url": "/usr/app/boot.py",
        "create_time": datetime(2018, 4, 20, 2, 6, 30, 635000, tzinfo=timezone.utc),
        "start_time": datetime(2019, 7, 15, 6, 32, 42, tzinfo=timezone.utc),
        "duration_ms": 532003, "spec_id": 1, "core": "2", "cpu": "8", "gpu_num": 2, "gpu_type": "P100",
        "gpu": None, "worker_server_num": 1,
        "data_url": "/usr/data/", "train_url": "/usr/train/", "log_url": "/usr/log/",
        "dataset_version_id": "2ff0d6ba-c480-45ae-be41-09a8369bfc90",
        "dataset_id": "38277e62-9e59-48f4-8d89-c8cf41622c24",
        "model_id": 1,
        "user_image_url": "100.125.5.235:20202/jobmng/custom-cpu-base:1.0",
        "user_command": "bash -x /home/work/run_train.sh python /home/work/user-job-dir/app/mnist/mnist_softmax.py"
                        " --data_url /home/work/user-job-dir/app/mnist_data",
        "resource_id": None, "dataset_name": "dataset-test", "spec_code": None,
        "dataset_version_name": "dataset-version-test", "pool_name": "p100", "pool_id": "pool9928813f",
        "nas_mount_path": "/home/work/nas", "nas_share_addr": "192.168.8.150:/", "nas_type": "nfs",
        "system_metric_interval": None,
        "total_recall": 0.005833, "total_precision": 0.000178, "total_accuracy": 0.000937,
        "deleted_upstream_at": None,  # not in the payload: set by a sync whose job list lacks the job
    }
    for column, value in expected.items():
        assert v[column] == value, column
    assert v["extracted_at"].tzinfo is not None
    assert len(v["payload_sha256"]) == 64
    assert set(v) == set(expected) | {"extracted_at", "payload_sha256"}


def test_child_tables_field_by_field(wh_dir, seed_bytes):
    land(wh_dir, [seed_bytes])
    key = {"project_id": "proj1", "job_id": 10, "version_id": 10}
    assert _one(wh_dir, "parameters") == {
        **key, "position": 0, "label": "learning_rate", "value": "0.01", "value_number": 0.01}
    assert _one(wh_dir, "data_sources") == {
        **key, "position": 0, "type": "obs", "dataset_id": None, "dataset_version": None,
        "data_url": "/qianjiajun-test/minst/data/"}
    assert _one(wh_dir, "class_metrics") == {
        **key, "position": 0, "class_id": 0, "class_name": "0",
        "recall": 0.005833, "precision": 0.000178, "accuracy": 0.000937}
    assert dicts(wh_dir, "SELECT * FROM volumes ORDER BY position") == [
        {**key, "position": 0, "volume_type": "nfs", "nfs_id": "43b37236-9afa-4855-8174-32254b9562e7",
         "src_path": "192.168.8.150:/", "dest_path": "/home/work/nas", "read_only": False},
        {**key, "position": 1, "volume_type": "host_path", "nfs_id": None,
         "src_path": "/root/work", "dest_path": "/home/mind", "read_only": False},
    ]
    samples = rows(wh_dir, "SELECT metric, sample_index, value FROM system_metric_samples ORDER BY metric, sample_index")
    expected = {
        "cpuUsage": [0, 3.10, 5.76, 0, 0, 0, 0],
        "memUsage": [0, 0.77, 2.09, 0, 0, 0, 0],
        "gpuUtil": [0, 0.25, 0.88, 0, 0, 0, 0],
    }
    assert samples == sorted((m, i, float(x)) for m, xs in expected.items() for i, x in enumerate(xs))
    assert _one(wh_dir, "jobs") == {
        "project_id": "proj1", "job_id": 10, "job_name": "TestModelArtsJob", "job_desc": "TestModelArtsJob desc",
        "latest_version_id": 10, "latest_status": 10, "latest_status_name": "COMPLETED", "latest_is_final": True,
        "version_count": 1,
        "first_create_time": datetime(2018, 4, 20, 2, 6, 30, 635000, tzinfo=timezone.utc),
        "last_create_time": datetime(2018, 4, 20, 2, 6, 30, 635000, tzinfo=timezone.utc),
        "deleted_upstream_at": None,
    }
    assert rows(wh_dir, "SELECT count(*) FROM field_issues") == [(0,)]
    assert rows(wh_dir, "SELECT count(*) FROM rejected_payloads") == [(0,)]


def test_raw_payload_is_byte_exact(wh_dir, seed_bytes):
    land(wh_dir, [(seed_bytes, "seed.json")])
    (raw,) = dicts(wh_dir, "SELECT * FROM raw_payloads")
    assert raw["payload"] == seed_bytes
    assert raw["byte_size"] == len(seed_bytes)
    assert (raw["project_id"], raw["job_id"], raw["version_id"]) == ("proj1", 10, 10)
    assert raw["kind"] == "version_detail" and raw["source"] == "seed.json"
    assert rows(wh_dir, "SELECT payload_sha256 FROM job_versions") == [(raw["payload_sha256"],)]
