"""The client over real HTTP against the simulator: auth, retries per fault kind, errors, redirects, rates."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
import requests

from pipelines.modelarts.auth import AkSk, IamPassword, StaticToken
from pipelines.modelarts.client import ModelArtsClient, Response, read_list
from pipelines.modelarts.errors import ApiError, AuthError, EndpointError, ProjectError
from pipelines.modelarts.ratelimit import RateLimiter
from pipelines.modelarts.retry import RetryPolicy
from pipelines.modelarts.simulator import TRANSIENT_FAULTS, SimulatorServer, TransientFaults, World

FAST = RetryPolicy(max_retries=3, backoff_base=0.01, backoff_max=0.05)
TOKEN = "tok-0123456789abcdef"


@pytest.fixture(scope="module")
def world():
    return World(jobs=4, versions_per_job=(2, 3), seed=21)


def _client(url, auth=None, **kw):
    kw.setdefault("retry", FAST)
    kw.setdefault("timeout", (2.0, 5.0))
    return ModelArtsClient(url, auth or StaticToken(TOKEN), **kw)


def _first_version(world):
    return next(t.key for t in world.truth())


@contextmanager
def capture_server(status=200, body=b"<html>not an API</html>"):
    """Another host: records the headers of whatever reaches it."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(dict(self.headers.items()))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}", seen  # "localhost": another host name
    finally:
        server.shutdown()
        server.server_close()


# -- auth ----------------------------------------------------------------------------
def test_token_auth_and_the_three_endpoints(world):
    pid, job_id, version_id = _first_version(world)
    with SimulatorServer(world, token=TOKEN) as sim, _client(sim.url) as client:
        jobs = read_list(client, client.list_jobs(pid, page=1, per_page=10), "job list")
        assert len(jobs["jobs"]) == 4
        versions = read_list(client, client.list_versions(pid, job_id, page=1, per_page=10), "version list")
        assert version_id in {v["version_id"] for v in versions["versions"]}
        detail = client.version_detail(pid, job_id, version_id)
        assert detail.status == 200 and orjson.loads(detail.body)["version_id"] == version_id
        record = detail.record()
        assert record.source == f"{sim.url}/v1/{pid}/training-jobs/{job_id}/versions/{version_id}"
        assert (record.kind, record.http_status, record.job_id, record.version_id) == \
            ("version_detail", 200, job_id, version_id)
        assert sum(client.stats.requests.values()) == 3


def test_bad_token_is_one_clear_line_without_the_token(world):
    pid = world.project_ids[0]
    with SimulatorServer(world, token=TOKEN) as sim, _client(sim.url, StaticToken("wrong-token-xyz")) as client:
        with pytest.raises(AuthError) as info:
            client.list_jobs(pid, page=1, per_page=10)
    message = str(info.value)
    assert "ModelArts.0203" in message and "\n" not in message and "wrong-token-xyz" not in message
    assert sim.counts["job_list"] == 1  # a 401 that no refresh can fix is not retried


def test_aksk_signed_requests_pass_the_simulators_verification(world):
    pid, job_id, version_id = _first_version(world)
    with SimulatorServer(world, aksk=("AKTEST", "SKTEST-SECRET")) as sim:
        with _client(sim.url, AkSk("AKTEST", "SKTEST-SECRET")) as client:
            read_list(client, client.list_jobs(pid, page=1, per_page=3), "job list")
            read_list(client, client.list_versions(pid, job_id, page=1, per_page=5), "version list")
            detail = client.version_detail(pid, job_id, version_id)
            assert detail.status == 200
            assert "SKTEST" not in detail.record().source and "Signature" not in detail.record().source
        with _client(sim.url, AkSk("AKTEST", "not-the-secret")) as client:
            with pytest.raises(AuthError, match="ModelArts.0206"):
                client.list_jobs(pid, page=1, per_page=3)
        assert sim.status_counts[200] == 3


def test_expired_iam_token_is_refreshed_once_and_the_request_retried(world):
    pid = world.project_ids[0]
    with SimulatorServer(world, iam_user=("bob", "pw", "acme")) as sim:
        auth = IamPassword(sim.url, "bob", "pw", "acme")
        with _client(sim.url, auth) as client:
            assert client.list_jobs(pid, page=1, per_page=5).status == 200
            sim.expire_tokens()  # the server's clock ran ahead of what expires_at promised
            assert client.list_jobs(pid, page=1, per_page=5).status == 200
            assert client.stats.refreshes == 1 and client.stats.retries == 1
        assert sim.counts["iam"] == 2 and sim.status_counts[401] == 1


