"""Readers never block a writer, and only ever see whole snapshots.

Real processes throughout: the simulator (`modelarts-etl simulate`), the writer commands
(`sync`, `rebuild`, `ingest`) and the reader each run in their own process, over real
HTTP, on a real lake in tmp_path.

"Whole" is checked inside one read transaction (BEGIN ... COMMIT on the reader's one
long-lived `connect()` connection), so every query of a check sees the same snapshot:
- no child row (parameters, data_sources, class_metrics, system_metric_series, volumes,
  field_issues) without its job_versions row, no version without its raw body, no
  rejection without its raw body;
- every version seen has exactly the child rows it has once everything is written: the
  reader keeps, per version, its payload_sha256 and its row count in every child table,
  and each one must be among those of the finished warehouse (so a version with only
  some of its samples, or missing its parameters, fails);
- the snapshot ids it sees never go backwards.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.modelarts.simulator.generator import iter_corpus
from warehouse import connect, load, schema

REPO = Path(__file__).resolve().parents[1]
TOKEN = "reader-test-token-2b9d"
CHILDREN = [t.name for t in schema.STORED_TIDY_TABLES if t is not schema.JOB_VERSIONS]
KEY = "project_id, job_id, version_id"

# Per version: its payload and its row count in every child table (one consistent read).
FINGERPRINT_SQL = (
    "SELECT v.project_id, v.job_id, v.version_id, v.payload_sha256, "
    + ", ".join(f"coalesce(c{i}.n, 0)" for i in range(len(CHILDREN)))
    + " FROM job_versions v "
    + " ".join(f'LEFT JOIN (SELECT {KEY}, count(*) AS n FROM "{t}" GROUP BY ALL) c{i} USING ({KEY})'
               for i, t in enumerate(CHILDREN))
)
# Rows that cannot exist in a whole snapshot; each query counts them.
VIOLATIONS_SQL = {
    **{f"{t} without its version": f'SELECT count(*) FROM "{t}" c ANTI JOIN job_versions v USING ({KEY})'
       for t in CHILDREN},
    "version without its raw body": "SELECT count(*) FROM job_versions v ANTI JOIN raw_payloads r "
                                    "USING (project_id, payload_sha256)",
    "rejection without its raw body": "SELECT count(*) FROM rejected_payloads j ANTI JOIN raw_payloads r "
                                      "USING (project_id, source, payload_sha256)",
    "version twice": f"SELECT count(*) FROM (SELECT {KEY} FROM job_versions GROUP BY ALL HAVING count(*) > 1)",
    "raw body twice": "SELECT count(*) FROM (SELECT project_id, source, payload_sha256 FROM raw_payloads "
                      "GROUP BY ALL HAVING count(*) > 1)",
}

# The reader process: one connect() for its whole life, a check per read transaction, until
# the stop file appears; then its observations as JSON on stdout.
READER = r"""
import json, sys, time, traceback
from pathlib import Path
from warehouse import connect

folder, stop = sys.argv[1], Path(sys.argv[2])
fingerprint_sql, violations_sql = json.loads(sys.argv[3]), json.loads(sys.argv[4])
con = connect(folder)
states, fingerprints, violations, errors = [], set(), [], []
while not stop.exists():
    try:
        con.execute("BEGIN")
        snapshot = con.execute("SELECT id FROM modelarts.current_snapshot()").fetchone()[0]
        versions = con.execute("SELECT count(*) FROM job_versions").fetchone()[0]
        raw = con.execute("SELECT count(*) FROM raw_payloads").fetchone()[0]
        for name, sql in violations_sql.items():
            n = con.execute(sql).fetchone()[0]
            if n:
                violations.append([snapshot, name, n])
        rows = con.execute(fingerprint_sql).fetchall()
        again = con.execute("SELECT id FROM modelarts.current_snapshot()").fetchone()[0]
        con.execute("COMMIT")
    except Exception:
        errors.append(traceback.format_exc())
        try:
            con.execute("ROLLBACK")
        except Exception:
            pass
        time.sleep(0.05)
        continue
    if again != snapshot or len(rows) != versions:
        violations.append([snapshot, "the read transaction saw two snapshots", again])
    fingerprints.update(rows)
    states.append([time.time(), snapshot, versions, raw])
con.close()
print(json.dumps({"states": states, "fingerprints": sorted(fingerprints), "violations": violations,
                  "errors": errors[:5]}, default=str))
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELARTS_", "HUAWEICLOUD_"))}
    env.update(extra)
    return env


def cli(*args: str, failpoint: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = _env(MODELARTS_TOKEN=TOKEN, **({"MODELARTS_FAILPOINT": failpoint} if failpoint else {}))
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def ok(*args: str) -> float:
    started = time.monotonic()
    done = cli(*args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return time.monotonic() - started


class Reader:
    """The reader process, started on a warehouse; `stop()` returns what it saw."""

    def __init__(self, wh: Path, tmp_path: Path):
        self.stop_file = tmp_path / "stop-reader"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", READER, str(wh), str(self.stop_file), json.dumps(FINGERPRINT_SQL),
             json.dumps(VIOLATIONS_SQL)], cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)

    def stop(self) -> dict:
        self.stop_file.touch()
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err
        seen = json.loads(out)
        seen["fingerprints"] = {tuple(row) for row in seen["fingerprints"]}
        return seen


