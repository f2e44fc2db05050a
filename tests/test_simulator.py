"""The simulator: realistic payloads, the three endpoints over real HTTP, auth, the clock, faults."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
import requests

from pipelines.modelarts.auth import sign
from pipelines.modelarts.simulator import (
    PAYLOAD_FAULTS, TRANSIENT_FAULTS, SimulatorServer, TransientFaults, World, generate_version, iter_corpus, serve,
)
from warehouse.statuses import FINAL_STATUSES

ROOT = Path(__file__).resolve().parents[1]


def _jobs_url(sim, project_id, **query):
    text = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{sim.url}/v1/{project_id}/training-jobs" + (f"?{text}" if text else "")


# -- generator ---------------------------------------------------------------------
def test_generation_is_deterministic():
    assert list(iter_corpus(20, seed=7)) == list(iter_corpus(20, seed=7))
    assert list(iter_corpus(20, seed=7)) != list(iter_corpus(20, seed=8))
    assert generate_version(3, "p", 1, 2) == generate_version(3, "p", 1, 2)


def test_corpus_has_the_shapes_and_quirks_of_the_real_api():
    payloads = [orjson.loads(body) for body in iter_corpus(600, seed=1)]
    sizes = [len(orjson.dumps(p)) for p in payloads]
    assert 5_500 <= statistics.mean(sizes) <= 7_700  # ~6.6 KB on average

    samples, metric_names, string_metrics = [], Counter(), 0
    for p in payloads:
        metrics = p["system_metric_list"]
        if isinstance(metrics, str):
            string_metrics += 1
            metrics = orjson.loads(metrics)
        assert isinstance(metrics, dict)
        arrays = {k: v for k, v in metrics.items() if k != "interval"}
        metric_names.update(arrays.keys())
        samples.append(sum(len(v) for v in arrays.values()))
        for values in arrays.values():
            assert all(isinstance(x, str) and float(x) >= 0 for x in values)  # numeric strings
    assert 450 <= statistics.mean(samples) <= 700  # ~570 samples per payload
    assert {"cpuUsage", "memUsage", "gpuUtil", "gpuMemUsage"} <= set(metric_names)
    assert 0 < string_metrics < len(payloads) * 0.15  # usually an object, sometimes a string

    completed = [p for p in payloads if p["status"] == 10]
    assert all(isinstance(p["model_metric_list"], str) for p in payloads)
    document = orjson.loads(completed[0]["model_metric_list"])
    assert len(document["metric"]) >= 2 and "total_metric_values" in document["total_metric"]

    values = [item["value"] for p in payloads for item in p["parameter"]]
    assert any(isinstance(v, (int, float)) for v in values) and any(isinstance(v, str) for v in values)
    assert statistics.mean(len(p["parameter"]) for p in payloads) >= 8
    assert {len(p["data_source"]) for p in payloads} == {0, 1, 2, 3}
    assert {len(p["volumes"]) for p in payloads} == {0, 1, 2, 3}
    kinds = {next(iter(v)) for p in payloads for v in p["volumes"]}
    assert kinds == {"nfs", "host_path"}
    assert any(isinstance(p["core"], int) for p in payloads) and any(isinstance(p["core"], str) for p in payloads)

    statuses = Counter(p["status"] for p in payloads)
    assert statuses.most_common(1)[0][0] == 10
    assert any(s not in FINAL_STATUSES for s in statuses) and len(statuses) >= 8


def _arrays_and_interval(payload: dict) -> tuple[dict, int | None]:
    metrics = payload["system_metric_list"]
    metrics = orjson.loads(metrics) if isinstance(metrics, str) else metrics
    return {k: v for k, v in metrics.items() if k != "interval"}, metrics.get("interval")


def _assert_samples_match_duration(payload: dict) -> None:
    arrays, interval = _arrays_and_interval(payload)
    if not arrays:
        return
    expected = payload["duration"] / 60_000 / interval  # the interval is in minutes (docs/analysis.md)
    for values in arrays.values():
        assert abs(len(values) - expected) <= max(1.0, 0.1 * expected), (len(values), expected, interval)


def test_samples_are_the_duration_divided_by_the_interval():
    payloads = [orjson.loads(body) for body in iter_corpus(300, seed=3)]
    for p in payloads:
        _assert_samples_match_duration(p)
    assert len({_arrays_and_interval(p)[1] for p in payloads if _arrays_and_interval(p)[0]}) >= 4
    world = World(jobs=40, seed=11, running_share=0.5)
    keys = [t.key for t in world.truth()]
    running = [k for k in keys if not world.payload(*k)["status"] in FINAL_STATUSES]
    assert running
    world.advance(6 * 3600, new_versions=0, new_jobs=0)  # running versions ran on: their samples follow
    for key in keys:
        _assert_samples_match_duration(world.payload(*key))


def test_corpus_is_the_same_for_the_same_seed_so_benchmarks_compare_like_with_like():
    # (its speed is benchmarks/ business: make_corpus.py prints it)
    first, again = list(iter_corpus(300, seed=2)), list(iter_corpus(300, seed=2))
    assert len(first) == 300 and first == again
    assert list(iter_corpus(300, seed=3)) != first


# -- endpoints -----------------------------------------------------------------------
def test_job_list_pages_with_the_server_cap_and_totals():
    world = World(jobs=23, seed=4)
    pid = world.project_ids[0]
    with SimulatorServer(world, page_cap=10) as sim:
        seen = []
        for page in (1, 2, 3, 4):
            data = requests.get(_jobs_url(sim, pid, per_page=50, page=page, sortBy="create_time", order="asc")).json()
            assert data["is_success"] is True and data["job_total_count"] == 23
            seen += [j["job_id"] for j in data["jobs"]]
            assert len(data["jobs"]) <= 10  # asked for 50, capped at 10
        assert len(seen) == len(set(seen)) == 23
        bad = requests.get(_jobs_url(sim, pid, per_page=0))
        assert bad.status_code == 400 and bad.json()["error_code"] == "ModelArts.0101"
        assert sim.counts["job_list"] == 5


def test_versions_list_and_detail_agree_and_have_the_documented_differences():
    world = World(jobs=3, versions_per_job=(4, 4), seed=5)
    pid = world.project_ids[0]
    with SimulatorServer(world, page_cap=3) as sim:
        job = requests.get(_jobs_url(sim, pid)).json()["jobs"][0]
        base = f"{sim.url}/v1/{pid}/training-jobs/{job['job_id']}/versions"
        everything = requests.get(base).json()  # page=0 (default): no paging
        assert everything["version_count"] == 4 and len(everything["versions"]) == 4
        first = requests.get(base + "?per_page=10&page=1").json()["versions"]
        assert len(first) == 3  # capped
        item = first[0]
        assert item["version_id"] == job["version_id"]  # newest first; the job list names the latest
        assert "spec_code" not in item and isinstance(item["system_metric_list"], str)
        detail = requests.get(f"{base}/{item['version_id']}").json()
        assert detail["is_success"] is True and "spec_code" in detail
        assert detail["status"] == item["status"] and detail["create_time"] == item["create_time"]
        missing = requests.get(f"{base}/1")
        assert missing.status_code == 400 and missing.json()["error_code"] == "ModelArts.2775"
        assert sim.detail_requests == [(pid, job["job_id"], item["version_id"]), (pid, job["job_id"], 1)]


def test_unknown_project_and_unknown_path():
    with serve(World(jobs=1)) as url:
        unknown = requests.get(f"{url}/v1/not-a-project/training-jobs")
        assert unknown.status_code == 403 and unknown.json()["error_code"] == "ModelArts.0210"
        nothing = requests.get(f"{url}/v2/whatever")
        assert nothing.status_code == 404 and nothing.json()["error_code"] == "APIG.0101"


# -- auth ------------------------------------------------------------------------------
def test_token_is_checked_when_configured():
    world = World(jobs=1)
    url = None
    with SimulatorServer(world, token="s3cret") as sim:
        url = _jobs_url(sim, world.project_ids[0])
        assert requests.get(url).json()["error_code"] == "ModelArts.0201"
        wrong = requests.get(url, headers={"X-Auth-Token": "nope"})
        assert wrong.status_code == 401 and wrong.json()["error_code"] == "ModelArts.0203"
        assert requests.get(url, headers={"X-Auth-Token": "s3cret"}).status_code == 200


def test_iam_password_flow_issues_expiring_project_scoped_tokens():
    world = World(projects=["p-one", "p-two"], jobs=1)
    with SimulatorServer(world, iam_user=("alice", "pw", "acme"), token_ttl=3600) as sim:
        def login(password="pw", project="p-one"):
            body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": "alice", "password": password, "domain": {"name": "acme"}}}},
                "scope": {"project": {"id": project}}}}
            return requests.post(f"{sim.url}/v3/auth/tokens", json=body)

        assert login(password="bad").status_code == 401
        resp = login()
        assert resp.status_code == 201
        token = resp.headers["X-Subject-Token"]
        expires = datetime.fromisoformat(resp.json()["token"]["expires_at"].replace("Z", "+00:00"))
        assert 3500 < (expires - datetime.now(timezone.utc)).total_seconds() <= 3600
        headers = {"X-Auth-Token": token}
        assert requests.get(_jobs_url(sim, "p-one"), headers=headers).status_code == 200
        other = requests.get(_jobs_url(sim, "p-two"), headers=headers)
        assert other.status_code == 403 and other.json()["error_code"] == "ModelArts.0210"
        sim.expire_tokens()
        expired = requests.get(_jobs_url(sim, "p-one"), headers=headers)
        assert expired.status_code == 401 and expired.json()["error_code"] == "ModelArts.0202"
        assert sim.counts["iam"] == 2


def test_aksk_signatures_are_verified():
    world = World(jobs=1)
    with SimulatorServer(world, aksk=("AKSIM", "sk-sim")) as sim:
        url = _jobs_url(sim, world.project_ids[0], per_page=5, page=1)
        assert requests.get(url, headers=sign("GET", url, "AKSIM", "sk-sim")).status_code == 200
        wrong_sk = requests.get(url, headers=sign("GET", url, "AKSIM", "other"))
        assert wrong_sk.status_code == 403 and wrong_sk.json()["error_code"] == "ModelArts.0206"
        other_url = _jobs_url(sim, world.project_ids[0], per_page=6, page=1)  # signed one URL, sent another
        assert requests.get(other_url, headers=sign("GET", url, "AKSIM", "sk-sim")).status_code == 403
        old = datetime(2020, 1, 1, tzinfo=timezone.utc)
        assert requests.get(url, headers=sign("GET", url, "AKSIM", "sk-sim", when=old)).status_code == 403


# -- the clock ---------------------------------------------------------------------------
def test_advancing_the_clock_finishes_versions_and_adds_new_ones():
    world = World(jobs=30, seed=6, running_share=0.5)
    before = {t.key: t for t in world.truth()}
    running = {k for k, t in before.items() if not t.is_final}
    assert running
    changes = world.advance(3600, new_versions=4, new_jobs=2)
    after = {t.key: t for t in world.truth()}
    assert set(changes.new) == set(after) - set(before) and len(changes.new) == 6
    assert set(changes.finished) | set(changes.still_running) == running
    assert all(after[k].is_final for k in changes.finished)
    assert all(not after[k].is_final for k in changes.new)
    final = world.finish_all()
    assert set(final.finished) == {k for k, t in after.items() if not t.is_final} and not final.new
    assert all(t.is_final for t in world.truth())


def test_a_running_version_is_served_with_its_new_status_after_it_finishes():
    world = World(jobs=10, seed=8, running_share=1.0)
    with SimulatorServer(world) as sim:
        pid, job_id, version_id = next(t.key for t in world.truth() if not t.is_final)
        url = f"{sim.url}/v1/{pid}/training-jobs/{job_id}/versions/{version_id}"
        assert requests.get(url).json()["status"] not in FINAL_STATUSES
        world.finish_all()
        assert requests.get(url).json()["status"] in FINAL_STATUSES


# -- faults --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", TRANSIENT_FAULTS)
def test_each_transient_fault_happens_then_the_path_recovers(kind):
    world = World(jobs=1)
    faults = TransientFaults(rate=1.0, kinds=(kind,), max_per_path=1, retry_after=3, slow_seconds=0.6)
    with SimulatorServer(world, faults=faults) as sim:
        url = _jobs_url(sim, world.project_ids[0])
        session = requests.Session()
        if kind in ("drop", "truncated"):
            with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
                session.get(url, timeout=5)
        elif kind == "slow":
            with pytest.raises(requests.ReadTimeout):
                session.get(url, timeout=0.2)
        else:
            resp = session.get(url, timeout=5)
            assert resp.status_code == {"throttle": 429, "server_error": 500, "unavailable": 503}[kind]
            if kind == "throttle":
                assert resp.headers["Retry-After"] == "3"
        assert requests.get(url, timeout=5).json()["is_success"] is True  # max_per_path=1: served now
        assert sim.fault_counts == Counter({kind: 1})


def test_transient_faults_are_a_pure_function_of_seed_and_path():
    faults = TransientFaults(rate=0.3, seed=11)
    draws = [faults.draw(f"/p/{n}", 1, 0) for n in range(400)]
    assert draws == [faults.draw(f"/p/{n}", 1, 0) for n in range(400)]
    assert 80 < sum(d is not None for d in draws) < 160
    assert set(d for d in draws if d) == set(TRANSIENT_FAULTS)


def test_payload_faults_are_in_the_ground_truth_and_in_the_bodies():
    world = World(jobs=60, seed=9, payload_fault_rate=0.5)
    truth = world.truth()
    faulty = [t for t in truth if t.faults]
    assert {k for t in faulty for k in t.faults} == set(PAYLOAD_FAULTS)
    for t in faulty:
        body = world.detail(*t.key)
        kind = t.faults[0]
        if kind == "invalid_json":
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(body)
            assert t.fault_note.startswith("invalid_json:")
            continue
        payload = orjson.loads(body)
        if kind == "not_success":
            assert payload["is_success"] is False and payload["error_code"].startswith("ModelArts.")
        elif kind == "wrong_types":
            for field in t.fault_note.split(";")[0].split(":")[1].split(","):
                clean = orjson.loads(world.version_items(t.project_id, t.job_id)[0])  # list items stay clean
                assert field in payload and (field not in clean or type(payload[field]) is not type(clean[field])
                                             or payload[field] != clean[field])
        elif kind == "unknown_fields":
            names = t.fault_note.split(";")[0].split(":")[1].split(",")
            assert all(n in payload for n in names if "[" not in n)
    clean = [t for t in truth if not t.faults]
    assert all(orjson.loads(world.detail(*t.key))["is_success"] is True for t in clean[:20])


# -- command line ----------------------------------------------------------------------------
def test_simulate_command_serves_until_its_duration(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli_sync", "simulate", "--port", "0", "--jobs", "3", "--token", "tk",
         "--duration", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("ModelArts simulator listening on http://127.0.0.1:")
        url = first.split()[-1]
        projects = proc.stdout.readline()
        pid = projects.split(";")[0].split()[-1]
        resp = requests.get(f"{url}/v1/{pid}/training-jobs", headers={"X-Auth-Token": "tk"}, timeout=5)
        assert resp.json()["job_total_count"] == 3
        assert "tk" not in proc.stdout.readline()  # the hint line never echoes the token
    finally:
        proc.terminate()
        proc.wait(timeout=10)
