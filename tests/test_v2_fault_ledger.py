"""The v2 fault ledger: transient faults and hostile payloads over three syncs, checked job by job
against the simulator's truth.

Every job the simulator holds ends, after each sync, in exactly one of:
- a v2_jobs row with the truth's phase, its tasks' metric series (6 per task) and every event,
  plus the field issues its payload faults must cause (wrong_types: the three fields corrupted;
  unknown_fields: an unknown_field issue);
- a rejected_payloads row for its detail (invalid_json: the body is not JSON; not_success: a
  ModelArts error with HTTP 400), and no v2_jobs row.
Transient faults (429, 5xx, slow, dropped, truncated) end as data. Nothing is stored twice.
"""
from __future__ import annotations

from collections import Counter

from conftest import rows
from pipelines.modelarts.auth import StaticToken
from pipelines.modelarts.retry import RetryPolicy
from pipelines.modelarts.simulator import PAYLOAD_FAULTS, TRANSIENT_FAULTS, SimulatorServer, TransientFaults, World
from pipelines.modelarts.simulator.v2_world import DEFAULT_V2_PROJECT_ID as PROJECT, WRONG_TYPES, V2World
from pipelines.modelarts.sync import Target, sync_projects
from warehouse.store import Warehouse


def _check(wh_dir, world: V2World) -> Counter:
    stored = dict(rows(wh_dir, "SELECT training_job_id, phase FROM v2_jobs WHERE project_id = ?", [PROJECT]))
    series = Counter(j for (j,) in rows(wh_dir, "SELECT training_job_id FROM v2_metric_series"))
    events = Counter(j for (j,) in rows(wh_dir, "SELECT training_job_id FROM v2_events"))
    issues = {(j, f, p) for j, f, p in rows(wh_dir, "SELECT training_job_id, field, problem FROM v2_field_issues")}
    rejected = {s.rsplit("/", 1)[1] for (s,) in rows(wh_dir, "SELECT source FROM rejected_payloads")
                if "/training-jobs/" in s}
    seen = Counter()
    for truth in world.truth(PROJECT):
        job = truth.job_id
        if {"invalid_json", "not_success"} & set(truth.faults):
            assert job not in stored and job in rejected, (job, truth.faults)
            seen["rejected"] += 1
            continue
        assert stored.get(job) == truth.phase, (job, truth)
        assert series[job] == 6 * len(truth.tasks), job
        assert events[job] == truth.events, job
        if "wrong_types" in truth.faults:
            assert {(f, p) for j, f, p in issues if j == job} >= set(WRONG_TYPES.items()), job
        if "unknown_fields" in truth.faults:
            assert any(j == job and p == "unknown_field" for j, _, p in issues), job
        seen["stored"] += 1
        seen.update(truth.faults)
    for table, key in (("v2_jobs", "training_job_id"), ("v2_metric_series", "training_job_id, task, metric"),
                       ("v2_events", "training_job_id, time_text, level, source, message")):
        assert rows(wh_dir, f"SELECT count(*) - count(DISTINCT ({key})) FROM {table}") == [(0,)], table
    return seen


def test_three_syncs_with_faults_end_as_the_simulators_truth(wh_dir):
    world = V2World(jobs=30, seed=31, running_share=0.4, payload_fault_rate=0.35, payload_faults=PAYLOAD_FAULTS,
                    page_cap=9, offset_reading="record")
    faults = TransientFaults(rate=0.1, kinds=TRANSIENT_FAULTS, seed=3, max_per_path=2, slow_seconds=1.2)
    seen = Counter()
    with SimulatorServer(World(jobs=1), token="t", v2=world, faults=faults) as sim, Warehouse.open(wh_dir) as wh:
        for n in range(3):
            if n:
                world.advance(3 * 3600, new_jobs=4)
            report = sync_projects(wh, [Target(sim.url, PROJECT)], StaticToken("t"), api="v2", concurrency=4,
                                   timeout=(2.0, 0.6), retry=RetryPolicy(max_retries=4, backoff_base=0.01,
                                                                         backoff_max=0.05))
            assert report.failed == 0, report.projects[0].failures
            seen = _check(wh_dir, world)
        injected = sum(sim.fault_counts.values())
    assert injected >= 10 and len(sim.fault_counts) >= 4, sim.fault_counts
    assert seen["rejected"] >= 3 and seen["stored"] >= 25
    assert seen["wrong_types"] and seen["unknown_fields"], seen
