"""Listing: which jobs and versions a project has, by paging the two list endpoints.

Paging never trusts the server to honour `per_page`: it goes on until the server's
total is reached or a page comes back empty. A page that adds nothing new also ends
it, so a server that ignores `page` cannot keep us looping.

`discover()` is a generator of RawRecords: every list page is handed to the warehouse
before it is parsed, and what the pages say is collected on the side, in a
`Discovery`. An error does not escape the generator (it would take the batch being
landed with it); it is stored in `Discovery.error` for the caller to raise after landing.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial

from pipelines.modelarts.client import MAX_ID, ModelArtsClient, Response, read_list
from pipelines.modelarts.errors import FATAL_ERRORS, ApiError, ModelArtsError
from pipelines.modelarts.plan import ListedJob, ListedVersion, job_is_settled, versions_by_job
from pipelines.modelarts.streaming import bounded_map
from warehouse.records import RawRecord

MAX_PAGE = 65535  # the documented upper bound of `page`


@dataclass
class Discovery:
    project_id: str
    jobs: list[ListedJob] = field(default_factory=list)
    versions: list[ListedVersion] = field(default_factory=list)
    settled_jobs: int = 0  # jobs whose versions list was not needed (see plan.job_is_settled)
    settled_versions: int = 0
    pages: int = 0
    warnings: list[str] = field(default_factory=list)
    error: ModelArtsError | None = None


@dataclass
class _JobListing:
    job_id: int
    responses: list[Response] = field(default_factory=list)
    versions: list[ListedVersion] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: ModelArtsError | None = None


def discover(client: ModelArtsClient, project_id: str, states: dict, *, per_page: int, concurrency: int,
             found: Discovery) -> Iterator[RawRecord]:
    """List pages as records; jobs and versions into `found` (see the module docstring)."""
    try:
        yield from _job_pages(client, project_id, per_page, concurrency, found)
        stored = versions_by_job(states)
        to_list = []
        for job in found.jobs:
            if job_is_settled(job, stored.get(job.job_id, {})):
                found.settled_jobs += 1
                found.settled_versions += job.version_count
            else:
                to_list.append(job)
        yield from _version_pages(client, project_id, to_list, per_page, concurrency, found)
    except ModelArtsError as exc:
        found.error = exc


def _job_pages(client: ModelArtsClient, project_id: str, per_page: int, concurrency: int,
               found: Discovery) -> Iterator[RawRecord]:
    """Page 1 alone; its total and size suggest how many pages follow, and those are read at once.

    The suggestion is only a guess (the server may change its page size, or jobs may
    appear meanwhile), so afterwards pages are read one by one until the total is
    reached or a page comes back empty.
    """
    seen: dict[int, ListedJob] = {}
    response = client.list_jobs(project_id, page=1, per_page=per_page)
    found.pages += 1
    yield response.record()
    size, total, _ = _read_job_page(client, response, 1, seen, found)
    if not size or _reached(total, len(seen)):
        found.jobs = list(seen.values())
        return
    page = 2
    if isinstance(total, int):
        guessed = range(2, min(MAX_PAGE, -(-total // size)) + 1)
        sizes = []
        with closing(bounded_map(partial(_job_page, client, project_id, per_page), guessed, workers=concurrency,
                                 buffer=4 * concurrency, name="jobs")) as outcomes:
            for outcome in outcomes:
                if outcome.error is not None:
                    raise outcome.error
                found.pages += 1
                yield outcome.value.record()
                sizes.append(_read_job_page(client, outcome.value, outcome.item, seen, found)[0])
        if 0 in sizes or _reached(total, len(seen)):
            found.jobs = list(seen.values())
            return
        page = guessed.stop
    for page in range(page, MAX_PAGE + 1):
        response = client.list_jobs(project_id, page=page, per_page=per_page)
        found.pages += 1
        yield response.record()
        size, total, fresh = _read_job_page(client, response, page, seen, found)
        if not size or _reached(total, len(seen)):
            break
        if not fresh:
            found.warnings.append(f"job list page {page} of project {project_id} repeated earlier jobs only; "
                                  "paging stopped there")
            break
    found.jobs = list(seen.values())


def _job_page(client: ModelArtsClient, project_id: str, per_page: int, page: int) -> Response:
    return client.list_jobs(project_id, page=page, per_page=per_page)


def _read_job_page(client: ModelArtsClient, response: Response, page: int, seen: dict[int, ListedJob],
                   found: Discovery) -> tuple[int, object, int]:
    """Add the page's jobs to `seen`; return (entries on the page, the server's total, new jobs)."""
    what = f"job list page {page} of project {response.project_id}"
    data = read_list(client, response, what)
    items = _items(data, "jobs", what)
    fresh = 0
    for item in items:
        job = _listed_job(item)
        if job is None:
            found.warnings.append(f"{what}: an entry without a usable job_id was skipped")
        elif job.job_id not in seen:
            seen[job.job_id] = job
            fresh += 1
    return len(items), data.get("job_total_count"), fresh


def _version_pages(client: ModelArtsClient, project_id: str, jobs: list[ListedJob], per_page: int,
                   concurrency: int, found: Discovery) -> Iterator[RawRecord]:
    """The versions lists of many jobs at once; each job's pages one after another."""
    list_one = partial(_list_job_versions, client, project_id, per_page=per_page)
    with closing(bounded_map(list_one, jobs, workers=concurrency, buffer=4 * concurrency, name="list")) as outcomes:
        for outcome in outcomes:
            if outcome.error is not None:
                raise outcome.error  # not an API answer: a bug, let it show
            listing: _JobListing = outcome.value
            found.pages += len(listing.responses)
            for response in listing.responses:
                yield response.record()
            found.versions.extend(listing.versions)
            found.warnings.extend(listing.warnings)
            if listing.error is not None:
                if isinstance(listing.error, FATAL_ERRORS):
                    raise listing.error
                # e.g. the job was deleted after the job list was read: the next sync sees it gone
                found.warnings.append(f"job {listing.job_id}: {listing.error}")


