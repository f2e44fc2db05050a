"""The four v2 requests, built on `ModelArtsClient.request` (auth, retries, rate, deadlines, limits).

Ids enter a URL only once checked: a training job id is a UUID, a task id a short plain
name (`worker-0`), so nothing a server sends can steer a request to another path.
"""
from __future__ import annotations

import re

import orjson

from pipelines.modelarts.client import ModelArtsClient, Response, project_segment
from pipelines.modelarts.errors import ApiError
from pipelines.modelarts.records import V2_EVENTS, V2_JOB_DETAIL, V2_JOB_SEARCH, V2_METRICS

UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
TASK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_SEARCH_LIMIT = 50  # documented: 1-50
EVENTS_LIMIT = 100  # documented: 1-100
FAR_FUTURE_MS = 253402300799999  # the upper end of the create_time filter


def is_job_id(value) -> bool:
    return isinstance(value, str) and UUID.match(value) is not None


def job_segment(value) -> str:
    if not is_job_id(value):
        raise ApiError(f"refusing to request training job id {repr(value)[:80]}: not a v2 job id (a UUID)")
    return value


def task_segment(value) -> str:
    if not (isinstance(value, str) and TASK.match(value) and ".." not in value):
        raise ApiError(f"refusing to request task {repr(value)[:80]}: not a task id like worker-0")
    return value


def _jobs_url(client: ModelArtsClient, project_id: str, job_id: str, tail: str = "", **query) -> str:
    return client.url(f"/v2/{project_segment(project_id)}/training-jobs/{job_segment(job_id)}{tail}", **query)


def search(client: ModelArtsClient, project_id: str, *, offset: int, limit: int,
           created_from: int | None = None) -> Response:
    """One search page, oldest first, so jobs created while paging land on later pages.

    The body says what was asked; the recorded source adds `#offset=..&limit=..` (a fragment,
    never sent), so that two pages are two raw keys even when they come from one URL.
    """
    body = {"offset": offset, "limit": min(limit, MAX_SEARCH_LIMIT), "sort_by": "create_time", "order": "asc"}
    if created_from is not None:
        body["filters"] = [{"key": "create_time", "operator": "between",
                            "value": [str(created_from), str(FAR_FUTURE_MS)]}]
    url = client.url(f"/v2/{project_segment(project_id)}/training-job-searches")
    response = client.request("POST", url, project_id=project_id, kind=V2_JOB_SEARCH, data=orjson.dumps(body))
    response.url = f"{url}#offset={offset}&limit={body['limit']}" + (
        f"&created_from={created_from}" if created_from is not None else "")
    return response


def detail(client: ModelArtsClient, project_id: str, job_id: str) -> Response:
    return _get(client, _jobs_url(client, project_id, job_id), project_id, V2_JOB_DETAIL, job_id)


def metrics(client: ModelArtsClient, project_id: str, job_id: str, task: str) -> Response:
    url = _jobs_url(client, project_id, job_id, f"/metrics/{task_segment(task)}")
    return _get(client, url, project_id, V2_METRICS, job_id)


def events(client: ModelArtsClient, project_id: str, job_id: str, *, offset: int,
           limit: int = EVENTS_LIMIT) -> Response:
    url = _jobs_url(client, project_id, job_id, "/events", offset=offset, limit=limit, order="asc")
    return _get(client, url, project_id, V2_EVENTS, job_id)


def _get(client: ModelArtsClient, url: str, project_id: str, kind: str, job_id: str) -> Response:
    response = client.get(url, project_id=project_id, kind=kind)
    response.training_job_id = job_id
    return response
