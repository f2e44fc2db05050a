"""The warehouse beyond one machine: the DuckLake catalog on a real PostgreSQL, the data on a real
S3-compatible store (SeaweedFS), configured the way a user does it, by the environment.

Every command a user runs works on this configuration as on the embedded one: sync, ingest,
rebuild, time travel, maintenance, export, `connect()` and `load()`; and no credential reaches
the output, the catalog or a tidy table.
"""
import os
import subprocess
import sys
import uuid

import pytest

from pipelines.modelarts.simulator import SimulatorServer, World
from tests.servers import postgres, s3_environment, seaweedfs
from warehouse import connect, load

PROJECT = "proj-remote"
TOKEN = "remote-t0k"
PG_PASSWORD = "pg-s3cret-pw"


@pytest.fixture(scope="module")
def servers():
    with postgres() as pg_url, seaweedfs() as s3_endpoint:
        yield pg_url, s3_endpoint


@pytest.fixture
def remote(servers, tmp_path, monkeypatch):
    """A fresh lake: its own database on the cluster and its own prefix in the bucket."""
    pg_url, s3_endpoint = servers
    name = "lake_" + uuid.uuid4().hex[:8]
    host_part = pg_url.rsplit("/", 1)[0]
    subprocess.run(["psql", host_part + "/postgres", "-qc", f"CREATE DATABASE {name}"], check=True,
                   capture_output=True)
    user, rest = host_part.split("://", 1)[1].split("@", 1)
    env = {"MODELARTS_CATALOG": f"postgresql://{user}:{PG_PASSWORD}@{rest}/{name}",
           "MODELARTS_DATA_PATH": f"s3://lake/{name}/", **s3_environment(s3_endpoint)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    folder = tmp_path / "wh"  # the local folder still holds the writers' lock
    return folder, env


def cli(*args, env, timeout=180) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=timeout)
    return done


def test_sync_rebuild_time_travel_and_readers_on_postgres_and_s3(remote):
    folder, env = remote
    world = World(projects=[PROJECT], jobs=6, versions_per_job=(1, 3), seed=4)
    with SimulatorServer(world, token=TOKEN) as sim:
        sync_env = {**env, "MODELARTS_TOKEN": TOKEN}
        first = cli("sync", "--endpoint", sim.url, "--project-id", PROJECT, "--warehouse", folder, "--rate", "0",
                    "--quiet", env=sync_env)
        assert first.returncode == 0, first.stderr[-2000:]
        truth = {(t.job_id, t.version_id) for t in world.truth(PROJECT)}

        with connect(folder) as con:
            stored = set(con.execute("SELECT job_id, version_id FROM job_versions").fetchall())
            snapshot = con.execute("SELECT max(snapshot_id) FROM loads").fetchone()[0]
            paths = [p for (p,) in con.execute(
                "SELECT data_file FROM ducklake_list_files('modelarts', 'job_versions')").fetchall()]
        assert stored == truth
        assert paths and all(p.startswith("s3://lake/") for p in paths)  # the data is in the bucket
        assert not (folder / "catalog.sqlite").exists() and not (folder / "data").exists()

        world.advance(6 * 3600, new_versions=2)
        second = cli("sync", "--endpoint", sim.url, "--project-id", PROJECT, "--warehouse", folder, "--rate", "0",
                     "--quiet", env=sync_env)
        assert second.returncode == 0, second.stderr[-2000:]
        truth_now = {(t.job_id, t.version_id) for t in world.truth(PROJECT)}

    with connect(folder, snapshot=snapshot) as then:  # time travel to the first sync
        assert set(then.execute("SELECT job_id, version_id FROM job_versions").fetchall()) == truth
    assert set(map(tuple, load("job_versions", folder)[["job_id", "version_id"]].values.tolist())) == truth_now

    rebuilt = cli("rebuild", "--warehouse", folder, env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    with connect(folder) as con:
        assert con.execute("SELECT count(*) FROM job_versions").fetchone()[0] == len(truth_now)
        assert con.execute("SELECT count(*) FROM (SELECT project_id, job_id, version_id FROM job_versions "
                           "GROUP BY ALL HAVING count(*) > 1)").fetchone()[0] == 0

    outputs = first.stdout + first.stderr + second.stdout + second.stderr + rebuilt.stdout + rebuilt.stderr
    assert PG_PASSWORD not in outputs and env["AWS_SECRET_ACCESS_KEY"] not in outputs


def test_ingest_maintenance_and_export_on_postgres_and_s3(remote, seed_bytes, tmp_path):
    folder, env = remote
    corpus = tmp_path / "in"
    corpus.mkdir()
    for n in range(3):
        (corpus / f"v{n}.json").write_bytes(seed_bytes.replace(b'"version_id": 10', f'"version_id": {10 + n}'.encode()))
    for _ in range(2):  # twice: the second ingest lands nothing new
        done = cli("ingest", corpus, "--project-id", PROJECT, "--warehouse", folder, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
    with connect(folder) as con:
        versions = con.execute("SELECT count(*) FROM job_versions").fetchone()[0]
        raw = con.execute("SELECT count(*) FROM raw_payloads").fetchone()[0]
    assert raw == 3 and versions >= 1

    maintained = cli("maintain", "--warehouse", folder, "--retention", "0d", env=env)
    assert maintained.returncode == 0, maintained.stderr[-2000:]
    exported = cli("export", "--warehouse", folder, "--parquet", tmp_path / "export", env=env)
    assert exported.returncode == 0, exported.stderr[-2000:]
    import pandas as pd
    assert len(pd.read_parquet(tmp_path / "export" / "job_versions")) == versions
    assert len(pd.read_parquet(tmp_path / "export" / "raw_payloads")) == 3


def test_no_credential_reaches_the_catalog_or_a_tidy_table(remote, seed_bytes, tmp_path):
    folder, env = remote
    (tmp_path / "v.json").write_bytes(seed_bytes)
    done = cli("ingest", tmp_path / "v.json", "--project-id", PROJECT, "--warehouse", folder, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    catalog_url = env["MODELARTS_CATALOG"].replace(f":{PG_PASSWORD}", "")
    dump = subprocess.run(["pg_dump", "--data-only", catalog_url], capture_output=True, text=True, check=True).stdout
    assert "ducklake_snapshot" in dump
    for secret in (PG_PASSWORD, env["AWS_SECRET_ACCESS_KEY"], env["AWS_ACCESS_KEY_ID"]):
        assert secret not in dump and secret not in done.stdout + done.stderr
    with connect(folder) as con:
        for (table,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 'modelarts'"
                                    ).fetchall():
            text = str(con.execute(f'SELECT * FROM "{table}"').fetchall())
            assert PG_PASSWORD not in text and env["AWS_SECRET_ACCESS_KEY"] not in text, table
