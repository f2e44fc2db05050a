"""What an incremental v2 sync fetches.

A job stored with a final phase (statuses.FINAL_PHASES) is never fetched again, nor its
metrics and events; every other job is. The search can only filter on create_time, so a
sync searches from the oldest listed job that is not stored as final (a job whose detail
never arrived is listed but not stored, so it is searched, and fetched, again); when
every listed job is final, from the newest one, which the search then returns alone:
a sync with nothing new makes search calls only.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Plan:
    to_fetch: list[str] = field(default_factory=list)
    new: int = 0
    not_final: int = 0
    skipped_final: int = 0


def created_from(listed: dict[str, int | None], stored: dict[str, tuple[bool, int | None]]) -> int | None:
    """The create_time (epoch ms) to search from, or None for the whole list."""
    if not listed:
        return None
    open_jobs = [listed[j] for j in listed if not stored.get(j, (False, None))[0]]
    if any(t is None for t in open_jobs):
        return None
    if open_jobs:
        return min(open_jobs)
    known = [t for t in listed.values() if t is not None]
    return max(known) if known else None


def plan_fetches(found: list[str], stored: dict[str, tuple[bool, int | None]]) -> Plan:
    """Jobs to fetch: found and not stored, found or stored and not final. Final ones are skipped."""
    plan = Plan()
    for job_id in dict.fromkeys(list(found) + [j for j, (final, _) in stored.items() if not final]):
        final = stored.get(job_id, (None, None))[0]
        if final is None:
            plan.new += 1
            plan.to_fetch.append(job_id)
        elif final:
            plan.skipped_final += 1
        else:
            plan.not_final += 1
            plan.to_fetch.append(job_id)
    return plan
