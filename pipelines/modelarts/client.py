"""HTTP access to the ModelArts v1 training-job API.

One pooled `requests.Session` per endpoint, shared by all worker threads. Every
request has a (connect, read) timeout, passes the shared rate limiter, carries fresh
auth headers, and is retried on 429/5xx/connection errors/timeouts/bodies cut short
(never on other 4xx). A 401 gets one credential refresh and one more try.

Safety rules enforced here:
- Redirects are never followed: `requests` would carry X-Auth-Token to whatever host
  the Location names. A redirect is reported as a wrong endpoint instead.
- TLS certificates are verified unless `verify=False` is passed explicitly, which warns.
- Credentials never appear in URLs (so not in `RawRecord.source`) or in error messages.
- Every path is /v1/{project_id}/training-jobs[/{job_id}/versions[/{version_id}]]: the
  project id must look like one and the ids must be non-negative 64-bit integers, so
  nothing a server (or a user) sends can steer a request to another path.
- A Retry-After past the policy's cap is not waited for: the request is given up at once
  (`Response.deferred`), so one throttled URL cannot stall the others (see retry.py).
- A request has a total deadline (`deadline`, seconds) besides the per-read timeout:
  a server that trickles its answer is cut off (see deadline.py). An answer larger
  than `max_body` bytes is abandoned instead of filling memory.

A detail answer is returned as it came (any status, any body) so that it can be landed
raw and judged by the warehouse; list answers are checked by `read_list`, which raises.
"""
from __future__ import annotations

import ipaddress
import logging
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlencode, urlsplit

import orjson
import requests
from urllib3.exceptions import InsecureRequestWarning, NameResolutionError

from pipelines.modelarts.deadline import DeadlineAdapter, deadline
from pipelines.modelarts.errors import ApiError, AuthError, EndpointError, ModelArtsError, ProjectError
from pipelines.modelarts.ratelimit import RateLimiter
from pipelines.modelarts.retry import RETRYABLE_STATUSES, RetryPolicy, parse_retry_after
from pipelines.modelarts.records import JOB_LIST, PROJECT_ID_PATTERN, VERSION_DETAIL, VERSION_LIST, RawRecord, utc_now

log = logging.getLogger(__name__)

USER_AGENT = "modelarts-etl/0.1 (+python-requests)"
DEFAULT_TIMEOUT = (5.0, 30.0)  # (connect, read) seconds
DEFAULT_DEADLINE = 120.0  # seconds for a whole request: connect, headers and body
DEFAULT_MAX_BODY = 128 * 1024 * 1024  # bytes; real detail answers are tens of kB
MAX_ID = 2**63 - 1  # job and version ids are BIGINT in the warehouse
_CHUNK = 256 * 1024
PROJECT_MISMATCH = "ModelArts.0210"


@dataclass
class Response:
    """The final answer to one logical GET, after retries; `status` None means no answer at all."""

    url: str
    kind: str
    project_id: str
    status: int | None
    body: bytes
    retries: int
    error: str | None = None  # why there is no answer (status None)
    job_id: int | None = None
    version_id: int | None = None
    fetched_at: datetime = field(default_factory=utc_now)
    training_job_id: str | None = None  # v2 requests: the job's UUID
    deferred: bool = False  # given up at once: the server's Retry-After was past the cap

    def record(self) -> RawRecord:
        return RawRecord(body=self.body, project_id=self.project_id, source=self.url, kind=self.kind,
                         http_status=self.status, job_id=self.job_id, version_id=self.version_id,
                         fetched_at=self.fetched_at, training_job_id=self.training_job_id)


