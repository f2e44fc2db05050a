"""Parallel writers on a shared catalog: four projects synced by four processes at once, against a real
PostgreSQL catalog and SeaweedFS data, while a reader queries throughout; and a writer killed
mid-commit. Every version lands exactly once, the tables equal a serial run's, and a reader only
ever sees committed snapshots.
"""
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from pipelines.modelarts.simulator import SimulatorServer, World
from tests.servers import postgres, s3_environment, seaweedfs
from warehouse import connect

PROJECTS = [f"proj-{n}" for n in range(4)]
TOKEN = "par-t0k"
VERSIONS_PER_JOB = (4, 6)
JOBS = 100  # x 4-6 versions: ~500 versions per project
COMPARED = {  # table -> columns compared between the parallel and the serial lake (not load ids, times)
    "job_versions": "project_id, job_id, version_id, status, payload_sha256",
    "parameters": "project_id, job_id, version_id, label, value",
    "system_metric_series": "project_id, job_id, version_id, metric, samples",
    "rejected_payloads": "project_id, job_id, version_id, error_kind",
}


@pytest.fixture(scope="module")
def servers():
    with postgres() as pg_url, seaweedfs() as s3:
        yield pg_url, s3


def _lake_env(servers) -> dict[str, str]:
    pg_url, s3 = servers
    name = "lake_" + uuid.uuid4().hex[:8]
    base = pg_url.rsplit("/", 1)[0]
    subprocess.run(["psql", base + "/postgres", "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    return {"MODELARTS_CATALOG": f"{base}/{name}", "MODELARTS_DATA_PATH": f"s3://lake/{name}/", **s3_environment(s3)}


def _sync(sim, project, folder, env, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pipelines.cli", "sync", "--endpoint", sim.url, "--project-id", project,
           "--warehouse", str(folder), "--rate", "0", "--quiet"]
    return subprocess.Popen(cmd, env={**os.environ, **env, "MODELARTS_TOKEN": TOKEN}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def _contents(folder, env) -> dict[str, list]:
    os.environ.update(env)
    with connect(folder) as con:
        return {t: con.execute(f"SELECT {cols} FROM {t} ORDER BY ALL").fetchall() for t, cols in COMPARED.items()}


class Reader(threading.Thread):
    """Queries the lake over and over while the writers run: no duplicate key, no orphan, ever."""

    def __init__(self, folder, env):
        super().__init__(daemon=True)
        self.folder, self.env, self.stop, self.reads, self.problems = folder, env, threading.Event(), 0, []

    def run(self):
        os.environ.update(self.env)
        while not self.stop.is_set():
            try:
                with connect(self.folder) as con:
                    dup = con.execute("SELECT count(*) FROM (SELECT 1 FROM job_versions GROUP BY project_id, "
                                      "job_id, version_id HAVING count(*) > 1)").fetchone()[0]
                    orphan = con.execute("SELECT count(*) FROM parameters p WHERE NOT EXISTS (SELECT 1 FROM "
                                         "job_versions v WHERE v.project_id = p.project_id AND v.job_id = p.job_id "
                                         "AND v.version_id = p.version_id)").fetchone()[0]
                if dup or orphan:
                    self.problems.append((dup, orphan))
                self.reads += 1
            except Exception as exc:  # noqa: BLE001 - a reader failing is a finding too
                not_made_yet = "no warehouse" in str(exc) or "does not exist" in str(exc)
                if not (not_made_yet and self.reads == 0):  # before the first writer made the lake
                    self.problems.append(repr(exc)[-600:])
            time.sleep(0.2)


pytestmark = pytest.mark.usefixtures("environment_restored")


def test_four_writers_at_once_land_every_version_once_and_equal_a_serial_run(servers, tmp_path):
    world = World(projects=PROJECTS, jobs=JOBS, versions_per_job=VERSIONS_PER_JOB, seed=31, payload_fault_rate=0.05)
    truth = {p: {(t.job_id, t.version_id) for t in world.truth(p)} for p in PROJECTS}
    assert all(450 <= len(v) <= 600 for v in truth.values())
    parallel_env, serial_env = _lake_env(servers), _lake_env(servers)
    with SimulatorServer(world, token=TOKEN, latency=0.02) as sim:  # an API's round trip
        reader = Reader(tmp_path / "par", parallel_env)
        reader.start()
        started = time.perf_counter()
        procs = [_sync(sim, p, tmp_path / "par", parallel_env) for p in PROJECTS]
        outputs = [p.communicate(timeout=600) for p in procs]
        parallel_s = time.perf_counter() - started
        reader.stop.set()
        reader.join(timeout=30)
        for proc, (out, err) in zip(procs, outputs):
            assert proc.returncode == 0, err[-3000:]

        started = time.perf_counter()
        serial = _sync(sim, PROJECTS[0], tmp_path / "ser", serial_env)
        for project in PROJECTS[1:]:  # one process after the other, same work
            assert serial.wait(timeout=600) == 0, serial.stderr.read()[-3000:]
            serial = _sync(sim, project, tmp_path / "ser", serial_env)
        assert serial.wait(timeout=600) == 0, serial.stderr.read()[-3000:]
        serial_s = time.perf_counter() - started
    print(f"\n4 parallel syncs: {parallel_s:.1f} s; the same 4 one after another: {serial_s:.1f} s "
          f"(x{serial_s / parallel_s:.2f}); reader: {reader.reads} reads")

    assert reader.problems == [] and reader.reads > 0
    parallel, serial_rows = _contents(tmp_path / "par", parallel_env), _contents(tmp_path / "ser", serial_env)
    assert parallel == serial_rows
    stored = {}
    for project, job, version, *_ in parallel["job_versions"]:
        stored.setdefault(project, set()).add((job, version))
    rejected = {p: {(j, v) for pp, j, v, _ in parallel["rejected_payloads"] if pp == p} for p in PROJECTS}
    for project in PROJECTS:
        assert stored[project] | rejected[project] == truth[project]
        assert len(parallel["job_versions"]) == len(set(r[:3] for r in parallel["job_versions"]))


def test_a_writer_killed_mid_commit_leaves_readers_at_a_committed_snapshot_and_the_rerun_completes(servers, tmp_path):
    env = _lake_env(servers)
    world = World(projects=PROJECTS[:2], jobs=40, versions_per_job=(2, 4), seed=5)
    with SimulatorServer(world, token=TOKEN, latency=0.001) as sim:
        survivor = _sync(sim, PROJECTS[0], tmp_path / "wh", env)
        # the victim SIGKILLs itself inside its first derive transaction, just before COMMIT
        victim = _sync(sim, PROJECTS[1], tmp_path / "wh", {**env, "MODELARTS_FAILPOINT": "derive_before_commit"})
        assert victim.wait(timeout=600) == -signal.SIGKILL, victim.stderr.read()[-3000:]
        assert survivor.wait(timeout=600) == 0, survivor.stderr.read()[-3000:]

        os.environ.update(env)
        with connect(tmp_path / "wh") as con:  # only committed snapshots: no row of the open transaction
            assert con.execute("SELECT count(*) FROM (SELECT 1 FROM job_versions GROUP BY project_id, job_id, "
                               "version_id HAVING count(*) > 1)").fetchone()[0] == 0
        rerun = _sync(sim, PROJECTS[1], tmp_path / "wh", env)
        assert rerun.wait(timeout=600) == 0, rerun.stderr.read()[-3000:]
        truth = {p: {(t.job_id, t.version_id) for t in world.truth(p)} for p in PROJECTS[:2]}
    with connect(tmp_path / "wh") as con:
        for project in PROJECTS[:2]:
            stored = set(con.execute("SELECT job_id, version_id FROM job_versions WHERE project_id = ?",
                                     [project]).fetchall())
            assert stored == truth[project]
