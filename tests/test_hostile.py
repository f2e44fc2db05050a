"""A hostile server, hostile ids and a hostile user: each ends in a clear error or a rejected row,
never a hang, a traceback, a request outside /v1/{project}/training-jobs/..., or a file outside
the warehouse.

The simulator's hostile modes (pipelines/modelarts/simulator/hostile.py) play the server.
A redirect to another host (the token must not follow) is tested in test_client.py.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from ledger import ledger, no_orphans
from pipelines.modelarts.auth import StaticToken
from pipelines.modelarts.client import ModelArtsClient, read_list
from pipelines.modelarts.errors import EndpointError, ProjectError
from pipelines.modelarts.retry import RetryPolicy
from pipelines.modelarts.simulator import Hostile, SimulatorServer, World
from pipelines.modelarts.sync import Target, sync_projects
from test_storage import assert_every_row_is_in_parquet
from warehouse import connect, load
from pipelines.modelarts.records import RawRecord
from warehouse.store import Warehouse

TOKEN = "hostile-token-3c9d"
FAST = RetryPolicy(max_retries=1, backoff_base=0.01, backoff_max=0.02)
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("MODELARTS_", "HUAWEICLOUD_"))}
HOSTILE_PROJECT_IDS = ["../../etc", "..", "a/b", "x' OR '1'='1", 'p"; DROP TABLE job_versions; --', "p;rm -rf ~",
                       "%2e%2e%2f", "p?x=1", "p#f", "p\nq", "p q", "", "é" * 3, "p" * 129]
EXPECTED_FILES = re.compile(r"^(catalog\.sqlite(-wal|-shm)?|\.writer\.lock|"
                            r"data/main/[a-z_]+/ducklake-[0-9a-f-]+(-delete)?\.parquet)$")


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _sync(wh, sim, project_ids=None, **options):
    options.setdefault("retry", FAST)
    options.setdefault("timeout", (1.0, 2.0))
    return sync_projects(wh, [Target(sim.url, p) for p in project_ids or sim.world.project_ids],
                         StaticToken(TOKEN), concurrency=4, raise_on_error=False, **options)


def _cli(*args, env=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          env={**CLEAN_ENV, "MODELARTS_TOKEN": TOKEN, **(env or {})}, timeout=timeout)


def _only_api_paths(sim, project_id: str) -> list[str]:
    """Requests whose path is not one of the three endpoints with plain ids."""
    allowed = re.compile(rf"^GET /v1/{re.escape(project_id)}/training-jobs(/\d+/versions(/\d+)?)?(\?[\w=&.-]*)?$")
    return [target for target in sim.targets if not allowed.match(target)]


# -- hostile ids from the list endpoints ------------------------------------------------------
def test_hostile_job_and_version_ids_in_list_pages_are_skipped_and_never_requested(tmp_path):
    world = World(jobs=8, versions_per_job=(1, 3), seed=81)
    pid = world.project_ids[0]
    outside_before = _files(tmp_path)
    with SimulatorServer(world, token=TOKEN, hostile=Hostile("evil_ids")) as sim, \
            Warehouse.open(tmp_path / "wh") as wh:
        report = _sync(wh, sim)
        project = report.projects[0]
        assert report.ok, project.error
        assert _only_api_paths(sim, pid) == []  # nothing but /v1/{pid}/training-jobs[/<digits>/versions[/<digits>]]
        assert ledger(wh.con, world, pid) == [] and no_orphans(wh.con) == []  # every real version, nothing else
        assert any("without a usable job_id" in w for w in project.warnings)
        assert any("without a usable version_id" in w for w in project.warnings)
        assert "../" not in " ".join(project.warnings)  # the hostile text itself is not echoed
    assert _files(tmp_path) - outside_before == {f"wh/{f}" for f in _files(tmp_path / "wh")}
    assert all(EXPECTED_FILES.match(f) for f in _files(tmp_path / "wh")), _files(tmp_path / "wh")
    assert_every_row_is_in_parquet(tmp_path / "wh")


def test_hostile_ids_through_the_cli_end_cleanly(tmp_path):
    world = World(jobs=4, versions_per_job=(1, 2), seed=82)
    with SimulatorServer(world, token=TOKEN, hostile=Hostile("evil_ids")) as sim:
        done = _cli("sync", "--endpoint", sim.url, "--project-id", world.project_ids[0], "--warehouse",
                    str(tmp_path / "wh"), "--rate", "0", "--retries", "1")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and f"fetched {world.version_count()}" in done.stdout
    assert "warning:" in done.stderr


def test_the_client_refuses_to_build_a_path_from_a_hostile_id():
    client = ModelArtsClient("http://127.0.0.1:9", StaticToken(TOKEN), retry=FAST)
    for bad in ("../x", "1/../2", "1' OR '1'='1", -1, 2**64, 1.0, True, None, "12"):
        with pytest.raises(Exception) as info:
            client.version_detail("proj", bad, 1)
        assert "refusing to request job id" in str(info.value)
        with pytest.raises(Exception, match="refusing to request version id"):
            client.version_detail("proj", 1, bad)
    for bad in HOSTILE_PROJECT_IDS:
        with pytest.raises(ProjectError, match="invalid project id"):
            client.list_jobs(bad, page=1, per_page=1)
    assert client.stats.totals() == (0, 0)  # not one request went out
    client.close()


def test_hostile_ids_inside_a_detail_payload_fall_back_to_the_request_ids(tmp_path):
    """"²".isdigit() is True but int("²") raises; 5,000 digits raise too: both used to crash the load."""
    bodies = []
    for n, evil in enumerate(("²", "١٢٣", "9" * 5000, "../../x", "1' OR '1'='1", 2**64 - 1, {"id": 1})):
        bodies.append(RawRecord(body=orjson.dumps({"job_id": evil, "version_id": evil, "status": 10}),
                                project_id="p1", source=f"http://h/v1/p1/training-jobs/{n}/versions/{n}",
                                job_id=n, version_id=n))
    with Warehouse.open(tmp_path / "wh") as wh:
        report = wh.land(bodies)
        assert report.versions_loaded == len(bodies) and report.rejected == 0
        stored = wh.con.execute("SELECT job_id, version_id FROM job_versions ORDER BY 1").fetchall()
        assert stored == [(n, n) for n in range(len(bodies))]
        flagged = wh.con.execute("SELECT count(DISTINCT version_id) FROM field_issues WHERE field = 'job_id'"
                                 ).fetchall()
        assert flagged == [(len(bodies),)]  # each one says its own id was unusable


# -- hostile project ids from the user -------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["../../etc", 'p"; DROP TABLE job_versions; --'])
def test_a_hostile_project_id_at_the_sync_cli_is_refused_before_anything_happens(tmp_path, bad):
    done = _cli("sync", "--endpoint", "http://127.0.0.1:9", "--project-id", bad, "--warehouse", str(tmp_path / "wh"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "invalid project id" in errors[0]
    assert _files(tmp_path) == set()  # not even the warehouse folder


def test_a_hostile_project_id_through_the_library_fails_that_project_only(tmp_path):
    world = World(jobs=2, seed=83)
    with SimulatorServer(world, token=TOKEN) as sim, Warehouse.open(tmp_path / "wh") as wh:
        report = _sync(wh, sim, ["../../etc", world.project_ids[0], "x' OR '1'='1"])
        assert [bool(p.error) for p in report.projects] == [True, False, True]
        assert "invalid project id" in report.projects[0].error
        assert _only_api_paths(sim, world.project_ids[0]) == []
    assert all(EXPECTED_FILES.match(f) for f in _files(tmp_path / "wh"))


def test_a_warehouse_folder_named_with_quotes_and_sql_stays_where_it_is(tmp_path):
    world = World(jobs=2, seed=84)
    wh = tmp_path / "it's \"a\" dir'; DROP TABLE raw_payloads; --"
    with SimulatorServer(world, token=TOKEN) as sim:
        done = _cli("sync", "--endpoint", sim.url, "--project-id", world.project_ids[0], "--warehouse", str(wh),
                    "--rate", "0")
    assert done.returncode == 0, done.stderr
    assert {p.name for p in tmp_path.iterdir()} == {wh.name}
    assert all(EXPECTED_FILES.match(f) for f in _files(wh))
    assert len(load("job_versions", wh)) == world.version_count()  # the reader, over the same folder


# -- a server that never finishes its answer ----------------------------------------------------------------
@pytest.mark.parametrize("mode", ["trickle_body", "trickle_headers"])
def test_a_trickling_server_is_cut_off_by_the_total_deadline(mode):
    world = World(jobs=1, versions_per_job=1, seed=85)
    pid, job_id, version_id = world.truth()[0].key
    with SimulatorServer(world, token=TOKEN, hostile=Hostile(mode, interval=0.05)) as sim:
        client = ModelArtsClient(sim.url, StaticToken(TOKEN), retry=FAST, timeout=(0.5, 0.3), deadline=1.0)
        started = time.monotonic()
        detail = client.version_detail(pid, job_id, version_id)
        elapsed = time.monotonic() - started
        assert detail.status is None and "deadline" in detail.error
        assert 0.9 <= elapsed < 2.5  # one attempt: the 0.3 s read timeout never fired, the deadline did
        with pytest.raises(EndpointError, match="no complete answer within the 1 s deadline"):
            read_list(client, client.list_jobs(pid, page=1, per_page=5), "job list")
        client.close()


def test_a_sync_against_a_trickling_server_ends_with_a_clear_line(tmp_path):
    world = World(jobs=3, versions_per_job=(1, 2), seed=86)
    details = Hostile("trickle_body", match=r"/versions/\d+$", interval=0.05)
    with SimulatorServer(world, token=TOKEN, hostile=details) as sim:
        started = time.monotonic()
        slow_details = _cli("sync", "--endpoint", sim.url, "--project-id", world.project_ids[0], "--warehouse",
                            str(tmp_path / "a"), "--rate", "0", "--deadline", "1", "--timeout", "0.5")
        sim.hostile = Hostile("trickle_headers", interval=0.05)
        slow_lists = _cli("sync", "--endpoint", sim.url, "--project-id", world.project_ids[0], "--warehouse",
                          str(tmp_path / "b"), "--rate", "0", "--deadline", "1", "--timeout", "0.5")
        elapsed = time.monotonic() - started
    assert elapsed < 30
    assert slow_details.returncode == 0, slow_details.stderr  # the versions are fetched again next sync
    assert f"failed {world.version_count()} (fetched again next sync)" in slow_details.stdout
    assert "not fetched: job" in slow_details.stderr and "deadline" in slow_details.stderr
    assert slow_lists.returncode == 1 and "no complete answer within the 1 s deadline" in slow_lists.stderr
    for done in (slow_details, slow_lists):
        assert "Traceback" not in done.stderr


def test_a_trickling_iam_endpoint_is_cut_off_too(tmp_path):
    world = World(jobs=1, seed=87)
    with SimulatorServer(world, iam_user=("u", "pw", "d"), hostile=Hostile("trickle_headers", match="/v3/auth")) as sim:
        started = time.monotonic()
        done = _cli("sync", "--endpoint", sim.url, "--project-id", world.project_ids[0], "--warehouse",
                    str(tmp_path / "wh"), "--timeout", "0.5", "--deadline", "1",
                    env={"MODELARTS_TOKEN": "", "MODELARTS_IAM_USER": "u", "MODELARTS_IAM_PASSWORD": "pw",
                         "MODELARTS_IAM_DOMAIN": "d", "MODELARTS_IAM_ENDPOINT": sim.url}, timeout=120)
        assert time.monotonic() - started < 20
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "IAM endpoint" in done.stderr and "no complete answer" in done.stderr and "pw" not in done.stderr


# -- bytes that are not UTF-8, bodies that are huge ------------------------------------------------------------
def test_non_utf8_details_are_landed_and_rejected_with_the_reason(tmp_path):
    world = World(jobs=3, versions_per_job=(1, 3), seed=88)
    with SimulatorServer(world, token=TOKEN, hostile=Hostile("non_utf8", match=r"/versions/\d+$")) as sim, \
            Warehouse.open(tmp_path / "wh") as wh:
        report = _sync(wh, sim)
        assert report.ok and report.rejected == world.version_count()
        kinds = wh.con.execute("SELECT DISTINCT stage, error_kind FROM rejected_payloads").fetchall()
        assert kinds == [("decode", "invalid_utf8")]
        assert wh.con.execute("SELECT count(*) FROM raw_payloads WHERE kind = 'version_detail'").fetchall() == [
            (world.version_count(),)]  # the exact bytes are kept


@pytest.mark.parametrize("match", [r"/training-jobs\?", r"/versions\?"])
def test_non_utf8_list_pages_fail_the_project_with_one_clear_line(tmp_path, match):
    world = World(jobs=3, seed=89)
    with SimulatorServer(world, token=TOKEN, hostile=Hostile("non_utf8", match=match)) as sim:
        done = _cli("sync", "--endpoint", sim.url, "--project-id", world.project_ids[0], "--warehouse",
                    str(tmp_path / "wh"), "--rate", "0")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "is not JSON (str is not valid UTF-8" in errors[0]
    con = connect(tmp_path / "wh")
    try:  # the page that could not be read is kept, for the record
        assert con.execute("SELECT count(*) FROM raw_payloads WHERE kind <> 'version_detail'").fetchall()[0][0] >= 1
    finally:
        con.close()


def test_a_50_mb_detail_over_http_loads(tmp_path):
    world = World(jobs=1, versions_per_job=1, seed=90)
    huge = Hostile("huge", match=r"/versions/\d+$", size=50 * 2**20)
    with SimulatorServer(world, token=TOKEN, hostile=huge) as sim, Warehouse.open(tmp_path / "wh") as wh:
        report = _sync(wh, sim, timeout=(2.0, 30.0))
        assert report.ok and report.fetched == 1 and report.projects[0].versions_loaded == 1
        assert wh.con.execute("SELECT max(byte_size) FROM raw_payloads").fetchall()[0][0] >= 50 * 2**20
        assert wh.con.execute("SELECT problem, length(raw_value) <= 1001 FROM field_issues").fetchall() == [
            ("unknown_field", True)]  # the padding: an unknown field, its value cut to 1,000 characters


def test_an_answer_over_max_body_is_not_stored_and_not_retried():
    world = World(jobs=1, versions_per_job=1, seed=91)
    pid, job_id, version_id = world.truth()[0].key
    with SimulatorServer(world, hostile=Hostile("huge", match=r"/versions/\d+$", size=3 * 2**20)) as sim:
        client = ModelArtsClient(sim.url, StaticToken(TOKEN), retry=FAST, max_body=2**20)
        detail = client.version_detail(pid, job_id, version_id)
        client.close()
    assert detail.status is None and "larger than 1 MB" in detail.error and "not stored" in detail.error
    assert sim.counts["version_detail"] == 1