def test_a_static_token_that_expired_is_final(world):
    pid = world.project_ids[0]
    with SimulatorServer(world, iam_user=("bob", "pw", "acme")) as sim:
        token = IamPassword(sim.url, "bob", "pw", "acme").token(pid)
        sim.expire_tokens()
        with _client(sim.url, StaticToken(token)) as client, pytest.raises(AuthError, match="ModelArts.0202"):
            client.list_jobs(pid, page=1, per_page=5)


# -- retries ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", TRANSIENT_FAULTS)
def test_each_transient_fault_is_retried_until_the_answer_comes(world, kind):
    pid, job_id, version_id = _first_version(world)
    faults = TransientFaults(rate=1.0, kinds=(kind,), max_per_path=2, retry_after=0, slow_seconds=0.8)
    with SimulatorServer(world, faults=faults) as sim, _client(sim.url, timeout=(1.0, 0.3)) as client:
        detail = client.version_detail(pid, job_id, version_id)
        page = client.list_jobs(pid, page=1, per_page=10)
    assert detail.status == 200 and orjson.loads(detail.body)["version_id"] == version_id
    assert detail.retries == 2 and page.retries == 2
    assert read_list(client, page, "job list")["job_total_count"] == 4
    assert sim.fault_counts[kind] == 4 and client.stats.retries == 4


def test_retry_after_is_honoured():
    world = World(jobs=1)
    faults = TransientFaults(rate=1.0, kinds=("throttle",), max_per_path=1, retry_after=1)
    with SimulatorServer(world, faults=faults) as sim, _client(sim.url) as client:
        started = time.monotonic()
        assert client.list_jobs(world.project_ids[0], page=1, per_page=5).status == 200
        assert time.monotonic() - started >= 1.0


def test_when_retries_run_out_a_detail_returns_the_last_answer_and_a_list_raises(world):
    pid, job_id, version_id = _first_version(world)
    faults = TransientFaults(rate=1.0, kinds=("unavailable",))
    with SimulatorServer(world, faults=faults) as sim, _client(sim.url, retry=RetryPolicy(2, 0.01, 0.02)) as client:
        detail = client.version_detail(pid, job_id, version_id)
        assert (detail.status, detail.retries) == (503, 2)
        assert detail.record().http_status == 503  # landed as is: the warehouse rejects it
        with pytest.raises(ApiError, match="HTTP 503.*after 2 retries"):
            read_list(client, client.list_jobs(pid, page=1, per_page=5), "job list")
    assert sim.counts["version_detail"] == 3


def test_when_the_connection_keeps_dropping_there_is_no_answer(world):
    pid, job_id, version_id = _first_version(world)
    faults = TransientFaults(rate=1.0, kinds=("drop",))
    with SimulatorServer(world, faults=faults) as sim, _client(sim.url, retry=RetryPolicy(1, 0.01, 0.02)) as client:
        detail = client.version_detail(pid, job_id, version_id)
        assert detail.status is None and detail.error == "the connection closed without an answer"
        with pytest.raises(EndpointError, match="closed without an answer"):
            read_list(client, client.list_jobs(pid, page=1, per_page=5), "job list")


def test_other_4xx_answers_are_not_retried(world):
    pid, job_id, _ = _first_version(world)
    with SimulatorServer(world) as sim, _client(sim.url) as client:
        missing = client.version_detail(pid, job_id, 1)
        assert (missing.status, missing.retries) == (400, 0)
        assert sim.counts["version_detail"] == 1


def test_is_success_false_is_landed_for_details_and_raised_for_lists():
    world = World(jobs=2, seed=3, payload_fault_rate=1.0, payload_faults=("not_success",))
    pid, job_id, version_id = _first_version(world)
    with SimulatorServer(world) as sim, _client(sim.url) as client:
        detail = client.version_detail(pid, job_id, version_id)
    assert detail.status == 200 and orjson.loads(detail.body)["is_success"] is False
    page = Response("u", "job_list", pid, 200, b'{"is_success": false, "error_code": "ModelArts.0105", '
                                                b'"error_msg": "Error string"}', 0)
    with pytest.raises(ApiError, match="ModelArts.0105: Error string") as info:
        read_list(client, page, "job list")
    assert info.value.error_code == "ModelArts.0105"


