"""Zero loss under faults: three hourly syncs of a few hundred versions through ~10 % mixed faults.

The simulator injects, on about one request in ten, every transient fault it knows
(429 with Retry-After, 500, 503, an answer slower than the client's read timeout,
a dropped connection, a body cut short on the wire), and gives about one version in
ten a faulty payload (invalid JSON, `is_success: false`, wrong types, unknown fields).
Between syncs its clock moves: running versions finish or progress, new versions and
jobs appear. After each sync the ledger (tests/ledger.py) compares the simulator's
truth with the warehouse one version at a time and must find nothing unexplained.

Backoff is capped at a few hundredths of a second and the 429s say Retry-After: 0, so it runs in seconds;
MODELARTS_SOAK=1 runs thirty syncs of a world of ~1,200 versions instead of three (about a minute).
"""
from __future__ import annotations

import os
from collections import Counter

from ledger import ledger, no_orphans
from pipelines.modelarts.auth import StaticToken
from pipelines.modelarts.retry import RetryPolicy
from pipelines.modelarts.simulator import PAYLOAD_FAULTS, TRANSIENT_FAULTS, SimulatorServer, TransientFaults, World
from pipelines.modelarts.sync import Target, sync_projects
from test_storage import assert_every_row_is_in_parquet
from warehouse.store import Warehouse

TOKEN = "ledger-token-1b7c"
SOAK = os.environ.get("MODELARTS_SOAK") == "1"
SYNCS = 30 if SOAK else 3
# Retries outnumber the faults a path can meet, so every transient fault must end as data.
RETRY = RetryPolicy(max_retries=5, backoff_base=0.005, backoff_max=0.02)


def _sync(wh, sim):
    return sync_projects(wh, [Target(sim.url, p) for p in sim.world.project_ids], StaticToken(TOKEN),
                         concurrency=4, per_page=25, timeout=(1.0, 0.4), retry=RETRY, raise_on_error=False)


def test_three_syncs_through_mixed_faults_lose_nothing_duplicate_nothing_and_explain_every_fault(tmp_path):
    world = World(jobs=150 if SOAK else 60, versions_per_job=(1, 8), seed=61, running_share=0.3,
                  payload_fault_rate=0.1)
    faults = TransientFaults(rate=0.1, seed=62, max_per_path=3, retry_after=0, slow_seconds=0.6)
    pid = world.project_ids[0]
    injected: Counter[str] = Counter()
    payload_faults: Counter[str] = Counter()
    with SimulatorServer(world, token=TOKEN, faults=faults, page_cap=20) as sim, \
            Warehouse.open(tmp_path / "wh") as wh:
        for n in range(SYNCS):
            if n:
                changes = world.advance(6 * 3600)
                assert changes.new or changes.finished or changes.still_running
            sim.reset_counts()
            report = _sync(wh, sim)
            project = report.projects[0]
            injected.update(sim.fault_counts)
            differences = ledger(wh.con, world, pid) + no_orphans(wh.con)
            print(f"sync {n + 1}: {project.line()}; faults injected {dict(sim.fault_counts)}; "
                  f"{len(world.truth())} versions at the source; ledger: {len(differences)} unexplained")
            for line in differences:
                print("  ", line)
            assert report.ok, project.error
            assert differences == []
            # transient faults were retried and ended as data: nothing failed, no error answer was landed
            assert project.failed == 0 and project.failures == []
            assert project.retried >= sum(sim.fault_counts.values()) > 0
            assert wh.con.execute("SELECT count(*) FROM rejected_payloads WHERE error_kind = 'http_error'"
                                  ).fetchall() == [(0,)]
            # exactly once: one raw row per distinct body of a version, however often it was fetched
            assert wh.con.execute("SELECT count(*) FROM (SELECT source, payload_sha256 FROM raw_payloads "
                                  "GROUP BY ALL HAVING count(*) > 1)").fetchall() == [(0,)]
        payload_faults.update(f for t in world.truth() for f in t.faults)
    assert set(injected) == set(TRANSIENT_FAULTS), injected  # every kind was met at least once
    assert set(payload_faults) == set(PAYLOAD_FAULTS), payload_faults
    assert_every_row_is_in_parquet(tmp_path / "wh")


def test_the_ledger_sees_a_lost_a_duplicated_and_a_partial_version(tmp_path):
    """The ledger is only worth its silence if it speaks: break a warehouse three ways and hear it."""
    world = World(jobs=5, versions_per_job=(2, 3), seed=63)
    pid = world.project_ids[0]
    with SimulatorServer(world, token=TOKEN) as sim, Warehouse.open(tmp_path / "wh") as wh:
        _sync(wh, sim)
        assert ledger(wh.con, world, pid) == []
        (a_job, a), (b_job, b), (c_job, c) = wh.con.execute(
            "SELECT job_id, version_id FROM job_versions v WHERE EXISTS (SELECT 1 FROM parameters p "
            "WHERE p.version_id = v.version_id) ORDER BY 1, 2 LIMIT 3").fetchall()
        wh.con.execute("DELETE FROM job_versions WHERE version_id = ?", [a])
        wh.con.execute("INSERT INTO job_versions SELECT * FROM job_versions WHERE version_id = ?", [b])
        wh.con.execute("DELETE FROM parameters WHERE version_id = ? AND position = 0", [c])
        found = "\n".join(ledger(wh.con, world, pid) + no_orphans(wh.con))
    assert f"job {a_job} version {a} (clean): missing from job_versions" in found
    assert f"job {b_job} version {b} (clean): 2 rows in job_versions" in found
    assert f"job {c_job} version {c} (clean): " in found and "rows in parameters" in found
    assert "rows of parameters without their version" in found

