"""Every kind of bad input lands where the contract says, and nothing is dropped silently."""
from __future__ import annotations

import json

import orjson
import pytest

from conftest import DATA, dicts, land, rows
from pipelines.modelarts.records import RawRecord
from warehouse.store import Warehouse


def _payload(seed_bytes, **changes) -> bytes:
    payload = orjson.loads(seed_bytes)
    for key, value in changes.items():
        if value is ...:
            payload.pop(key, None)
        else:
            payload[key] = value
    return json.dumps(payload).encode()


def _issues(root) -> set[tuple]:
    return set(rows(root, "SELECT table_name, field, problem FROM field_issues"))


def _rejected(root) -> list[tuple]:
    return rows(root, "SELECT stage, error_kind FROM rejected_payloads ORDER BY source")


@pytest.mark.parametrize(
    "body, stage, kind",
    [
        ((DATA / "seed_example_unrepaired.json").read_bytes(), "decode", "invalid_json"),
        ((DATA / "seed_example.json").read_bytes()[:900], "decode", "truncated_json"),
        ((DATA / "seed_error.json").read_bytes(), "validate", "api_error"),
        (b'{"is_success": false, "error_msg": "old style", "error_code": "ModelArts.0101"}', "validate", "api_error"),
        (b"[1, 2, 3]", "decode", "not_an_object"),
        (b'{"job_name": "x", "\xff\xfe": 1}', "decode", "invalid_utf8"),
        (b'{"job_name": "no ids"}', "validate", "missing_key"),
        (b'{"job_id": "ten", "version_id": 1}', "validate", "missing_key"),
        (b"", "decode", "empty_body"),
        (b"  \n", "decode", "empty_body"),
        (b"[" * 5000 + b"]" * 5000, "decode", "invalid_json"),
    ],
    ids=["unrepaired-seed", "truncated", "error-body", "error-msg", "array", "non-utf8", "no-ids", "bad-id",
         "empty", "blank", "deeply-nested"],
)
def test_unusable_payload_is_rejected_and_kept_raw(wh_dir, body, stage, kind):
    report = land(wh_dir, [body])
    assert report.rejected == 1 and report.versions_loaded == 0
    assert _rejected(wh_dir) == [(stage, kind)]
    (message,) = rows(wh_dir, "SELECT error_message FROM rejected_payloads")[0]
    assert message and "\n" not in message
    assert rows(wh_dir, "SELECT payload FROM raw_payloads") == [(body,)]
    assert rows(wh_dir, "SELECT count(*) FROM job_versions") == [(0,)]


def test_valid_json_that_orjson_refuses_still_loads(wh_dir, seed_bytes):
    body = seed_bytes.replace(b'"duration": 532003', b'"duration": 1e400').replace(
        b'"model_id": 1', b'"model_id": 100000000000000000000000')
    land(wh_dir, [body])
    assert rows(wh_dir, "SELECT duration_ms, model_id FROM job_versions") == [(None, None)]
    assert {("job_versions", "duration", "out_of_range"), ("job_versions", "model_id", "out_of_range")} <= _issues(wh_dir)


def test_error_body_message_carries_code(wh_dir):
    land(wh_dir, [(DATA / "seed_error.json").read_bytes()])
    assert rows(wh_dir, "SELECT error_message FROM rejected_payloads") == [("API error ModelArts.0105: Error string",)]


def test_http_error_status_is_rejected_at_fetch(wh_dir):
    with Warehouse.open(wh_dir) as wh:
        wh.land([RawRecord(body=b'{"error_code": "ModelArts.0010", "error_msg": "boom"}', project_id="proj1",
                           source="https://h/v1/proj1/training-jobs/1/versions/2", http_status=500,
                           job_id=1, version_id=2)])
    assert rows(wh_dir, "SELECT stage, error_kind, job_id, version_id, error_message FROM rejected_payloads") == [
        ("fetch", "http_error", 1, 2, "HTTP 500 (ModelArts.0010: boom)")]


def test_ids_from_the_request_when_the_payload_has_none(wh_dir, seed_bytes):
    body = _payload(seed_bytes, job_id=..., version_id=...)
    with Warehouse.open(wh_dir) as wh:
        wh.land([RawRecord(body=body, project_id="proj1", source="u", job_id=7, version_id=8)])
    assert rows(wh_dir, "SELECT job_id, version_id FROM job_versions") == [(7, 8)]