# -- wrong endpoint, project, redirect ---------------------------------------------------------
def test_a_redirect_to_another_host_never_carries_the_token(world):
    pid = world.project_ids[0]
    with capture_server() as (elsewhere, seen):
        with SimulatorServer(world, token=TOKEN, redirect_to=elsewhere) as sim:
            # what plain requests would do: follow, and hand the token to the other host
            requests.get(f"{sim.url}/v1/{pid}/training-jobs", headers={"X-Auth-Token": TOKEN}, timeout=5)
            assert seen and seen[0].get("X-Auth-Token") == TOKEN
            seen.clear()
            for auth in (StaticToken(TOKEN), AkSk("AK", "SK")):
                with _client(sim.url, auth) as client, pytest.raises(EndpointError) as info:
                    client.list_jobs(pid, page=1, per_page=5)
                assert "redirect" in str(info.value) and TOKEN not in str(info.value)
        assert seen == []  # our client sent nothing to the other host


def test_unreachable_endpoint_is_one_clear_line():
    with capture_server() as (url, _):
        dead = url  # the port is closed once the server stops
    with _client(dead.replace("localhost", "127.0.0.1"), retry=RetryPolicy(1, 0.01, 0.02)) as client:
        with pytest.raises(EndpointError) as info:
            read_list(client, client.list_jobs("p", page=1, per_page=5), "job list")
    assert "connection refused" in str(info.value) and "\n" not in str(info.value)


def test_not_a_modelarts_endpoint(world):
    with SimulatorServer(world) as sim, _client(sim.url + "/wrong-prefix") as client:
        with pytest.raises(EndpointError, match="not a ModelArts v1 endpoint.*APIG.0101"):
            read_list(client, client.list_jobs("p", page=1, per_page=5), "job list")
    with capture_server(200, b"<html>a login page</html>") as (url, _), _client(url) as client:
        with pytest.raises(EndpointError, match="not JSON"):
            read_list(client, client.list_jobs("p", page=1, per_page=5), "job list")


def test_unknown_project_is_a_project_error(world):
    with SimulatorServer(world, token=TOKEN) as sim, _client(sim.url) as client:
        with pytest.raises(ProjectError, match="project nope is unknown.*ModelArts.0210"):
            client.list_jobs("nope", page=1, per_page=5)


@pytest.mark.parametrize("bad", ["modelarts.example.com", "https://user:pw@modelarts.example.com",
                                 "https://h.example.com/?x=1"])
def test_bad_endpoint_urls_are_refused_without_echoing_credentials(bad):
    with pytest.raises(EndpointError) as info:
        _client(bad)
    assert "pw" not in str(info.value)


# -- transport settings --------------------------------------------------------------------------
def test_tls_is_verified_by_default_and_turning_it_off_warns():
    with _client("https://modelarts.example.com") as client:
        assert client.session.verify is True
    with pytest.warns(UserWarning, match="DISABLED"):
        insecure = _client("https://modelarts.example.com", verify=False)
    assert insecure.session.verify is False
    insecure.close()


def test_connection_pool_is_sized_to_the_concurrency():
    with _client("https://modelarts.example.com", concurrency=16) as client:
        adapter = client.session.get_adapter("https://modelarts.example.com")
        assert adapter._pool_maxsize >= 16


def test_rate_limit_spaces_requests_across_threads(world):
    pid = world.project_ids[0]
    with SimulatorServer(world) as sim, _client(sim.url, rate=40, concurrency=4) as client:
        started = time.monotonic()
        threads = [threading.Thread(target=lambda: [client.list_jobs(pid, page=1, per_page=5) for _ in range(6)])
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
    # 24 requests at 40/s with a burst of 4: at least (24 - 4) / 40 = 0.5 s
    assert elapsed >= 0.45 and sim.counts["job_list"] == 24


def test_token_bucket_pause_holds_every_caller():
    limiter = RateLimiter(None)
    assert limiter.acquire() == 0
    limiter.pause_until(time.monotonic() + 0.2)
    assert limiter.acquire() >= 0.15