class ClientStats:
    """Counters shared by the worker threads of one client."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # attempts sent, per kind
        self.retries = 0  # attempts beyond the first, including the one after a credential refresh
        self.refreshes = 0

    def add(self, *, kind: str | None = None, retry: bool = False, refresh: bool = False) -> None:
        with self._lock:
            if kind:
                self.requests[kind] += 1
            if retry or refresh:
                self.retries += 1
            if refresh:
                self.refreshes += 1

    def totals(self) -> tuple[int, int]:
        """(requests sent, retries) so far."""
        with self._lock:
            return sum(self.requests.values()), self.retries


def normalize_endpoint(endpoint: str) -> str:
    """`https://host[:port][/prefix]` without a trailing slash; refuses credentials in the URL."""
    endpoint = (endpoint or "").strip().rstrip("/")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointError("the endpoint must look like https://modelarts.<region>.myhuaweicloud.com")
    if parts.username or parts.password:
        raise EndpointError("the endpoint URL must not contain credentials; put them in the environment")
    if parts.query or parts.fragment:
        raise EndpointError("the endpoint URL must not have a query or fragment")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        log.warning("endpoint %s uses plain http: credentials and data cross the network unencrypted", endpoint)
    return endpoint


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _no_netrc(request):
    """Set as session.auth so `requests` never swaps our headers for ~/.netrc credentials."""
    return request


def make_session(pool_size: int, verify: bool) -> requests.Session:
    session = requests.Session()
    adapter = DeadlineAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.verify = verify
    session.auth = _no_netrc
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
    return session


class ModelArtsClient:
    """The three v1 endpoints of one ModelArts endpoint (region)."""

    def __init__(self, endpoint: str, auth, *, concurrency: int = 8, rate: float | None = None,
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT, retry: RetryPolicy | None = None,
                 verify: bool = True, deadline: float | None = DEFAULT_DEADLINE,
                 max_body: int = DEFAULT_MAX_BODY):
        self.endpoint = normalize_endpoint(endpoint)
        self.auth = auth
        self.timeout = timeout
        self.deadline = max(deadline, sum(timeout)) if deadline else None  # never shorter than one attempt's timeouts
        self.max_body = max_body
        self.retry = retry or RetryPolicy()
        self.limiter = RateLimiter(rate, burst=max(1, concurrency))
        self.stats = ClientStats()
        if not verify:
            warnings.warn(f"TLS certificate verification is DISABLED for {self.endpoint}: anyone on the path can "
                          "read the credentials. Use this only against a test endpoint.", stacklevel=2)
            log.warning("TLS certificate verification is DISABLED for %s", self.endpoint)
            warnings.filterwarnings("once", category=InsecureRequestWarning)
        self.verify = verify
        self.session = make_session(concurrency + 2, verify)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "ModelArtsClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the endpoints -------------------------------------------------------------
    def url(self, path: str, **query) -> str:
        """Query parameters in a fixed order, already encoded: what is signed is what is sent."""
        return f"{self.endpoint}{path}" + (f"?{urlencode(query)}" if query else "")

    def list_jobs(self, project_id: str, *, page: int, per_page: int) -> Response:
        """Oldest first, so jobs created while paging land on later pages instead of shifting earlier ones."""
        url = self.url(f"/v1/{project_segment(project_id)}/training-jobs", per_page=per_page, page=page,
                       sortBy="create_time", order="asc")
        return self.get(url, project_id=project_id, kind=JOB_LIST)

    def list_versions(self, project_id: str, job_id: int, *, page: int, per_page: int) -> Response:
        url = self.url(f"/v1/{project_segment(project_id)}/training-jobs/{id_segment(job_id, 'job')}/versions",
                       per_page=per_page, page=page)
        return self.get(url, project_id=project_id, kind=VERSION_LIST, job_id=job_id)

    def version_detail(self, project_id: str, job_id: int, version_id: int) -> Response:
        url = self.url(f"/v1/{project_segment(project_id)}/training-jobs/{id_segment(job_id, 'job')}/versions/"
                       f"{id_segment(version_id, 'version')}")
        return self.get(url, project_id=project_id, kind=VERSION_DETAIL, job_id=job_id, version_id=version_id)

    # -- one logical GET -------------------------------------------------------------
    def get(self, url: str, *, project_id: str, kind: str, job_id: int | None = None,
            version_id: int | None = None) -> Response:
        """GET with retries. Raises only what no retry can fix (auth, project, redirect, TLS, DNS)."""
        return self.request("GET", url, project_id=project_id, kind=kind, job_id=job_id, version_id=version_id)

    def request(self, method: str, url: str, *, project_id: str, kind: str, job_id: int | None = None,
                version_id: int | None = None, data: bytes = b"") -> Response:
        """One logical request (GET, or the v2 search's POST with a JSON body `data`), with retries."""
        retries, refreshed = 0, False
        while True:
            self.limiter.acquire()
            if data:  # signed with its body (AK/SK); GETs keep the three-argument call
                headers = {**self.auth.headers(method, url, project_id, body=data),
                           "Content-Type": "application/json"}
            else:
                headers = self.auth.headers(method, url, project_id)
            self.stats.add(kind=kind)
            with deadline(self.deadline) as watch:
                try:
                    # verify passed per request: a session's verify=False loses to $REQUESTS_CA_BUNDLE
                    resp = self.session.request(method, url, headers=headers, data=data or None,
                                                timeout=self.timeout, allow_redirects=False, stream=True,
                                                verify=self.verify)
                    try:
                        status, body = resp.status_code, self._read_body(resp)
                    finally:
                        resp.close()
                except _TooLarge as exc:  # the same next time: not retried
                    return Response(url, kind, project_id, None, b"", retries, str(exc), job_id, version_id)
                except requests.exceptions.RequestException as exc:
                    if not watch.expired:
                        problem = self._transport_problem(exc)
                        status = None
                if watch.expired:  # cut off mid-answer (it may even look complete): asking again costs as long
                    problem = f"no complete answer within the {self.deadline:g} s deadline (the server trickles)"
                    return Response(url, kind, project_id, None, b"", retries, problem, job_id, version_id)
            if status is None:
                if retries < self.retry.max_retries:
                    retries += 1
                    self.stats.add(retry=True)
                    time.sleep(self.retry.wait(retries))
                    continue
                return Response(url, kind, project_id, None, b"", retries, problem, job_id, version_id)
            if status == 401 and not refreshed and self.auth.refresh(project_id, headers):
                refreshed = True
                self.stats.add(refresh=True)
                continue
            if status in (401, 403):
                raise self._refusal(status, body, project_id)
            if 300 <= status < 400:
                raise self._redirected(url, status, resp.headers.get("Location", ""))
            if status in RETRYABLE_STATUSES and retries < self.retry.max_retries:
                retry_after = parse_retry_after(resp.headers.get("Retry-After")) if status in (429, 503) else None
                if not self.retry.waits_for(retry_after):
                    problem = (f"HTTP {status} asked to retry after {retry_after:g} s, longer than the "
                               f"{self.retry.retry_after_max:g} s cap (--max-retry-after): left for the next sync")
                    return Response(url, kind, project_id, None, b"", retries, problem, job_id, version_id,
                                    deferred=True)
                retries += 1
                self.stats.add(retry=True)
                self._back_off(retries, status, retry_after)
                continue
            return Response(url, kind, project_id, status, body, retries, None, job_id, version_id)

    def _read_body(self, resp: requests.Response) -> bytes:
        """The whole body, or _TooLarge as soon as it passes `max_body` (decoded size: no zip bomb either)."""
        limit = self.max_body
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _TooLarge(int(declared), limit)
        parts, size = [], 0
        for chunk in resp.iter_content(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise _TooLarge(size, limit)
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _back_off(self, retry_number: int, status: int, retry_after: float | None) -> None:
        """Sleep before a retry; a 429 holds back every thread of this client, not just this one."""
        delay = self.retry.wait(retry_number, retry_after)
        if status == 429:
            self.limiter.pause_until(time.monotonic() + delay)
        else:
            time.sleep(delay)

    # -- turning failures into one clear line ----------------------------------------
    def _transport_problem(self, exc: requests.exceptions.RequestException) -> str:
        """A short description for a retryable failure; raises EndpointError for ones no retry fixes."""
        host = urlsplit(self.endpoint).hostname
        if isinstance(exc, requests.exceptions.SSLError):
            raise EndpointError(f"TLS verification failed for {host}: the certificate is not trusted or does not "
                                "match; fix the endpoint (an --insecure run is for test endpoints only)") from None
        if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                            requests.exceptions.MissingSchema)):
            raise EndpointError(f"invalid endpoint URL {self.endpoint}") from None
        if _caused_by(exc, NameResolutionError):
            raise EndpointError(f"cannot resolve the endpoint host {host}: check --endpoint") from None
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return "connection timed out"
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return f"no answer within {self.timeout[1]:g} s"
        if isinstance(exc, requests.exceptions.ChunkedEncodingError):
            return "the body was cut short"
        if isinstance(exc, requests.exceptions.ContentDecodingError):
            return "the body could not be decoded"
        text = str(exc).lower()
        if "refused" in text:
            return "connection refused"
        if "remotedisconnected" in text or "aborted" in text or "reset" in text:
            return "the connection closed without an answer"
        return f"connection failed ({type(exc).__name__})"

    def _refusal(self, status: int, body: bytes, project_id: str) -> ModelArtsError:
        code, message = api_error(body)
        detail = f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
        if code == PROJECT_MISMATCH:
            return ProjectError(f"project {project_id} is unknown at {self.endpoint} or not covered by the "
                                f"credentials ({detail}); check --project-id")
        return AuthError(f"{self.endpoint} rejected the credentials ({detail}); auth used: {self.auth.describe()}")

    def _redirected(self, url: str, status: int, location: str) -> EndpointError:
        target = urlsplit(location)
        where = f"{target.scheme}://{target.hostname}" if target.hostname else "another path"
        return EndpointError(f"{self.endpoint} answered with a redirect (HTTP {status}) to {where}; it is not "
                             "followed, so that credentials are not sent elsewhere: use the final address as "
                             "--endpoint")