def test_mismatched_request_and_payload_ids_are_flagged(wh_dir, seed_bytes):
    with Warehouse.open(wh_dir) as wh:
        wh.land([RawRecord(body=seed_bytes, project_id="proj1", source="u", job_id=10, version_id=99)])
    assert rows(wh_dir, "SELECT job_id, version_id FROM job_versions") == [(10, 10)]
    assert ("job_versions", "version_id", "key_mismatch") in _issues(wh_dir)


def test_wrong_types_become_null_plus_issue(wh_dir, seed_bytes):
    body = _payload(seed_bytes, gpu_num="abc", status={"code": 10}, create_time="yesterday", engine_id=1.5,
                    job_name=["a"], duration=10**30, start_time=10**17)
    report = land(wh_dir, [body])
    assert report.versions_loaded == 1
    (v,) = dicts(wh_dir, "SELECT * FROM job_versions")
    for column in ("gpu_num", "status", "create_time", "engine_id", "job_name", "duration_ms", "start_time"):
        assert v[column] is None, column
    assert v["status_name"] is None and v["is_final"] is False
    assert {
        ("job_versions", "gpu_num", "not_a_number"),
        ("job_versions", "status", "wrong_type"),
        ("job_versions", "create_time", "not_a_number"),
        ("job_versions", "engine_id", "wrong_type"),
        ("job_versions", "job_name", "wrong_type"),
        ("job_versions", "duration", "out_of_range"),
        ("job_versions", "start_time", "out_of_range"),
    } <= _issues(wh_dir)
    assert rows(wh_dir, "SELECT raw_value FROM field_issues WHERE field = 'status'") == [('{"code":10}',)]


def test_lossless_coercions_keep_the_value_and_say_so(wh_dir, seed_bytes):
    land(wh_dir, [_payload(seed_bytes, gpu_num="4", worker_server_num=2.0, core=16, cpu=64.5)])
    (v,) = dicts(wh_dir, "SELECT gpu_num, worker_server_num, core, cpu FROM job_versions")
    assert v == {"gpu_num": 4, "worker_server_num": 2, "core": "16", "cpu": "64.5"}
    assert {("job_versions", "gpu_num", "coerced_from_string"),
            ("job_versions", "worker_server_num", "coerced_from_float")} == _issues(wh_dir)


def test_nulls_everywhere_keep_the_row_without_issues(wh_dir, seed_bytes):
    payload = {k: None for k in orjson.loads(seed_bytes)}
    payload.update(job_id=1, version_id=2, is_success=True)
    land(wh_dir, [orjson.dumps(payload)])
    (v,) = dicts(wh_dir, "SELECT * FROM job_versions")
    assert v["job_name"] is None and v["status"] is None and v["total_recall"] is None
    assert _issues(wh_dir) == set()
    for table in ("parameters", "data_sources", "class_metrics", "system_metric_samples", "volumes"):
        assert rows(wh_dir, f"SELECT count(*) FROM {table}") == [(0,)], table


def test_unknown_fields_are_reported_not_lost(wh_dir, seed_bytes):
    payload = orjson.loads(seed_bytes)
    payload["brand_new_field"] = {"x": 1}
    payload["parameter"][0]["unit"] = "s"
    payload["volumes"][0]["nfs"]["mode"] = "rw"
    land(wh_dir, [orjson.dumps(payload)])
    assert _issues(wh_dir) == {
        ("job_versions", "brand_new_field", "unknown_field"),
        ("parameters", "parameter[0].unit", "unknown_field"),
        ("volumes", "volumes[0].nfs.mode", "unknown_field"),
    }
    assert rows(wh_dir, "SELECT raw_value FROM field_issues WHERE field = 'brand_new_field'") == [('{"x":1}',)]


def test_non_json_model_metric_list_keeps_the_version(wh_dir, seed_bytes):
    land(wh_dir, [_payload(seed_bytes, model_metric_list="{not json")])
    assert rows(wh_dir, "SELECT total_recall FROM job_versions") == [(None,)]
    assert rows(wh_dir, "SELECT count(*) FROM class_metrics") == [(0,)]
    assert rows(wh_dir, "SELECT table_name, field, raw_value, problem FROM field_issues") == [
        ("class_metrics", "model_metric_list", "{not json", "invalid_json")]


def test_model_metric_list_as_object_is_accepted(wh_dir, seed_bytes):
    metrics = orjson.loads(orjson.loads(seed_bytes)["model_metric_list"])
    land(wh_dir, [_payload(seed_bytes, model_metric_list=metrics)])
    assert rows(wh_dir, "SELECT class_name, recall FROM class_metrics") == [("0", 0.005833)]


