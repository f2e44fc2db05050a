"""The simulator's v2 endpoints, served by the v1 server's handler (server.py hands /v2/ paths here).

Errors use v2's shape, `{"error_code": ..., "error_msg": ...}` with a 4xx status:
400 ModelArts.0101 (bad paging or body), 404 ModelArts.2616 (no such job or task).
"""
from __future__ import annotations

import re

import orjson

_SEARCH = re.compile(r"^/v2/(?P<project>[^/]+)/training-job-searches/?$")
_DETAIL = re.compile(r"^/v2/(?P<project>[^/]+)/training-jobs/(?P<job>[^/]+)/?$")
_METRICS = re.compile(r"^/v2/(?P<project>[^/]+)/training-jobs/(?P<job>[^/]+)/metrics/(?P<task>[^/]+)/?$")
_EVENTS = re.compile(r"^/v2/(?P<project>[^/]+)/training-jobs/(?P<job>[^/]+)/events/?$")


def route(method: str, path: str) -> tuple[str, re.Match | None]:
    """(kind, match) of a /v2/ request, or ("other", None)."""
    routes = (("v2_job_search", _SEARCH),) if method == "POST" else (
        ("v2_metrics", _METRICS), ("v2_events", _EVENTS), ("v2_job_detail", _DETAIL))
    for kind, pattern in routes:
        match = pattern.match(path)
        if match:
            return kind, match
    return "other", None


def serve(handler, kind: str, match: re.Match, query: dict, body: bytes) -> None:
    world = handler.simulator.v2
    project = match["project"]
    if kind == "v2_job_search":
        return _search(handler, world, project, body)
    job = match["job"]
    if kind == "v2_job_detail":
        answer = world.detail(project, job)
        if answer is None:
            return _error(handler, 404, "ModelArts.2616", f"training job {job} does not exist")
        return handler._send(answer[0], answer[1])
    if kind == "v2_metrics":
        data = world.metrics(project, job, match["task"])
        if data is None:
            return _error(handler, 404, "ModelArts.2616", f"task {match['task']} of job {job} does not exist")
        return handler._json(200, data)
    offset, limit = _int(query.get("offset", "0")), _int(query.get("limit", "50"))
    if offset is None or limit is None or not 1 <= limit <= 100:
        return _error(handler, 400, "ModelArts.0101", "offset must be >= 0 and limit 1-100")
    data = world.events(project, job, offset, limit)
    if data is None:
        return _error(handler, 404, "ModelArts.2616", f"training job {job} does not exist")
    return handler._json(200, data)


def _search(handler, world, project: str, body: bytes) -> None:
    try:
        request = orjson.loads(body or b"{}")
        offset, limit = int(request.get("offset", 0)), int(request.get("limit", 10))
    except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
        return _error(handler, 400, "ModelArts.0101", "the search body is not a JSON object with integer paging")
    if offset < 0 or not 1 <= limit <= 50:
        return _error(handler, 400, "ModelArts.0101", "offset must be >= 0 and limit 1-50")
    created_from = None
    for item in request.get("filters") or ():
        if isinstance(item, dict) and item.get("key") == "create_time" and item.get("operator") == "between":
            low = (item.get("value") or [""])[0]
            created_from = int(low) if str(low).isdigit() else None
    handler._json(200, world.search(project, offset, limit, created_from))


def _error(handler, status: int, code: str, message: str) -> None:
    handler._json(status, {"error_code": code, "error_msg": message})


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None
