"""What an incremental sync fetches, given what the lists say and what the warehouse holds.

The rule (issue 3): a version stored with a final status never changes again, so it is
never fetched again; new versions and versions not yet final are. A version whose last
detail was rejected is not stored, so it counts as new and is fetched again.

One shortcut on top, from the job list alone: a job whose stored versions are all
final, number exactly `version_count`, and include the job's latest `version_id`, has
nothing new, so even its versions list is skipped. Anything else about the job (a new
version, one deleted, a count that does not match) means the versions list is read.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

Key = tuple[int, int]  # (job_id, version_id)


@dataclass(frozen=True)
class ListedJob:
    job_id: int
    latest_version_id: int | None
    version_count: int | None


@dataclass(frozen=True)
class ListedVersion:
    job_id: int
    version_id: int
    status: int | None


@dataclass
class Plan:
    to_fetch: list[Key] = field(default_factory=list)
    new: int = 0  # not stored (or stored only as a rejected body)
    not_final: int = 0  # stored, but its status may still change
    skipped_final: int = 0


def versions_by_job(states: dict[Key, bool]) -> dict[int, dict[int, bool]]:
    by_job: dict[int, dict[int, bool]] = defaultdict(dict)
    for (job_id, version_id), final in states.items():
        by_job[job_id][version_id] = final
    return by_job


def job_is_settled(job: ListedJob, stored: dict[int, bool]) -> bool:
    """True if the job list alone shows nothing to fetch for this job (see the module docstring)."""
    return (
        job.version_count is not None
        and job.latest_version_id is not None
        and job.version_count == len(stored)
        and job.latest_version_id in stored
        and all(stored.values())
    )


def plan_fetches(listed: list[ListedVersion], states: dict[Key, bool]) -> Plan:
    """Versions to fetch, in (job, version) order; counts of why."""
    plan = Plan()
    for key in sorted({(v.job_id, v.version_id) for v in listed}):
        final = states.get(key)
        if final is None:
            plan.new += 1
            plan.to_fetch.append(key)
        elif final:
            plan.skipped_final += 1
        else:
            plan.not_final += 1
            plan.to_fetch.append(key)
    return plan
