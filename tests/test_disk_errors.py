"""Issue 13, item 8: disk full, read-only folder, corrupt files are one line, never a traceback.

Real mechanisms, measured in this sandbox (root): a 2 MB tmpfs for a full disk, then remounted
larger ("after the disk grows"); a read-only bind mount for a read-only folder (chmod does not stop
root). Where mounting is not allowed the tests skip with one line saying so.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import rows
from test_crash import stable_snapshot
from pipelines.modelarts.simulator import SimulatorServer, World
from warehouse import connect, load
from warehouse_world import cli, ingest, one_line_error, write_corpus


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({done.stderr.strip() or done.returncode}): no real full/read-only disk")


@pytest.fixture
def mounts():
    made = []
    yield made
    for point in reversed(made):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("disk")
    corpus = write_corpus(base / "c.jsonl", n=400, padding=8000)  # ~3 MB of Parquet: more than the disk
    reference = base / "ref"
    assert ingest(corpus, reference).returncode == 0
    return corpus, reference, stable_snapshot(reference)


def test_disk_full_during_ingest_is_one_line_and_the_next_run_after_it_grows_is_exact(corpus, tmp_path, mounts):
    data, _, reference = corpus
    disk = tmp_path / "disk"
    disk.mkdir()
    _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk))
    mounts.append(disk)
    wh = disk / "wh"
    line = one_line_error(ingest(data, wh))
    assert "disk is full" in line and "run the same command again" in line
    _mount("-o", "remount,size=64m", str(disk))
    done = ingest(data, wh)
    assert done.returncode == 0, done.stderr
    assert stable_snapshot(wh) == reference
    assert rows(wh, "SELECT count(*), count(DISTINCT payload_sha256) FROM raw_payloads") == [(400, 400)]


def test_a_read_only_warehouse_is_read_and_writers_say_so_in_one_line(corpus, tmp_path, mounts):
    data, reference_wh, reference = corpus
    wh = tmp_path / "wh"
    shutil.copytree(reference_wh, wh)
    _mount("--bind", str(wh), str(wh))
    mounts.append(wh)
    _mount("-o", "remount,bind,ro", str(wh))
    assert rows(wh, "SELECT count(*) FROM job_versions") == [(400,)]
    assert len(load("parameters", wh)) == len(reference["parameters"])
    assert cli("snapshots", "--warehouse", str(wh)).returncode == 0
    assert cli("check", "--warehouse", str(wh)).returncode == 0
    for command in (("ingest", str(data), "--project-id", "p1"), ("rebuild",), ("maintain",)):
        line = one_line_error(cli(*command, "--warehouse", str(wh)))
        assert "read-only" in line and "readers" in line, (command, line)
    con = connect(wh)
    con.close()


def test_disk_full_during_sync_is_one_line_and_the_next_sync_after_it_grows_has_every_version(tmp_path, mounts):
    disk = tmp_path / "disk"
    disk.mkdir()
    _mount("-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk))
    mounts.append(disk)
    wh, token = disk / "wh", "disk-t0k"
    world = World(jobs=30, versions_per_job=(2, 4), seed=8)
    sync = ("sync", "--project-id", world.project_ids[0], "--warehouse", str(wh), "--rate", "0")
    with SimulatorServer(world, token=token) as sim:
        env = {"MODELARTS_TOKEN": token, "MODELARTS_ENDPOINT": sim.url}
        line = one_line_error(cli(*sync, env=env))
        assert "disk is full" in line and "run the same command again" in line
        _mount("-o", "remount,size=64m", str(disk))
        done = cli(*sync, env=env)
    assert done.returncode == 0, done.stderr
    truth = {(t.job_id, t.version_id) for t in world.truth(world.project_ids[0])}
    assert set(rows(wh, "SELECT job_id, version_id FROM job_versions")) == truth
    assert rows(wh, "SELECT count(*) FROM (SELECT payload_sha256 FROM raw_payloads GROUP BY ALL HAVING count(*) > 1)"
                ) == [(0,)]
