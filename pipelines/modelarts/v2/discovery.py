"""Paging the v2 job search, whichever way the server reads `offset`.

The documents disagree: a page number (0 = first page) or a record offset. The second
request tells them apart: after a full first page, `offset=1` returns the first page's
second job first under the record reading, and a page of wholly new jobs under the page
reading. From then on the offset moves by one page or by the jobs received. Both readings
agree when pages hold one job, so nothing is decided until a page holds two.

Paging stops when a page is empty, when a page brings no job not seen before (a server
that repeats a page cannot keep us looping), when the server's `total` is reached, or at
MAX_PAGES. Results are sorted by create_time ascending, so jobs created meanwhile land on
later pages instead of shifting earlier ones: none is skipped, and none counted twice.

Like v1's discover(), a generator of RawRecords (each page is handed to the warehouse
before it is parsed) that keeps its error in `found.error` instead of raising.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from pipelines.modelarts.client import ModelArtsClient, read_list
from pipelines.modelarts.errors import ApiError, ModelArtsError
from pipelines.modelarts.v2 import api
from pipelines.modelarts.records import RawRecord

MAX_PAGES = 100_000
PAGE, RECORD = "page", "record"


@dataclass
class Search:
    project_id: str
    jobs: dict[str, int | None] = field(default_factory=dict)  # id -> create_time (ms), in listing order
    pages: int = 0
    reading: str | None = None  # PAGE or RECORD once told apart
    warnings: list[str] = field(default_factory=list)
    error: ModelArtsError | None = None


def search_jobs(client: ModelArtsClient, project_id: str, *, limit: int, created_from: int | None,
                found: Search) -> Iterator[RawRecord]:
    try:
        yield from _pages(client, project_id, limit, created_from, found)
    except ModelArtsError as exc:
        found.error = exc


def _pages(client, project_id, limit, created_from, found: Search) -> Iterator[RawRecord]:
    offset, first_ids = 0, None
    for _ in range(MAX_PAGES):
        response = api.search(client, project_id, offset=offset, limit=limit, created_from=created_from)
        found.pages += 1
        yield response.record()
        what = f"job search page at offset {offset} of project {project_id}"
        data = read_list(client, response, what)
        ids = _page_jobs(data, what, found)
        fresh = [job for job in ids if job not in found.jobs]
        for job in fresh:
            found.jobs[job] = ids[job]
        if not ids:
            return
        if not fresh:
            found.warnings.append(f"{what} repeated earlier jobs only; paging stopped there")
            return
        total = data.get("total")
        if isinstance(total, int) and not isinstance(total, bool) and len(found.jobs) >= total:
            return
        if offset == 0 and found.reading is None:
            if len(ids) >= 2:
                first_ids, offset = list(ids), 1  # the probe: tells the two readings apart
                continue
            found.reading, offset = RECORD, 1  # one job a page: both readings are the same
        elif found.reading is None:
            found.reading = RECORD if list(ids)[0] == first_ids[1] else PAGE
            offset = 2 if found.reading == PAGE else 1 + len(ids)
        else:
            if found.reading == PAGE and len(fresh) < len(ids):
                found.warnings.append(f"{what} repeated {len(ids) - len(fresh)} jobs of earlier pages "
                                      "(jobs deleted while paging?)")
            offset += 1 if found.reading == PAGE else len(ids)
    found.warnings.append(f"job search of project {project_id} stopped after {MAX_PAGES} pages")


def _page_jobs(data: dict, what: str, found: Search) -> dict[str, int | None]:
    """The page's jobs in order: id -> create_time; entries without a UUID id are skipped, with a warning."""
    items = data.get("items")
    if items is None:
        return {}
    if not isinstance(items, list):
        raise ApiError(f"the {what} has no `items` array")
    out = {}
    for item in items:
        meta = item.get("metadata") if isinstance(item, dict) else None
        job_id = meta.get("id") if isinstance(meta, dict) else None
        if not api.is_job_id(job_id):
            found.warnings.append(f"{what}: an entry without a usable job id was skipped")
            continue
        created = meta.get("create_time")
        out[job_id] = created if isinstance(created, int) and not isinstance(created, bool) else None
    return out
