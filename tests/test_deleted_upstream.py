"""Issue 13 item 6: versions of a job deleted upstream are kept and marked (deleted_upstream_at), only from a
complete job list, in one snapshot, and unmarked if the job comes back. Real HTTP, a real lake."""
from __future__ import annotations

from pipelines.modelarts.auth import StaticToken
from pipelines.modelarts.retry import RetryPolicy
from pipelines.modelarts.simulator import SimulatorServer, World
from pipelines.modelarts.simulator.hostile import Hostile
from pipelines.modelarts.sync import Target, sync_projects
from warehouse.store import Warehouse

TOKEN = "deleted-token"


def _sync(wh, world, **server):
    with SimulatorServer(world, token=TOKEN, page_cap=5, **server) as sim:
        return sync_projects(wh, [Target(sim.url, world.project_ids[0])], StaticToken(TOKEN), per_page=5,
                             retry=RetryPolicy(max_retries=0)).projects[0]


def _marks(wh) -> dict[int, set]:
    rows = wh.con.execute("SELECT job_id, deleted_upstream_at IS NOT NULL FROM job_versions").fetchall()
    out: dict[int, set] = {}
    for job, marked in rows:
        out.setdefault(job, set()).add(marked)
    return out


def _steps(wh) -> list[str]:
    return [step for (step,) in wh.con.execute("SELECT step FROM loads ORDER BY snapshot_id").fetchall()]


def test_a_deleted_jobs_versions_stay_marked_in_one_snapshot_and_are_unmarked_when_it_returns(tmp_path):
    world = World(jobs=8, versions_per_job=(2, 3), seed=21, running_share=1.0)
    pid = world.project_ids[0]
    with Warehouse.open(tmp_path / "wh") as wh:
        _sync(wh, world)
        assert {job: marks for job, marks in _marks(wh).items()} == {job: {False} for job in _marks(wh)}
        gone_id = world.truth()[0].job_id
        gone = world.delete_job(pid, gone_id)
        before = _steps(wh)
        report = _sync(wh, world)
        steps = _steps(wh)[len(before):]
        assert steps.count("deleted_upstream") == 1 and steps[-1] == "deleted_upstream"
        assert report.deleted_upstream == len(gone.versions) and "deleted upstream marked" in report.line()
        marks = _marks(wh)
        assert marks.pop(gone_id) == {True} and all(m == {False} for m in marks.values())
        # the rows are kept as last seen: the running version still says so, and the jobs view shows the mark
        assert wh.con.execute("SELECT count(*), bool_or(NOT is_final) FROM job_versions WHERE job_id = ?",
                              [gone_id]).fetchone() == (len(gone.versions), True)
        assert wh.con.execute("SELECT deleted_upstream_at IS NOT NULL FROM jobs WHERE project_id = ? AND job_id = ?",
                              [pid, gone_id]).fetchone() == (True,)
        first_mark = wh.con.execute("SELECT max(deleted_upstream_at) FROM job_versions").fetchone()[0]
        again = _sync(wh, world)  # still gone: no new snapshot for the mark, and its time is kept
        assert again.deleted_upstream == 0 and "deleted_upstream" not in _steps(wh)[len(before) + len(steps):]
        assert wh.con.execute("SELECT max(deleted_upstream_at) FROM job_versions").fetchone()[0] == first_mark
        world.restore_job(pid, gone)
        _sync(wh, world)
        assert all(m == {False} for m in _marks(wh).values())


def test_a_job_list_with_a_gap_marks_nothing(tmp_path):
    world = World(jobs=12, versions_per_job=1, seed=22)
    pid = world.project_ids[0]
    with Warehouse.open(tmp_path / "wh") as wh:
        _sync(wh, world)
        world.delete_job(pid, world.truth()[0].job_id)
        report = _sync(wh, world, hostile=Hostile("empty_page", match=r"/training-jobs\?.*[?&]page=2(&|$)"))
        assert report.gaps and report.deleted_upstream == 0
        assert wh.con.execute("SELECT count(*) FROM job_versions WHERE deleted_upstream_at IS NOT NULL"
                              ).fetchone() == (0,)


def test_the_dagster_landing_wrapper_passes_the_marks_on(tmp_path):
    from assets.extract import RawLanding

    world = World(jobs=3, versions_per_job=1, seed=23)
    pid = world.project_ids[0]
    with Warehouse.open(tmp_path / "wh") as wh:
        _sync(wh, world)
        world.delete_job(pid, world.truth()[0].job_id)
        with SimulatorServer(world, token=TOKEN) as sim:
            report = sync_projects(RawLanding(wh), [Target(sim.url, pid)], StaticToken(TOKEN)).projects[0]
        assert report.deleted_upstream == 1


def test_an_empty_job_list_without_a_total_proves_nothing_and_marks_nothing(tmp_path):
    """Our own stand-in for a gateway glitch: 200, `jobs: []`, no job_total_count."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = b'{"is_success": true, "jobs": []}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    world = World(jobs=3, versions_per_job=1, seed=24)
    pid = world.project_ids[0]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        with Warehouse.open(tmp_path / "wh") as wh:
            _sync(wh, world)
            report = sync_projects(wh, [Target(f"http://127.0.0.1:{server.server_address[1]}", pid)],
                                   StaticToken(TOKEN)).projects[0]
            assert report.jobs == 0 and report.deleted_upstream == 0
            assert wh.con.execute("SELECT count(*) FROM job_versions WHERE deleted_upstream_at IS NULL"
                                  ).fetchone() == (3,)
    finally:
        server.shutdown()
        server.server_close()
