"""The one shape in which bytes enter the warehouse, whether fetched over HTTP or read from a file."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

VERSION_DETAIL = "version_detail"
JOB_LIST = "job_list"
VERSION_LIST = "version_list"
V2_JOB_SEARCH = "v2_job_search"
V2_JOB_DETAIL = "v2_job_detail"
V2_METRICS = "v2_metrics"
V2_EVENTS = "v2_events"
V2_KINDS = (V2_JOB_SEARCH, V2_JOB_DETAIL, V2_METRICS, V2_EVENTS)
KINDS = (VERSION_DETAIL, JOB_LIST, VERSION_LIST) + V2_KINDS
# what a ModelArts project id may hold: it becomes part of URLs and of stored keys
PROJECT_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(slots=True)
class RawRecord:
    """A body exactly as received, plus what we knew when we received it.

    `job_id`/`version_id` are hints from the request URL (or None for files); the
    payload's own ids win when they are usable. Only `version_detail` records are
    flattened into tidy tables; list pages are landed for the record. v2 bodies carry
    `training_job_id` (a UUID string) instead, and are flattened by flatten_v2.py.
    """

    body: bytes
    project_id: str
    source: str
    kind: str = VERSION_DETAIL
    http_status: int | None = None
    job_id: int | None = None
    version_id: int | None = None
    fetched_at: datetime = field(default_factory=utc_now)
    training_job_id: str | None = None
