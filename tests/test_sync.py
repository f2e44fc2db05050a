"""Sync end to end: the real client over real HTTP against the simulator, into a real warehouse."""
from __future__ import annotations

import math
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
from click.testing import CliRunner

from pipelines.cli_sync import sync as sync_command
from pipelines.modelarts.auth import AkSk, IamPassword, StaticToken
from pipelines.modelarts.errors import SyncError
from pipelines.modelarts.retry import RetryPolicy
from pipelines.modelarts.simulator import TRANSIENT_FAULTS, SimulatorServer, TransientFaults, World
from pipelines.modelarts.streaming import bounded_map
from pipelines.modelarts.sync import Target, sync_projects
from warehouse.store import Warehouse

TOKEN = "sync-test-token-5f2e"
FAST = RetryPolicy(max_retries=3, backoff_base=0.01, backoff_max=0.05)


@pytest.fixture
def wh(tmp_path):
    with Warehouse.open(tmp_path / "wh") as warehouse:
        yield warehouse


def _sync(wh, sim, projects=None, auth=None, **options):
    options.setdefault("retry", FAST)
    options.setdefault("concurrency", 4)
    options.setdefault("per_page", 50)
    options.setdefault("timeout", (2.0, 5.0))
    targets = [Target(sim.url, p) for p in (projects or sim.world.project_ids)]
    return sync_projects(wh, targets, auth or StaticToken(TOKEN), **options)


def _stored(wh, project_id):
    return wh.version_states(project_id)


def _truth(world):
    return {(t.job_id, t.version_id): t for t in world.truth()}


def _raw_counts(wh):
    return dict(wh.con.execute("SELECT kind, count(*) FROM raw_payloads GROUP BY kind").fetchall())


def test_full_sync_pages_lists_lands_every_body_and_stores_every_version(wh):
    world = World(jobs=25, versions_per_job=(1, 12), seed=31)
    pid = world.project_ids[0]
    calls = []
    with SimulatorServer(world, token=TOKEN, page_cap=7) as sim:  # asks for 50 a page, gets 7
        report = _sync(wh, sim, progress=lambda *args: calls.append(args))
    truth = _truth(world)
    project = report.projects[0]
    assert report.ok and project.jobs == 25
    assert report.listed == report.fetched == len(truth) and report.skipped_final == 0
    assert project.versions_loaded == len(truth) and report.rejected == 0 and report.retried == 0
    assert _stored(wh, pid) == {key: t.is_final for key, t in truth.items()}
    per_job = Counter(job for job, _ in truth)
    assert sim.counts["job_list"] == math.ceil(25 / 7)
    assert sim.counts["version_list"] == sum(math.ceil(n / 7) for n in per_job.values())
    assert sim.counts["version_detail"] == len(truth) and project.requests == sum(sim.counts.values())
    assert _raw_counts(wh) == {"job_list": sim.counts["job_list"], "version_list": sim.counts["version_list"],
                               "version_detail": len(truth)}  # every body landed, list pages too
    assert calls[0] == (pid, 0, len(truth)) and calls[-1] == (pid, len(truth), len(truth))
    assert [c[1] for c in calls] == sorted(c[1] for c in calls)


def test_rerun_with_nothing_changed_makes_no_detail_call(wh):
    world = World(jobs=20, seed=32, running_share=0.0)  # everything final
    with SimulatorServer(world, token=TOKEN, page_cap=10) as sim:
        first = _sync(wh, sim)
        sim.reset_counts()
        again = _sync(wh, sim)
    assert first.fetched == world.version_count()
    assert sim.counts == Counter({"job_list": 2})  # the job list shows every job unchanged
    assert again.fetched == 0 and again.skipped_final == again.listed == world.version_count()
    assert again.projects[0].jobs_unchanged == 20


def test_after_the_clock_moves_exactly_the_changed_versions_are_fetched(wh):
    world = World(jobs=30, seed=33, running_share=0.5)
    pid = world.project_ids[0]
    with SimulatorServer(world, token=TOKEN) as sim:
        _sync(wh, sim)
        not_final = {key for key, final in _stored(wh, pid).items() if not final}
        assert not_final

        sim.reset_counts()
        changes = world.advance(3600, new_versions=3, new_jobs=2)
        second = _sync(wh, sim)
        fetched = {(job, version) for _, job, version in sim.detail_requests}
        new = {(job, version) for _, job, version in changes.new}
        assert len(new) == 5 and fetched == not_final | new
        assert second.fetched == len(fetched) and second.skipped_final == world.version_count() - len(fetched)

        sim.reset_counts()
        still_open = {key for key, final in _stored(wh, pid).items() if not final}
        world.finish_all()
        third = _sync(wh, sim)
        assert {(job, version) for _, job, version in sim.detail_requests} == still_open
        assert all(_stored(wh, pid).values()) and third.fetched == len(still_open)

        sim.reset_counts()
        _sync(wh, sim)
        assert sim.counts["version_detail"] == 0 and sim.counts["version_list"] == 0
    assert _stored(wh, pid) == {key: t.is_final for key, t in _truth(world).items()}