def _list_job_versions(client: ModelArtsClient, project_id: str, job: ListedJob, *, per_page: int) -> _JobListing:
    listing = _JobListing(job.job_id)
    seen: dict[int, ListedVersion] = {}
    try:
        for page in range(1, MAX_PAGE + 1):  # page=0 would mean "no paging" to this endpoint
            response = client.list_versions(project_id, job.job_id, page=page, per_page=per_page)
            listing.responses.append(response)
            what = f"version list page {page} of job {job.job_id}"
            data = read_list(client, response, what)
            items = _items(data, "versions", what)
            fresh = 0
            for item in items:
                version = _listed_version(item, job.job_id)
                if version is None:
                    listing.warnings.append(f"{what}: an entry without a usable version_id was skipped")
                elif version.version_id not in seen:
                    seen[version.version_id] = version
                    fresh += 1
            if not items or not fresh or _reached(data.get("version_count"), len(seen)):
                break
    except ModelArtsError as exc:
        listing.error = exc
    listing.versions = list(seen.values())
    return listing


def _items(data: dict, name: str, what: str) -> list:
    items = data.get(name)
    if items is None:
        return []
    if not isinstance(items, list):
        raise ApiError(f"the {what} has no `{name}` array")
    return items


def _reached(total, count: int) -> bool:
    return isinstance(total, int) and not isinstance(total, bool) and count >= total


_MAX_ID_DIGITS = len(str(MAX_ID))


def _as_id(value) -> int | None:
    """An id from a list entry: a non-negative 64-bit integer, or a string of ASCII digits that is one.

    Anything else (`../`, quotes, SQL, "²", 5,000 digits, 2**64) is not an id: the entry is skipped,
    so no request is ever built from it.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= _MAX_ID_DIGITS):
            return None
        value = int(text)
    if isinstance(value, int) and 0 <= value <= MAX_ID:
        return value
    return None


def _listed_job(item) -> ListedJob | None:
    if not isinstance(item, dict) or _as_id(item.get("job_id")) is None:
        return None
    return ListedJob(_as_id(item["job_id"]), _as_id(item.get("version_id")), _as_id(item.get("version_count")))


def _listed_version(item, job_id: int) -> ListedVersion | None:
    if not isinstance(item, dict) or _as_id(item.get("version_id")) is None:
        return None
    return ListedVersion(job_id, _as_id(item["version_id"]), _as_id(item.get("status")))