def fingerprints(wh: Path) -> set[tuple]:
    con = connect(wh)
    try:
        return set(con.execute(FINGERPRINT_SQL).fetchall())
    finally:
        con.close()


def snapshot_id(wh: Path) -> int:
    con = connect(wh)
    try:
        return con.execute("SELECT id FROM modelarts.current_snapshot()").fetchone()[0]
    finally:
        con.close()


@pytest.fixture
def simulator():
    """`modelarts-etl simulate` in its own process, answering slowly enough that a sync takes seconds."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "simulate", "--port", "0", "--project-id", "proj-r",
         "--jobs", "30", "--versions-per-job", "1-6", "--seed", "17", "--latency-ms", "25",
         "--payload-fault-rate", "0.1", "--token", TOKEN], cwd=REPO, env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "listening on " in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_reader_sees_only_whole_snapshots_across_a_sync_and_a_rebuild(simulator, tmp_path):
    wh = tmp_path / "wh"
    ok("ingest", str(REPO / "tests" / "data" / "seed_example.json"), "--project-id", "proj-seed", "--warehouse",
       str(wh))  # the lake exists before the reader attaches
    start = snapshot_id(wh)
    reader = Reader(wh, tmp_path)
    try:
        time.sleep(1.0)  # the reader is reading before the writer starts
        sync_started = time.time()
        ok("sync", "--endpoint", simulator, "--project-id", "proj-r", "--warehouse", str(wh), "--rate", "0",
           "--concurrency", "2", "--batch-size", "8", "--quiet")
        sync_ended = time.time()
        after_sync = snapshot_id(wh)
        time.sleep(0.5)
        ok("rebuild", "--warehouse", str(wh))
        final = snapshot_id(wh)
        time.sleep(1.0)  # ... and sees the rebuilt tables
    finally:
        seen = reader.stop()

    assert seen["errors"] == [] and seen["violations"] == []
    snapshots = [s for _, s, _, _ in seen["states"]]
    assert snapshots == sorted(snapshots)  # never backwards
    assert snapshots[0] == start and snapshots[-1] == final > after_sync > start
    con = connect(wh)
    try:
        seed_versions = con.execute("SELECT count(*) FROM job_versions WHERE project_id = 'proj-seed'").fetchone()[0]
        synced = con.execute("SELECT count(*) FROM job_versions WHERE project_id = 'proj-r'").fetchone()[0]
        assert con.execute("SELECT count(*) FROM rejected_payloads").fetchone()[0] > 0  # faulty payloads too
    finally:
        con.close()
    during = {(s, n) for t, s, n, _ in seen["states"] if sync_started <= t <= sync_ended
              and seed_versions < n < seed_versions + synced}
    assert len(during) >= 2, seen["states"]  # it saw the sync progress, not just before and after
    # every version it ever saw had exactly the rows it has in the finished warehouse
    assert seen["fingerprints"] <= fingerprints(wh)


def test_a_notebook_holding_connect_open_neither_fails_nor_delays_an_ingest(tmp_path):
    files = tmp_path / "files"
    first, second = files / "first", files / "second"
    corpus = list(iter_corpus(160, seed=21, project_id="proj-n"))
    for folder, bodies in ((first, corpus[:40]), (second, corpus[40:])):
        folder.mkdir(parents=True)
        for n, body in enumerate(bodies):
            (folder / f"v{n:03d}.json").write_bytes(body)
    baseline = tmp_path / "baseline"
    ok("ingest", str(first), "--project-id", "proj-n", "--warehouse", str(baseline))
    alone = ok("ingest", str(second), "--project-id", "proj-n", "--warehouse", str(baseline), "--batch-size", "20")

    wh = tmp_path / "wh"
    ok("ingest", str(first), "--project-id", "proj-n", "--warehouse", str(wh))
    notebook = connect(wh)  # in this process: a notebook with a connection open, and a transaction too
    notebook.execute("BEGIN")
    assert notebook.execute("SELECT count(*) FROM job_versions").fetchone() == (40,)
    started = time.monotonic()
    done = cli("ingest", str(second), "--project-id", "proj-n", "--warehouse", str(wh), "--batch-size", "20",
               timeout=60)
    beside = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert beside < 3 * alone + 5, (beside, alone)  # it did not wait for the notebook
    assert notebook.execute("SELECT count(*) FROM job_versions").fetchone() == (40,)  # its snapshot holds
    notebook.execute("COMMIT")
    assert notebook.execute("SELECT count(*) FROM job_versions").fetchone() == (160,)  # the next one is new
    notebook.close()

    # load() while a writer is writing, in another process
    more = files / "more"
    more.mkdir()
    for n, body in enumerate(iter_corpus(150, seed=22, project_id="proj-m")):
        (more / f"v{n:03d}.json").write_bytes(body)
    writer = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "ingest", str(more), "--project-id", "proj-m",
                               "--warehouse", str(wh), "--batch-size", "10"], cwd=REPO, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    counts, mid_write = [], []
    while writer.poll() is None:
        frame = load("job_versions", wh, where="project_id = 'proj-m'")
        counts.append(len(frame))
        assert frame.duplicated(["job_id", "version_id"]).sum() == 0
        if writer.poll() is None and 0 < len(frame) < 150:
            mid_write.append(len(frame))
    _, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    assert counts == sorted(counts) and mid_write  # some loads ran while it wrote
    assert len(load("job_versions", wh, where="project_id = 'proj-m'")) == 150


@pytest.fixture(scope="module")
def payload_folder(tmp_path_factory) -> Path:
    """30 payload files, the 4th not JSON: three batches of 10 at --batch-size 10."""
    folder = tmp_path_factory.mktemp("payloads") / "in"
    folder.mkdir()
    for n, body in enumerate(iter_corpus(30, seed=23, project_id="proj-k")):
        (folder / f"v{n:03d}.json").write_bytes(b'{"is_success": true, "job_id": ' if n == 3 else body)
    return folder


@pytest.fixture(scope="module")
def reference(payload_folder, tmp_path_factory) -> Path:
    wh = tmp_path_factory.mktemp("reference") / "wh"
    ok("ingest", str(payload_folder), "--project-id", "proj-k", "--warehouse", str(wh), "--batch-size", "10")
    return wh


def _catalog_last_snapshot(wh: Path) -> int:
    """The last committed snapshot, read from the SQLite catalog itself (not through DuckLake)."""
    with sqlite3.connect(f"file:{wh / 'catalog.sqlite'}?mode=ro", uri=True) as db:
        return db.execute("SELECT max(snapshot_id) FROM ducklake_snapshot").fetchone()[0]


@pytest.mark.parametrize("failpoint", [
    "derive_before_commit:2",  # batch 2's bodies committed, its tidy rows inserted, not committed
    "raw_committed:2",  # batch 2's bodies just committed
])
def test_after_kill_9_of_an_ingest_a_reader_sees_exactly_the_last_committed_snapshot(
        payload_folder, reference, tmp_path, failpoint):
    wh = tmp_path / "wh"
    killed = cli("ingest", str(payload_folder), "--project-id", "proj-k", "--warehouse", str(wh),
                 "--batch-size", "10", failpoint=failpoint)
    assert killed.returncode == -9, (killed.stdout, killed.stderr)

    con = connect(wh)  # at once: no writer has run since
    try:
        con.execute("BEGIN")
        assert con.execute("SELECT id FROM modelarts.current_snapshot()").fetchone()[0] == _catalog_last_snapshot(wh)
        assert {name: con.execute(sql).fetchone()[0] for name, sql in VIOLATIONS_SQL.items()} == dict.fromkeys(
            VIOLATIONS_SQL, 0)
        sources = {Path(s).name for (s,) in con.execute("SELECT source FROM raw_payloads").fetchall()}
        derived = {Path(s).name for (s,) in con.execute(
            "SELECT r.source FROM job_versions v JOIN raw_payloads r USING (project_id, payload_sha256) "
            "UNION ALL SELECT source FROM rejected_payloads").fetchall()}
        con.execute("COMMIT")
    finally:
        con.close()
    names = sorted(p.name for p in payload_folder.iterdir())
    assert sources == set(names[:20])  # batches 1 and 2 landed
    assert derived == set(names[:10])  # batch 1 derived, nothing of batch 2

    # what is there is what an uninterrupted ingest has for the same payloads, but for the times of
    # reading (extracted_at, rejected_at, fetched_at: each run reads the files anew) and the load ids
    mine, theirs = connect(wh), connect(reference)
    try:
        kept = set(mine.execute("SELECT job_id, version_id FROM job_versions").fetchall())
        assert len(kept) == 9
        assert set(mine.execute(FINGERPRINT_SQL).fetchall()) == {
            r for r in theirs.execute(FINGERPRINT_SQL).fetchall() if (r[1], r[2]) in kept}
        landed = [str(payload_folder / name) for name in names[:20]]
        for table in schema.STORED_TIDY_TABLES + (schema.REJECTED_PAYLOADS, schema.RAW_PAYLOADS):
            cols = [c for c in table.column_names if c not in ("extracted_at", "rejected_at", "fetched_at", "load_id")]
            select = f'SELECT {", ".join(chr(34) + c + chr(34) for c in cols)} FROM "{table.name}"'
            if table is schema.RAW_PAYLOADS:
                expected = theirs.execute(select + " WHERE source IN (SELECT unnest(?::VARCHAR[]))", [landed]).fetchall()
            else:
                job, version = cols.index("job_id"), cols.index("version_id")
                expected = [r for r in theirs.execute(select).fetchall() if (r[job], r[version]) in kept
                            or table is schema.REJECTED_PAYLOADS]
            assert sorted(mine.execute(select).fetchall(), key=repr) == sorted(expected, key=repr), table.name
    finally:
        mine.close()
        theirs.close()
