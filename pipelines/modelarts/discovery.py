"""Listing: which jobs and versions a project has, by paging the two list endpoints.

Paging never trusts the server to honour `per_page`, nor its totals: it goes on until
the server's total is reached, skipping over a few empty pages while the total says
more exist (a hole mid-listing), and stops at a page that adds nothing new (a server
that ignores `page`). A listing that ends short of its total is a gap: a warning with
the figures, in `Discovery.gaps`, and the job list is then not taken as complete (no
job is marked deleted from it). The versions it missed are listed again next sync.

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
from pipelines.modelarts.records import RawRecord

MAX_PAGE = 65535  # the documented upper bound of `page`
MAX_EMPTY_PAGES = 3  # empty pages in a row skipped over while the server's total says more exist


@dataclass
class Discovery:
    project_id: str
    jobs: list[ListedJob] = field(default_factory=list)
    versions: list[ListedVersion] = field(default_factory=list)
    settled_jobs: int = 0  # jobs whose versions list was not needed (see plan.job_is_settled)
    settled_versions: int = 0
    pages: int = 0
    warnings: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)  # listings that ended short of what the server counts
    job_list_complete: bool = False  # True: the server's job total was reached (only then is a job gone)
    error: ModelArtsError | None = None

    def note_gap(self, text: str) -> None:
        self.gaps.append(text)
        self.warnings.append(text)


@dataclass
class _JobListing:
    job_id: int
    responses: list[Response] = field(default_factory=list)
    versions: list[ListedVersion] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    gap: str | None = None
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
    """Page 1, then windows of pages read at once, judged in page order.

    While the server's total says more jobs exist, a window is as many pages as that
    would take (at most `concurrency`), and empty pages are skipped over, up to
    MAX_EMPTY_PAGES in a row: a hole in the middle of a listing does not end it, and a
    total of 10**12 for 30 jobs costs a few pages, not 65,535. Paging also ends when the
    total is reached, or a page repeats earlier jobs only (the server ignores `page`).
    A total still not reached then is a gap, warned about and recorded in `found.gaps`.
    """
    seen: dict[int, ListedJob] = {}
    paging = _Paging(f"job list of project {project_id}", "jobs")
    page, window = 1, 1
    while page <= MAX_PAGE and not paging.stopped:
        pages = range(page, min(page + window, MAX_PAGE + 1))
        responses = []
        for number, response in _read_pages(client, project_id, per_page, pages, concurrency):
            found.pages += 1
            yield response.record()
            responses.append((number, response))
        for number, response in sorted(responses, key=lambda pair: pair[0]):
            size, total, fresh = _read_job_page(client, response, number, seen, found)
            paging.saw(number, size, fresh, total, len(seen))
        page = pages.stop
        window = paging.window(concurrency, len(seen))
    found.jobs = list(seen.values())
    gap = paging.gap(len(seen), out_of_pages=not paging.stopped)
    if gap:
        found.note_gap(gap)
    found.job_list_complete = gap is None and paging.total is not None  # no total: nothing proves it whole


def _read_pages(client: ModelArtsClient, project_id: str, per_page: int, pages: range,
                concurrency: int) -> Iterator[tuple[int, Response]]:
    """(page, answer) for every page of `pages`, in the order they arrive."""
    if len(pages) == 1:
        yield pages[0], client.list_jobs(project_id, page=pages[0], per_page=per_page)
        return
    with closing(bounded_map(partial(_job_page, client, project_id, per_page), pages, workers=concurrency,
                             buffer=len(pages), name="jobs")) as outcomes:
        for outcome in outcomes:
            if outcome.error is not None:
                raise outcome.error
            yield outcome.item, outcome.value


def _job_page(client: ModelArtsClient, project_id: str, per_page: int, page: int) -> Response:
    return client.list_jobs(project_id, page=page, per_page=per_page)


class _Paging:
    """When to stop paging one listing, and whether it ended complete (see _job_pages)."""

    def __init__(self, what: str, items: str):
        self.what, self.items = what, items
        self.total: int | None = None
        self.size = 0  # the largest page seen: the server's real page size
        self.empty_run = 0
        self.pages = 0
        self.stopped: str | None = None  # why paging ended early; None while it goes on

    def saw(self, page: int, size: int, fresh: int, total, count: int) -> None:
        self.pages += 1
        if _is_count(total):
            self.total = total
        self.size = max(self.size, size)
        self.empty_run = self.empty_run + 1 if size == 0 else 0
        if self.stopped:
            return
        if self.total is not None and count >= self.total:
            self.stopped = "complete"
        elif size and not fresh:
            self.stopped = f"page {page} repeated earlier {self.items} only"
        elif size == 0 and (self.total is None or self.empty_run >= MAX_EMPTY_PAGES):
            self.stopped = "complete" if self.total is None else f"{self.empty_run} empty pages in a row"

    def window(self, concurrency: int, count: int) -> int:
        """Pages to ask for at once next: what the total says is left, at most `concurrency`."""
        if self.total is None or self.empty_run or not self.size:
            return 1
        return max(1, min(concurrency, -(-(self.total - count) // self.size)))

    def gap(self, count: int, *, out_of_pages: bool) -> str | None:
        """The warning for a listing that ended short of its total (or of its pages), else None."""
        short = self.total is not None and count < self.total
        repeated = bool(self.stopped and self.stopped.startswith("page "))
        if not (short or out_of_pages or repeated):
            return None
        said = f"the server says {self.total}" if self.total is not None else "the server gives no total"
        why = self.stopped if self.stopped and self.stopped != "complete" else f"page {MAX_PAGE} reached"
        return (f"{self.what} is incomplete: {said}, {count} {self.items} found in {self.pages} pages "
                f"(paging stopped: {why}); listed again next sync")


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
            if listing.gap:
                found.note_gap(listing.gap)
            if listing.error is not None:
                if isinstance(listing.error, FATAL_ERRORS):
                    raise listing.error
                # e.g. the job was deleted after the job list was read: the next sync sees it gone
                found.warnings.append(f"job {listing.job_id}: {listing.error}")


def _list_job_versions(client: ModelArtsClient, project_id: str, job: ListedJob, *, per_page: int) -> _JobListing:
    """One job's versions list, page by page, with the stop rules of the job list (see _Paging)."""
    listing = _JobListing(job.job_id)
    seen: dict[int, ListedVersion] = {}
    paging = _Paging(f"version list of job {job.job_id}", "versions")
    page = 0
    try:
        while page < MAX_PAGE and not paging.stopped:
            page += 1  # from 1: page=0 would mean "no paging" to this endpoint
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
            total = data.get("version_count")
            paging.saw(page, len(items), fresh, total if _is_count(total) else job.version_count, len(seen))
    except ModelArtsError as exc:
        listing.error = exc
    listing.versions = list(seen.values())
    if listing.error is None:
        listing.gap = paging.gap(len(seen), out_of_pages=not paging.stopped)
    return listing


def _items(data: dict, name: str, what: str) -> list:
    items = data.get(name)
    if items is None:
        return []
    if not isinstance(items, list):
        raise ApiError(f"the {what} has no `{name}` array")
    return items


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


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
