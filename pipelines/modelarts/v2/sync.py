"""Sync one project's v2 jobs: search, plan, then each job's detail, its tasks' metrics and its events.

Mirrors the v1 sync (pipelines/modelarts/sync.py): one stream of records into one
`wh.land(...)` call, every body landed before it is parsed, fetching on `concurrency`
threads, a failed body reported and fetched again next sync. The warehouse writer `wh`
answers `v2_job_states(project)` and `v2_listed_jobs(project)` (what is stored and what
the search listed), so this module imports nothing of storage.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field

import orjson

from pipelines.modelarts.client import ModelArtsClient, Response
from pipelines.modelarts.errors import ModelArtsError
from pipelines.modelarts.streaming import bounded_map
from pipelines.modelarts.v2 import api
from pipelines.modelarts.v2.discovery import Search, search_jobs
from pipelines.modelarts.v2.plan import created_from, plan_fetches
from pipelines.modelarts import failpoints
from pipelines.modelarts.records import RawRecord

MAX_EVENT_PAGES = 1000


@dataclass
class _JobFetch:
    job_id: str
    responses: list[Response] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@dataclass
class _Tally:
    fetched: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    error: ModelArtsError | None = None


def sync_project_v2(wh, client: ModelArtsClient, project, *, concurrency: int, limit: int = api.MAX_SEARCH_LIMIT,
                    progress=None, land_batch: int = 250) -> None:
    """One project's v2 jobs into `wh`, filling `project` (a sync.ProjectReport) as it goes."""
    started = time.perf_counter()
    requests_before, retries_before = client.stats.totals()
    try:
        stored = wh.v2_job_states(project.project_id)
        since = created_from(wh.v2_listed_jobs(project.project_id), stored)
        found, tally = Search(project.project_id), _Tally()
        records = _records(client, project, stored, since, found, tally, concurrency, limit, progress)
        loaded = wh.land(records, batch_records=land_batch)
        project.landed += loaded.landed
        project.rejected += loaded.rejected
        project.versions_loaded += loaded.v2_jobs_loaded
        project.field_issues += loaded.field_issues
        for error in (found.error, tally.error):
            if error is not None:
                raise error
    finally:
        requests_after, retries_after = client.stats.totals()
        project.requests += requests_after - requests_before
        project.retried += retries_after - retries_before
        project.elapsed += time.perf_counter() - started


def _records(client, project, stored, since, found: Search, tally: _Tally, concurrency, limit,
             progress) -> Iterator[RawRecord]:
    yield from search_jobs(client, project.project_id, limit=limit, created_from=since, found=found)
    project.warnings += found.warnings
    project.jobs += len(found.jobs)
    if found.error is not None:
        return
    plan = plan_fetches(list(found.jobs), stored)
    project.listed += len(plan.to_fetch) + plan.skipped_final
    project.skipped_final += plan.skipped_final
    project.jobs_unchanged += plan.skipped_final
    project.to_fetch += len(plan.to_fetch)
    if progress:
        progress(project.project_id, 0, len(plan.to_fetch))
    yield from _fetch_jobs(client, project.project_id, plan.to_fetch, concurrency, tally, progress)
    project.fetched += tally.fetched
    project.failed += tally.failed
    project.failures += tally.failures


def _fetch_jobs(client, project_id: str, job_ids: list[str], concurrency: int, tally: _Tally,
                progress) -> Iterator[RawRecord]:
    def fetch(job_id):
        return fetch_job(client, project_id, job_id)

    done = 0
    try:
        with closing(bounded_map(fetch, job_ids, workers=concurrency, buffer=max(16, 4 * concurrency),
                                 name="v2")) as outcomes:
            for outcome in outcomes:
                done += 1
                if outcome.error is not None:
                    raise outcome.error
                job: _JobFetch = outcome.value
                tally.failures += job.failures
                if job.responses and job.responses[0].kind == "v2_job_detail":
                    tally.fetched += 1
                else:
                    tally.failed += 1
                for response in job.responses:
                    yield response.record()
                failpoints.hit("sync_detail_fetched")
                if progress:
                    progress(project_id, done, len(job_ids))
    except ModelArtsError as exc:
        tally.error = exc


def fetch_job(client: ModelArtsClient, project_id: str, job_id: str) -> _JobFetch:
    """The detail, then the metrics of each task it names, then every page of its events."""
    job = _JobFetch(job_id)
    detail = api.detail(client, project_id, job_id)
    if not _answered(job, detail, "detail"):
        return job
    if detail.status != 200:
        return job  # landed as it came: the warehouse rejects it, and it is fetched again next sync
    for task in _tasks(detail.body):
        _answered(job, api.metrics(client, project_id, job_id, task), f"metrics of {task}")
    _events(client, project_id, job)
    return job


def _events(client: ModelArtsClient, project_id: str, job: _JobFetch) -> None:
    seen: set[bytes] = set()
    offset = 0
    for _ in range(MAX_EVENT_PAGES):
        response = api.events(client, project_id, job.job_id, offset=offset)
        if not _answered(job, response, f"events at offset {offset}") or response.status != 200:
            return
        events = _event_list(response.body)
        fresh = {_event_key(e) for e in events} - seen
        seen |= fresh
        total = _int(_field(response.body, "total"))
        offset += len(events)
        if not events or not fresh or len(events) < api.EVENTS_LIMIT or (total is not None and offset >= total):
            return


def _answered(job: _JobFetch, response: Response, what: str) -> bool:
    if response.status is None:
        job.failures.append(f"v2 job {job.job_id} {what}: {response.error}")
        return False
    job.responses.append(response)
    return True


def _tasks(body: bytes) -> list[str]:
    """The task ids of a detail (`status.tasks`) that may enter a URL; others are skipped."""
    status = _field(body, "status")
    tasks = status.get("tasks") if isinstance(status, dict) else None
    return [t for t in tasks if isinstance(t, str) and api.TASK.match(t) and ".." not in t] \
        if isinstance(tasks, list) else []


def _event_list(body: bytes) -> list:
    events = _field(body, "events")
    return events if isinstance(events, list) else []


def _event_key(event) -> bytes:
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS)


def _field(body: bytes, name: str):
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return data.get(name) if isinstance(data, dict) else None


def _int(value) -> int | None:
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