class _TooLarge(Exception):
    def __init__(self, size: int, limit: int):
        super().__init__(f"the answer is larger than {limit / 2**20:g} MB ({'at least ' if size <= limit else ''}"
                         f"{size / 2**20:.1f} MB); not stored")


def project_segment(project_id: str) -> str:
    """The project id as a path segment; refuses anything that is not a plain id (`..`, `/`, `?`, quotes)."""
    if not isinstance(project_id, str) or not PROJECT_ID_PATTERN.match(project_id):
        shown = repr(project_id)[:80]
        raise ProjectError(f"invalid project id {shown}: use letters, digits, '_' or '-' (1-128 characters), as in "
                           "the ModelArts console's project id")
    return project_id


def id_segment(value: int, what: str) -> str:
    """A job or version id as a path segment: a non-negative 64-bit integer, nothing else."""
    if type(value) is not int or not 0 <= value <= MAX_ID:
        raise ApiError(f"refusing to request {what} id {repr(value)[:80]}: not a ModelArts id")
    return str(value)


def _caused_by(exc: BaseException, kind: type) -> bool:
    """Whether `kind` is anywhere in the chain of reasons/causes requests and urllib3 attach."""
    seen = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return True
        todo.extend([getattr(current, "reason", None), current.__cause__, current.__context__])
        todo.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
    return False