def test_aksk_sync(wh):
    world = World(jobs=8, seed=34)
    with SimulatorServer(world, aksk=("AKSYNC", "SKSYNC")) as sim:
        report = _sync(wh, sim, auth=AkSk("AKSYNC", "SKSYNC"))
    assert report.ok and report.fetched == world.version_count()
    assert sim.status_counts[403] == 0


def test_iam_token_renewed_when_the_server_says_it_expired(wh):
    world = World(jobs=8, seed=35)
    with SimulatorServer(world, iam_user=("carol", "pw", "acme")) as sim:
        auth = IamPassword(sim.url, "carol", "pw", "acme")
        _sync(wh, sim, auth=auth)
        sim.expire_tokens()
        world.advance(60, new_versions=2, new_jobs=0)
        report = _sync(wh, sim, auth=auth)
    assert report.ok and report.fetched >= 2
    assert sim.counts["iam"] == 2 and sim.status_counts[401] == 1  # one 401, one login, then all fine


def test_every_transient_fault_kind_is_retried_and_nothing_is_lost(wh):
    world = World(jobs=30, seed=36)
    faults = TransientFaults(rate=0.3, seed=5, max_per_path=2, retry_after=0, slow_seconds=0.9)
    with SimulatorServer(world, token=TOKEN, faults=faults, page_cap=20) as sim:
        report = _sync(wh, sim, timeout=(1.0, 0.4), concurrency=6, retry=RetryPolicy(5, 0.01, 0.05))
    assert set(sim.fault_counts) == set(TRANSIENT_FAULTS)
    # at least one retry per fault (a busy machine may add a timeout of its own)
    assert report.ok and report.failed == 0 and report.retried >= sum(sim.fault_counts.values())
    assert report.fetched == world.version_count() == len(_stored(wh, world.project_ids[0]))


def test_payload_faults_are_landed_then_rejected_or_flagged_and_the_ledger_balances(wh):
    world = World(jobs=40, seed=37, payload_fault_rate=0.4)
    pid = world.project_ids[0]
    with SimulatorServer(world, token=TOKEN) as sim:
        report = _sync(wh, sim)
    truth = _truth(world)
    unloadable = {key for key, t in truth.items() if {"invalid_json", "not_success"} & set(t.faults)}
    assert unloadable and report.rejected == len(unloadable)
    rejected = set(wh.con.execute("SELECT job_id, version_id FROM rejected_payloads").fetchall())
    stored = set(_stored(wh, pid))
    assert rejected == unloadable and stored == set(truth) - unloadable  # every version: stored or rejected
    flagged = {key for key, t in truth.items() if {"wrong_types", "unknown_fields"} & set(t.faults)}
    issues = set(wh.con.execute("SELECT DISTINCT job_id, version_id FROM field_issues "
                                "WHERE problem IN ('unknown_field', 'wrong_type', 'not_a_number', "
                                "'coerced_from_string', 'coerced_from_float')").fetchall())
    assert flagged and flagged <= issues


def test_detail_errors_after_retries_are_landed_and_dropped_connections_are_fetched_next_time(wh):
    world = World(jobs=6, seed=38)
    pid = world.project_ids[0]
    total = world.version_count()
    details_only = r"/versions/\d+$"
    with SimulatorServer(world, token=TOKEN, faults=TransientFaults(rate=1.0, kinds=("unavailable",),
                                                                     match=details_only)) as sim:
        unavailable = _sync(wh, sim, retry=RetryPolicy(1, 0.01, 0.02))
        assert unavailable.fetched == total and unavailable.rejected == total  # landed with HTTP 503
        sim.faults = TransientFaults(rate=1.0, kinds=("drop",), match=details_only)
        dropped = _sync(wh, sim, retry=RetryPolicy(1, 0.01, 0.02))
        assert dropped.failed == total and dropped.fetched == 0 and not _stored(wh, pid)
        sim.faults = TransientFaults()
        healed = _sync(wh, sim)
    assert healed.fetched == total and len(_stored(wh, pid)) == total
    statuses = dict(wh.con.execute("SELECT http_status, count(*) FROM raw_payloads WHERE kind = 'version_detail' "
                                   "GROUP BY http_status").fetchall())
    assert statuses == {503: total, 200: total}


def test_bad_credentials_fail_the_project_with_one_clean_line(wh):
    world = World(jobs=3)
    with SimulatorServer(world, token=TOKEN) as sim:
        with pytest.raises(SyncError) as info:
            _sync(wh, sim, auth=StaticToken("not-the-token"))
        report = _sync(wh, sim, auth=StaticToken("not-the-token"), raise_on_error=False)
    assert "ModelArts.0203" in str(info.value) and "\n" not in str(info.value)
    assert "not-the-token" not in str(info.value)
    assert not report.ok and report.projects[0].error and report.fetched == 0


