"""A warehouse written by today's release converts to the lake on first open, losing nothing.

Today's release is commit 1f7f153, the last before DuckLake. The old warehouse is built
here by that code itself: `git archive 1f7f153 warehouse pipelines` is unpacked into a
temporary folder and run as `python -m pipelines.cli sync|ingest` in subprocesses with
PYTHONPATH pointing at it, over real HTTP against the simulator (served by a thread of
this process) and from real .json/.jsonl files.

Which DuckDB runs the old code: the old release asks for DuckDB 2.x, the venv has 1.5.5.
The old code runs unchanged on 1.5.5 (checked: sync, ingest, its raw-file compaction and
its crash repair all work), and what the conversion reads does not depend on it: the raw
landing files `parquet/raw_payloads/<project>/raw-*.parquet` are written by pyarrow, not
DuckDB, and the conversion never opens `modelarts.duckdb` (a 2.0 file, which 1.5.5 cannot
read). The tidy Parquet exports the rows are compared with are written by pyarrow (part
files) or by DuckDB's COPY (jobs, rejected_payloads): same values either way. So these
tests run the old code on this venv's Python. A separate venv with duckdb 2.0.0 took ~30 s
of installs from PyPI and the tests passed with it just the same (MODELARTS_LEGACY_PYTHON=
<its python> runs the old code there), so it is not built on every fresh machine.

The comparison: every raw body and all its columns (payload, payload_sha256, source,
fetched_at, load_id, project_id, kind, http_status, ...) with EXCEPT ALL both ways, and
every table's rows against what the old code exported under `parquet/<table>/` (the old
`jobs` table against the new `jobs` view, the old `system_metric_samples` rows against the
new view over series). No column is excluded: the tidy rows are derived again from the
same bodies by the same flattener, extracted_at/rejected_at come from each body's
fetched_at, and a rejection keeps the load_id of the load that landed its body, in the old
code and in the new, so even rejected_payloads.load_id is the same.

The tests skip where git history is absent (CI runs on a full clone).
"""
from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import orjson
import pytest

from pipelines.modelarts.simulator import SimulatorServer, World
from pipelines.modelarts.simulator.generator import generate_version, iter_corpus
from warehouse import connect, schema
from warehouse.store import Warehouse, WarehouseError

REPO = Path(__file__).resolve().parents[1]
RELEASE = "1f7f153"
TOKEN = "legacy-sync-token-41c7"
OLD_PYTHON = os.environ.get("MODELARTS_LEGACY_PYTHON") or sys.executable
LEGACY = ("parquet", "modelarts.duckdb")
RUNNING = (777, 7001)  # the file-ingested version that was running, then landed again finished


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, timeout=60)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELARTS_", "HUAWEICLOUD_"))}
    env.update(extra)
    return env


# -- the old release ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """The code of today's release, unpacked from git."""
    if shutil.which("git") is None or _git("cat-file", "-e", f"{RELEASE}^{{commit}}").returncode != 0:
        pytest.skip(f"needs the git history with commit {RELEASE} (today's release) to build an old warehouse "
                    "with its code: run the tests in a full git clone")
    archive = _git("archive", RELEASE, "warehouse", "pipelines")
    assert archive.returncode == 0, archive.stderr
    folder = tmp_path_factory.mktemp("release")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def old(release: Path, wh: Path, *args: str, failpoint: str | None = None) -> subprocess.CompletedProcess:
    """`modelarts-etl ARGS --warehouse WH` as today's release runs it."""
    env = _clean_env(PYTHONPATH=str(release), MODELARTS_TOKEN=TOKEN)
    if failpoint:
        env["MODELARTS_FAILPOINT"] = failpoint
    return subprocess.run([OLD_PYTHON, "-m", "pipelines.cli", *args, "--warehouse", str(wh)], cwd=release, env=env,
                          capture_output=True, text=True, timeout=120)


def old_ok(release: Path, wh: Path, *args: str) -> None:
    done = old(release, wh, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)


