"""A small real warehouse made by the `ingest` command, for the damage, recovery and disk tests."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).parent / "data"


def write_corpus(path: Path, n: int = 300, status: int = 10, padding: int = 0) -> Path:
    """n versions of the seed payload (4 per job); `padding` bytes of description make them larger."""
    seed = json.loads((DATA / "seed_example.json").read_bytes())
    with path.open("w") as fh:
        for i in range(n):
            payload = dict(seed, job_id=i // 4, version_id=i, status=status)
            payload["parameter"] = [{"label": f"p{k}", "value": k} for k in range(i % 5)]
            if padding:
                payload["job_desc"] = os.urandom(padding // 2).hex()
            fh.write(json.dumps(payload) + "\n")
    return path


def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def ingest(corpus: Path, wh: Path, batch: int = 100, **kwargs) -> subprocess.CompletedProcess:
    return cli("ingest", str(corpus), "--project-id", "p1", "--warehouse", str(wh), "--batch-size", str(batch),
               **kwargs)


def one_line_error(done: subprocess.CompletedProcess) -> str:
    """The error a command printed, asserting it is one line and no traceback."""
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, done.stderr
    return errors[0]