def test_several_projects_and_endpoints_in_one_sync_and_one_bad_project_does_not_stop_the_rest(wh):
    region_a = World(projects=["proj-a1", "proj-a2"], jobs=5, seed=39)
    region_b = World(projects=["proj-b1"], jobs=4, seed=40)
    with SimulatorServer(region_a, token=TOKEN) as sim_a, SimulatorServer(region_b, token=TOKEN) as sim_b:
        targets = [Target(sim_a.url, "proj-a1"), Target(sim_a.url, "proj-a2"), Target(sim_b.url, "nope"),
                   Target(sim_b.url, "proj-b1")]
        with pytest.raises(SyncError) as info:
            sync_projects(wh, targets, StaticToken(TOKEN), retry=FAST, concurrency=4)
    report = info.value.report
    assert [p.project_id for p in report.projects] == ["proj-a1", "proj-a2", "nope", "proj-b1"]
    assert "1 of 4 projects failed: nope: project nope is unknown" in str(info.value)
    for world, pid in ((region_a, "proj-a1"), (region_a, "proj-a2"), (region_b, "proj-b1")):
        assert set(_stored(wh, pid)) == {(t.job_id, t.version_id) for t in world.truth(pid)}


def test_paging_ends_even_when_a_server_ignores_page_and_overstates_its_total(wh):
    """Our own stand-in for a misbehaving gateway: every job-list page is page 1, and the total lies."""
    calls = Counter()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if "/versions" in self.path:
                calls["version_list"] += 1
                body = {"is_success": True, "version_count": 0, "versions": []}
            else:
                calls["job_list"] += 1
                jobs = [{"job_id": n, "version_id": None, "version_count": 0} for n in range(1, 11)]
                body = {"is_success": True, "job_total_count": 50, "jobs": jobs}
            data = orjson.dumps(body)
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        report = sync_projects(wh, [Target(f"http://127.0.0.1:{server.server_address[1]}", "p1")],
                               StaticToken(TOKEN), retry=FAST, per_page=10)
    finally:
        server.shutdown()
        server.server_close()
    project = report.projects[0]
    assert report.ok and project.jobs == 10 and report.fetched == 0
    assert calls["job_list"] == 5  # page 1, then the 4 pages its total suggested, read at once
    assert any("repeated earlier jobs only" in w for w in project.warnings)


def test_streaming_keeps_at_most_buffer_plus_workers_results_waiting():
    produced, consumed, peak = [0], [0], [0]
    lock = threading.Lock()

    def work(item):
        with lock:
            produced[0] += 1
            peak[0] = max(peak[0], produced[0] - consumed[0])
        return item

    results = []
    for outcome in bounded_map(work, range(200), workers=4, buffer=8):
        time.sleep(0.001)  # a slow consumer (the warehouse writing)
        with lock:
            consumed[0] += 1
        results.append(outcome.value)
    assert sorted(results) == list(range(200)) and peak[0] <= 8 + 4 + 1


def test_streaming_stops_its_workers_when_the_consumer_stops():
    started = []
    stream = bounded_map(lambda i: started.append(i) or i, range(10_000), workers=4, buffer=4)
    next(stream)
    stream.close()
    count = len(started)
    time.sleep(0.1)
    assert len(started) == count < 100


# -- the command line ------------------------------------------------------------------
def test_sync_command_prints_a_summary_and_never_the_token(tmp_path):
    world = World(jobs=6, seed=41)
    with SimulatorServer(world, token=TOKEN) as sim:
        runner = CliRunner()
        env = {"MODELARTS_TOKEN": TOKEN, "MODELARTS_ENDPOINT": sim.url, "MODELARTS_PROJECT_ID": world.project_ids[0]}
        ok = runner.invoke(sync_command, ["--warehouse", str(tmp_path / "w"), "--rate", "0"], env=env)
        bad = runner.invoke(sync_command, ["--warehouse", str(tmp_path / "w")],
                            env=dict(env, MODELARTS_TOKEN="bad-tok"))
        unknown = runner.invoke(sync_command, ["--warehouse", str(tmp_path / "w"), "--project-id", "nope"], env=env)
        nothing = runner.invoke(sync_command, ["--warehouse", str(tmp_path / "w")],
                                env=dict(env, MODELARTS_TOKEN="", HUAWEICLOUD_SDK_AK="", MODELARTS_IAM_USER=""))
    assert ok.exit_code == 0, ok.output
    assert f"fetched {world.version_count()}" in ok.output and "skipped as final" in ok.output
    for result in (ok, bad, unknown, nothing):
        assert TOKEN not in result.output and "bad-tok" not in result.output and "Traceback" not in result.output
    for result, needle in ((bad, "ModelArts.0203"), (unknown, "ModelArts.0210"), (nothing, "no credentials")):
        assert result.exit_code == 1
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and needle in errors[0]