def api_error(body: bytes) -> tuple[str | None, str | None]:
    """(error_code, message) from an error body of either edition (error_message / error_msg)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    if isinstance(data.get("error"), dict):  # IAM's shape
        data = data["error"]
    code = data.get("error_code") or data.get("code")
    message = data.get("error_message") or data.get("error_msg") or data.get("message")
    return (str(code) if code is not None else None), (str(message)[:200] if message is not None else None)


def read_list(client: ModelArtsClient, response: Response, what: str) -> dict:
    """A list page's JSON object, or the error that explains why there is none."""
    if response.deferred:  # not the endpoint's fault: this page alone waits for the next sync
        raise ApiError(f"the {what} was not fetched: {response.error}")
    if response.status is None:
        raise EndpointError(f"cannot reach {client.endpoint} for the {what}: {response.error} "
                            f"(after {response.retries} retries)")
    code, message = api_error(response.body)
    detail = (f" {code}" if code else "") + (f": {message}" if message else "")
    tries = f" after {response.retries} retries" if response.retries else ""
    if response.status == 404 and not (code or "").startswith("ModelArts."):
        raise EndpointError(f"{client.endpoint} is not a ModelArts v1 endpoint: the {what} answered HTTP 404"
                            f"{detail}; check --endpoint")
    if response.status != 200:
        raise ApiError(f"the {what} failed: HTTP {response.status}{detail}{tries}", status=response.status,
                       error_code=code)
    try:
        data = orjson.loads(response.body)
    except orjson.JSONDecodeError as exc:  # orjson's message says where, never what: safe to show
        reason = str(exc)[:160]
        raise EndpointError(f"the {what} is not JSON ({reason}; HTTP 200, {len(response.body)} bytes): is "
                            f"{client.endpoint} the ModelArts endpoint?") from None
    if not isinstance(data, dict):
        raise ApiError(f"the {what} is not a JSON object", status=200)
    if data.get("is_success") is False:
        if code == PROJECT_MISMATCH:
            raise ProjectError(f"project {response.project_id} is unknown at {client.endpoint} ({code}); "
                               "check --project-id")
        raise ApiError(f"the {what} failed:{detail or ' is_success is false'}", status=200, error_code=code)
    return data