def old_open(release: Path, wh: Path) -> None:
    """Open and close a writer of the old release: its repair of what a crash left."""
    code = "import sys\nfrom warehouse.store import Warehouse\nwith Warehouse.open(sys.argv[1]):\n    pass\n"
    done = subprocess.run([OLD_PYTHON, "-c", code, str(wh)], cwd=release, env=_clean_env(PYTHONPATH=str(release)),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def legacy(release, tmp_path_factory) -> Path:
    """An old warehouse, as the old code writes it: two projects synced over HTTP twice (running
    versions fetched again with new bytes, faulty payloads rejected or flagged), a third project
    from .json and .jsonl files (a running version landed again finished, a broken line, an API
    error body), and one load in 36 batches, which the old code's raw-file compaction merges."""
    base = tmp_path_factory.mktemp("legacy")
    wh, files = base / "wh", base / "files"
    world = World(projects=["proj-a", "proj-b"], jobs=8, versions_per_job=(1, 4), seed=5, running_share=0.5,
                  payload_fault_rate=0.25)
    sync = ("sync", "--project-id", "proj-a", "--project-id", "proj-b", "--rate", "0", "--batch-size", "7", "--quiet")
    with SimulatorServer(world, token=TOKEN, page_cap=5) as sim:
        old_ok(release, wh, *sync, "--endpoint", sim.url)
        changes = world.advance(3600, new_versions=2)
        assert changes.finished and changes.new
        old_ok(release, wh, *sync, "--endpoint", sim.url)

    bulk = files / "bulk"
    bulk.mkdir(parents=True)
    corpus = list(iter_corpus(38, seed=9, project_id="proj-c"))
    for n, body in enumerate(corpus[:36]):
        (bulk / f"v{n:03d}.json").write_bytes(body)
    old_ok(release, wh, "ingest", str(bulk), "--project-id", "proj-c", "--batch-size", "1")

    running = generate_version(random.Random(3), "proj-c", *RUNNING, status=8)
    flagged = dict(orjson.loads(corpus[37]), gpu_num="2 GPUs", billing_mode=1)  # a field issue, an unknown field
    lines = [corpus[36], orjson.dumps(running), b'{"is_success": true, "job_id": 12, "version_id": ',
             orjson.dumps(flagged)]
    (files / "more.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (files / "error.json").write_bytes((REPO / "tests" / "data" / "seed_error.json").read_bytes())
    old_ok(release, wh, "ingest", str(files / "more.jsonl"), str(files / "error.json"), "--project-id", "proj-c")
    lines[1] = orjson.dumps(dict(running, status=10, duration=4_321_000))  # it finished: new bytes, same line
    (files / "more.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    old_ok(release, wh, "ingest", str(files / "more.jsonl"), "--project-id", "proj-c")

    raw_dir = wh / "parquet" / "raw_payloads"
    assert (wh / "modelarts.duckdb").is_file()
    assert {p.name for p in raw_dir.iterdir() if p.is_dir()} == {"proj-a", "proj-b", "proj-c"}
    assert list((raw_dir / "proj-c").glob("raw-merged-*.parquet"))  # the old compaction ran
    return wh


def copy_of(legacy: Path, tmp_path: Path) -> Path:
    wh = tmp_path / "wh"
    shutil.copytree(legacy, wh)
    return wh


def manifest(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative path -> SHA-256 of its bytes)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def legacy_manifest(wh: Path) -> dict[str, str]:
    return {name: digest for name, digest in manifest(wh).items() if name.split(os.sep)[0] in LEGACY}


def new_open(wh: Path, failpoint: str | None = None) -> subprocess.CompletedProcess:
    """A writer of the new code opened and closed in its own process (which a failpoint may kill)."""
    env = _clean_env(**({"MODELARTS_FAILPOINT": failpoint} if failpoint else {}))
    code = "import sys\nfrom warehouse.store import Warehouse\nwith Warehouse.open(sys.argv[1]):\n    pass\n"
    return subprocess.run([sys.executable, "-c", code, str(wh)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


# -- what must hold after a conversion ------------------------------------------------------------
ADDED_SINCE = {"training_job_id"}  # raw_payloads' column for v2 bodies: NULL for every converted one
ADDED_SINCE_THE_OLD_LAYOUT = {"deleted_upstream_at"}  # set by syncs only: NULL in every converted row


def _old_rows(old_export: Path, table: schema.Table) -> str:
    cols = ", ".join(f'NULL::TIMESTAMPTZ AS "{c}"' if c in ADDED_SINCE_THE_OLD_LAYOUT else f'"{c}"'
                     for c in table.column_names if c not in ADDED_SINCE)
    glob = str(old_export / table.name).replace("'", "''") + "/**/*.parquet"
    return f"(SELECT {cols} FROM read_parquet('{glob}', union_by_name = true))"


def _new_rows(table: schema.Table) -> str:
    cols = ", ".join(chr(34) + c + chr(34) for c in table.column_names if c not in ADDED_SINCE)
    return f'(SELECT {cols} FROM "{table.name}")'


def assert_lake_holds(wh: Path, old_export: Path) -> dict[str, int]:
    """The lake in `wh` has exactly the rows the old code exported under `old_export` (a `parquet/`
    folder), raw bodies byte for byte; returns the row count per table."""
    con = connect(wh)
    try:
        counts = {}
        for table in schema.V1_TABLES:  # the old layout had no v2 tables
            before, after = _old_rows(old_export, table), _new_rows(table)
            missing = con.execute(f"SELECT * FROM ({before} EXCEPT ALL {after}) LIMIT 5").fetchall()
            extra = con.execute(f"SELECT * FROM ({after} EXCEPT ALL {before}) LIMIT 5").fetchall()
            assert (missing, extra) == ([], []), f"{table.name}: rows the lake lacks / has in excess"
            counts[table.name] = con.execute(f"SELECT count(*) FROM {after}").fetchone()[0]
            assert counts[table.name] == con.execute(f"SELECT count(*) FROM {before}").fetchone()[0], table.name
        assert con.execute("SELECT count(training_job_id) FROM raw_payloads").fetchone() == (0,)
        assert con.execute("SELECT project_id, source, payload_sha256 FROM raw_payloads GROUP BY ALL "
                           "HAVING count(*) > 1").fetchall() == []
        assert con.execute("SELECT count(*) FROM raw_payloads WHERE sha256(payload) <> payload_sha256 "
                           "OR octet_length(payload) <> byte_size").fetchone() == (0,)
        assert con.execute("SELECT project_id, job_id, version_id FROM job_versions GROUP BY ALL "
                           "HAVING count(*) > 1").fetchall() == []
    finally:
        con.close()
    return counts


def assert_converted(wh: Path, before: dict[str, str]) -> None:
    """The old files are in pre-ducklake/, every one with its bytes; none is left in place."""
    assert not any((wh / name).exists() for name in LEGACY)
    assert legacy_manifest(wh / "pre-ducklake") == before


def _lake_state(wh: Path) -> tuple:
    con = connect(wh)
    try:
        return (con.execute("SELECT id FROM modelarts.current_snapshot()").fetchone()[0],
                con.execute("SELECT count(*) FROM loads").fetchone()[0])
    finally:
        con.close()


def _migrate_steps(wh: Path) -> list[tuple]:
    con = connect(wh)
    try:
        return con.execute("SELECT landed, source FROM loads WHERE step = 'migrate'").fetchall()
    finally:
        con.close()


# -- the tests -------------------------------------------------------------------------------------
def test_first_open_converts_every_row_and_every_body_and_a_second_open_does_nothing(legacy, tmp_path):
    wh = copy_of(legacy, tmp_path)
    before = legacy_manifest(wh)
    with Warehouse.open(wh):
        pass
    assert_converted(wh, before)
    counts = assert_lake_holds(wh, wh / "pre-ducklake" / "parquet")
    assert all(counts[t.name] for t in schema.V1_TABLES), counts  # the old warehouse had rows in every table
    assert counts["rejected_payloads"] >= 3 and counts["field_issues"] >= 2
    assert _migrate_steps(wh) == [(counts["raw_payloads"], "migrate")]  # all bodies in one snapshot

    con = connect(wh)
    try:
        # the running version, landed twice: both bodies kept, the finished one derived
        assert con.execute("SELECT count(*) FROM raw_payloads WHERE project_id = 'proj-c' AND job_id = ? "
                           "AND version_id = ?", list(RUNNING)).fetchone() == (2,)
        assert con.execute("SELECT status_name, duration_ms FROM job_versions WHERE project_id = 'proj-c' "
                           "AND job_id = ? AND version_id = ?", list(RUNNING)).fetchall() == [("COMPLETED", 4_321_000)]
        assert con.execute("SELECT count(*) FROM raw_payloads WHERE source LIKE '%more.jsonl:_'").fetchone() == (5,)
        # synced bodies fetched again with new bytes: several bodies, one version row
        assert con.execute("SELECT count(*) FROM (SELECT 1 FROM raw_payloads WHERE kind = 'version_detail' "
                           "AND http_status = 200 GROUP BY project_id, job_id, version_id HAVING count(*) > 1)"
                           ).fetchone()[0] > 0
    finally:
        con.close()

    state, lake_files, aside = _lake_state(wh), manifest(wh / "data"), manifest(wh / "pre-ducklake")
    with Warehouse.open(wh):
        pass
    assert _lake_state(wh) == state and manifest(wh / "data") == lake_files
    assert manifest(wh / "pre-ducklake") == aside
    assert {p.name for p in wh.iterdir()} - {"catalog.sqlite-wal", "catalog.sqlite-shm"} == {
        ".writer.lock", "catalog.sqlite", "data", "pre-ducklake"}


def test_modelarts_etl_migrate_converts_the_same(legacy, tmp_path):
    wh = copy_of(legacy, tmp_path)
    before = legacy_manifest(wh)
    command = [sys.executable, "-m", "pipelines.cli", "migrate", "--warehouse", str(wh)]
    done = subprocess.run(command, cwd=REPO, env=_clean_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("converted ")
    assert_converted(wh, before)
    assert_lake_holds(wh, wh / "pre-ducklake" / "parquet")
    state = _lake_state(wh)
    again = subprocess.run(command, cwd=REPO, env=_clean_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "already a DuckLake warehouse" in again.stdout
    assert _lake_state(wh) == state


@pytest.mark.parametrize("failpoint", [
    "migrate_before_commit",  # the bodies inserted, not committed
    "migrate_committed",  # the bodies committed, nothing derived yet, nothing moved
    "derive_before_commit",  # the conversion's tidy rows inserted, not committed
])
def test_a_conversion_killed_half_way_is_finished_by_the_next_open(legacy, tmp_path, failpoint):
    wh = copy_of(legacy, tmp_path)
    before = legacy_manifest(wh)
    killed = new_open(wh, failpoint)
    assert killed.returncode == -9, (killed.stdout, killed.stderr)
    assert legacy_manifest(wh) == before  # nothing moved, nothing deleted yet
    with Warehouse.open(wh):
        pass
    assert_converted(wh, before)
    counts = assert_lake_holds(wh, wh / "pre-ducklake" / "parquet")
    assert _migrate_steps(wh) == [(counts["raw_payloads"], "migrate")]  # the bodies landed once


def test_what_a_crashed_old_writer_left_converts_to_what_the_old_release_would_repair_it_into(
        release, legacy, tmp_path):
    """The old writer killed right after its raw commit leaves the batch's landing file under its
    temporary name, not derived; the old release's next open publishes and derives it. The
    conversion must land and derive those bodies too. A landing file cut short (a writer killed
    while writing it, before any commit) is skipped, not fatal, and moved aside like the rest."""
    crashed = copy_of(legacy, tmp_path / "crashed")
    late = tmp_path / "late.jsonl"
    late.write_bytes(b"\n".join(iter_corpus(6, seed=12, project_id="proj-b")) + b"\n")
    killed = old(release, crashed, "ingest", str(late), "--project-id", "proj-b", failpoint="raw_committed")
    assert killed.returncode == -9, (killed.stdout, killed.stderr)
    raw_b = crashed / "parquet" / "raw_payloads" / "proj-b"
    assert len(list(raw_b.glob(".raw-*.parquet.tmp"))) == 1

    repaired = tmp_path / "repaired" / "wh"
    shutil.copytree(crashed, repaired)
    old_open(release, repaired)  # what the old release makes of it: the reference

    whole = next(raw_b.glob("raw-*.parquet")).read_bytes()
    (raw_b / ".raw-20991231T000000000000Z-0badc0-0000cafe.parquet.tmp").write_bytes(whole[: len(whole) // 2])
    before = legacy_manifest(crashed)
    with Warehouse.open(crashed):
        pass
    assert_converted(crashed, before)
    assert_lake_holds(crashed, repaired / "parquet")
    con = connect(crashed)
    try:
        assert con.execute("SELECT count(*) FROM raw_payloads WHERE source LIKE '%late.jsonl:%'").fetchone() == (6,)
    finally:
        con.close()


def test_old_files_written_again_after_a_conversion_never_overwrite_what_was_moved_aside(release, legacy, tmp_path):
    """Someone runs today's release on the folder after the conversion: it writes a new
    `modelarts.duckdb` and `parquet/`. The next open converts those too, into pre-ducklake-2/."""
    wh = copy_of(legacy, tmp_path)
    with Warehouse.open(wh):
        pass
    first = manifest(wh / "pre-ducklake")
    extra = tmp_path / "extra.json"
    extra.write_bytes(next(iter_corpus(1, seed=77, project_id="proj-d")))
    old_ok(release, wh, "ingest", str(extra), "--project-id", "proj-d")
    again = legacy_manifest(wh)
    assert "modelarts.duckdb" in again
    with Warehouse.open(wh):
        pass
    assert manifest(wh / "pre-ducklake") == first
    assert legacy_manifest(wh / "pre-ducklake-2") == again
    con = connect(wh)
    try:
        assert con.execute("SELECT count(*) FROM job_versions WHERE project_id = 'proj-d'").fetchone() == (1,)
        assert con.execute("SELECT count(training_job_id) FROM raw_payloads").fetchone() == (0,)
        assert con.execute("SELECT project_id, source, payload_sha256 FROM raw_payloads GROUP BY ALL "
                           "HAVING count(*) > 1").fetchall() == []
    finally:
        con.close()


def test_a_large_old_warehouse_converts_within_the_writers_memory_limit(release, tmp_path):
    """The writer's DuckDB has a memory limit (256 MB by default). An old warehouse of 20,000
    payloads (130 MB of JSON) did not convert under it when all its bodies went in as one insert;
    here the same, scaled down: 4,000 payloads (26 MB) under a 64 MB limit."""
    payloads = tmp_path / "bulk.jsonl"
    payloads.write_bytes(b"\n".join(iter_corpus(4000, seed=31, project_id="proj-big")) + b"\n")
    wh = tmp_path / "wh"
    old_ok(release, wh, "ingest", str(payloads), "--project-id", "proj-big")
    before = legacy_manifest(wh)
    with Warehouse.open(wh, memory_limit="64MB"):
        pass
    assert_converted(wh, before)
    counts = assert_lake_holds(wh, wh / "pre-ducklake" / "parquet")
    assert counts["raw_payloads"] == counts["job_versions"] == 4000


def test_a_landing_file_that_does_not_read_stops_the_conversion_with_a_message_and_changes_nothing(
        legacy, tmp_path):
    wh = copy_of(legacy, tmp_path)
    damaged = sorted((wh / "parquet" / "raw_payloads" / "proj-a").glob("raw-*.parquet"))[0]
    damaged.write_bytes(damaged.read_bytes()[:100])
    before = legacy_manifest(wh)
    with pytest.raises(WarehouseError, match="cannot read the old landing file .*nothing was converted"):
        with Warehouse.open(wh):
            pass
    assert legacy_manifest(wh) == before and not (wh / "pre-ducklake").exists()
    assert not (wh / "catalog.sqlite").exists()  # the catalog this failed open made is removed again


def test_a_reader_of_an_unconverted_folder_is_told_to_migrate(legacy, tmp_path):
    from warehouse import connect
    from warehouse.store import WarehouseError

    wh = copy_of(legacy, tmp_path)
    with pytest.raises(WarehouseError, match="modelarts-etl migrate"):
        connect(wh)
    assert not (wh / "catalog.sqlite").exists()  # a reader converts nothing