def test_system_metric_list_as_string_with_bad_samples(wh_dir, seed_bytes):
    metrics = {"cpuUsage": ["1.5", "abc", 2, None], "gpuMemUsage": ["7"], "interval": 30, "weird": "x"}
    land(wh_dir, [_payload(seed_bytes, system_metric_list=orjson.dumps(metrics).decode())])
    assert rows(wh_dir, "SELECT metric, sample_index, value FROM system_metric_samples ORDER BY ALL") == [
        ("cpuUsage", 0, 1.5), ("cpuUsage", 1, None), ("cpuUsage", 2, 2.0), ("cpuUsage", 3, None),
        ("gpuMemUsage", 0, 7.0)]
    assert rows(wh_dir, "SELECT system_metric_interval FROM job_versions") == [("30",)]
    assert _issues(wh_dir) == {
        ("system_metric_samples", "system_metric_list.cpuUsage[1]", "not_a_number"),
        ("system_metric_samples", "system_metric_list.weird", "wrong_type"),
    }


def test_list_fields_of_the_wrong_shape(wh_dir, seed_bytes):
    land(wh_dir, [_payload(seed_bytes, parameter="lr=0.1", data_source=[1, {"type": "obs"}],
                           volumes=[{"nfs": {"id": "a", "src_path": "s", "dest_path": "d"}}, {"tape": {}}])])
    assert rows(wh_dir, "SELECT count(*) FROM parameters") == [(0,)]
    assert rows(wh_dir, "SELECT position, type FROM data_sources") == [(1, "obs")]
    assert rows(wh_dir, "SELECT position, volume_type, read_only FROM volumes") == [(0, "nfs", False)]
    assert {("parameters", "parameter", "wrong_type"), ("data_sources", "data_source[0]", "wrong_type"),
            ("volumes", "volumes[1]", "wrong_type"), ("volumes", "volumes[1].tape", "unknown_field")} <= _issues(wh_dir)


def test_parameter_values_keep_their_text(wh_dir, seed_bytes):
    params = [{"label": "lr", "value": 0.01}, {"label": "epochs", "value": 10}, {"label": "name", "value": "resnet"},
              {"label": "flag", "value": True}, {"label": "ratio", "value": "1e-3"}, {"label": "obj", "value": {"a": 1}}]
    land(wh_dir, [_payload(seed_bytes, parameter=params)])
    assert rows(wh_dir, "SELECT label, value, value_number FROM parameters ORDER BY position") == [
        ("lr", "0.01", 0.01), ("epochs", "10", 10.0), ("name", "resnet", None), ("flag", "true", None),
        ("ratio", "1e-3", 0.001), ("obj", None, None)]
    assert ("parameters", "parameter[5].value", "wrong_type") in _issues(wh_dir)


def test_secrets_are_redacted_in_tidy_tables_but_raw_is_exact(wh_dir, seed_bytes):
    body = _payload(seed_bytes, parameter=[{"label": "db_password", "value": "hunter2"},
                                           {"label": "max_tokens", "value": 512}],
                    user_command="python train.py --password=hunter2 --token s3cr3t --lr 0.1")
    land(wh_dir, [body])
    assert rows(wh_dir, "SELECT label, value FROM parameters ORDER BY position") == [
        ("db_password", "***REDACTED***"), ("max_tokens", "512")]
    (command,) = rows(wh_dir, "SELECT user_command FROM job_versions")[0]
    assert "hunter2" not in command and "s3cr3t" not in command and "--lr 0.1" in command
    assert rows(wh_dir, "SELECT payload FROM raw_payloads") == [(body,)]


def test_redaction_can_be_turned_off(wh_dir, seed_bytes):
    body = _payload(seed_bytes, parameter=[{"label": "db_password", "value": "hunter2"}])
    with Warehouse.open(wh_dir, redact=False) as wh:
        wh.land([RawRecord(body=body, project_id="proj1", source="s")])
    assert rows(wh_dir, "SELECT value FROM parameters") == [("hunter2",)]


def test_a_50_mb_payload_loads(wh_dir, seed_bytes):
    payload = json.loads(seed_bytes)
    payload["job_desc"] = "x" * (25 * 1024 * 1024)
    payload["system_metric_list"]["cpuUsage"] = ["1.5"] * (4 * 1024 * 1024)
    body = json.dumps(payload).encode()
    assert len(body) > 50 * 1024 * 1024
    report = land(wh_dir, [body])
    assert report.versions_loaded == 1
    assert rows(wh_dir, "SELECT length(job_desc) FROM job_versions") == [(25 * 1024 * 1024,)]
    assert rows(wh_dir, "SELECT count(*) FROM system_metric_samples WHERE metric = 'cpuUsage'") == [(4 * 1024 * 1024,)]
