"""The simulator's HTTP side: the three v1 endpoints and a minimal IAM, on loopback.

    with SimulatorServer(World(jobs=50), token="t", page_cap=20, latency=0.05) as sim:
        sim.url                       # http://127.0.0.1:<ephemeral port>
        sim.counts["version_detail"]  # requests received per endpoint kind
        sim.detail_requests           # (project_id, job_id, version_id) of every detail request
        sim.world.advance(3600)       # the clock; sim.world.truth() is the ground truth

Auth, when configured: a static token (`token=`), IAM-issued tokens (`iam_user=`), and
AK/SK signatures (`aksk=`) are each accepted; with none configured the API is open.
`hostile=Hostile(mode)` adds behaviour no real endpoint should show (hostile ids, answers
trickled forever, non-UTF-8 bytes, huge bodies, empty or repeated list pages, an overstated
total; see hostile.py), and `tls=` an
`ssl.SSLContext` serves HTTPS. Errors use the documented codes: 401 ModelArts.0201 (no token) / 0202 (expired) /
0203 (invalid), 403 ModelArts.0206 (bad AK/SK) / 0210 (project not covered),
400 ModelArts.0101 (bad paging) / 2775 (no such job or version), 404 APIG.0101 (no such API).
"""
from __future__ import annotations

import re
import secrets
import ssl
import sys
import threading
import time
from collections import Counter, deque
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import orjson

from pipelines.modelarts.auth import verify_signature
from pipelines.modelarts.simulator import hostile as _hostile
from pipelines.modelarts.simulator import v2_routes
from pipelines.modelarts.simulator.faults import TransientFaults
from pipelines.modelarts.simulator.hostile import Hostile
from pipelines.modelarts.simulator.v2_world import V2World
from pipelines.modelarts.simulator.world import World

_JOBS = re.compile(r"^/v1/(?P<project>[^/]+)/training-jobs/?$")
_VERSIONS = re.compile(r"^/v1/(?P<project>[^/]+)/training-jobs/(?P<job>[^/]+)/versions/?$")
_DETAIL = re.compile(r"^/v1/(?P<project>[^/]+)/training-jobs/(?P<job>[^/]+)/versions/(?P<version>[^/]+)/?$")
_IAM = "/v3/auth/tokens"
SORT_KEYS = ("job_name", "job_desc", "status", "duration", "version_count", "create_time")


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default of 5 drops connections when a client opens 16 at once
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        """A client that hung up (a timeout, a deadline, a kill -9) is normal here; anything else is printed."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, ssl.SSLError)):
            return
        super().handle_error(request, client_address)


class SimulatorServer:
    """The simulator, started in a background thread; a context manager."""

    def __init__(self, world: World | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None, aksk: tuple[str, str] | None = None,
                 iam_user: tuple[str, str, str] | None = None, token_ttl: float = 24 * 3600,
                 page_cap: int = 100, latency: float = 0.0, faults: TransientFaults | None = None,
                 redirect_to: str | None = None, hostile: Hostile | None = None, tls: ssl.SSLContext | None = None,
                 v2: V2World | None = None):
        self.world = world or World()
        self.v2 = v2  # the v2 API's account, served under /v2/ (see v2_routes.py); None: /v2/ is not found
        self.token = token
        self.aksk = {aksk[0]: aksk[1]} if aksk else {}
        self.iam_user = iam_user  # (user, password, domain)
        self.token_ttl = token_ttl
        self.page_cap = page_cap
        self.latency = latency
        self.faults = faults or TransientFaults()
        self.redirect_to = redirect_to.rstrip("/") if redirect_to else None
        self.hostile = hostile
        self.stopping = threading.Event()  # ends trickling answers when the server stops
        self.counts: Counter[str] = Counter()  # requests received per endpoint kind
        self.fault_counts: Counter[str] = Counter()  # transient faults injected, per kind
        self.status_counts: Counter[int] = Counter()  # responses sent, per HTTP status
        self.detail_requests: list[tuple[str, int, int]] = []
        self.targets: deque[str] = deque(maxlen=100_000)  # "METHOD /path?query" of the latest requests
        self._issued: dict[str, tuple[str, float]] = {}  # IAM token -> (project_id, wall-clock expiry)
        self._per_path: Counter[str] = Counter()
        self._faults_per_path: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._httpd = _HttpServer((host, port), _handler_class(self))
        self.scheme = "http"
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
            self.scheme = "https"
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    def start(self) -> "SimulatorServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="modelarts-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "SimulatorServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- controls for tests ------------------------------------------------------
    def expire_tokens(self) -> None:
        """Every IAM token issued so far expires now (as if the server's clock had run ahead)."""
        with self._lock:
            self._issued = {t: (p, 0.0) for t, (p, _) in self._issued.items()}

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()
            self.fault_counts.clear()
            self.status_counts.clear()
            self.detail_requests.clear()
            self.targets.clear()

    # -- bookkeeping used by the handler -----------------------------------------
    def _next_fault(self, path: str) -> str | None:
        with self._lock:
            self._per_path[path] += 1
            fault = self.faults.draw(path, self._per_path[path], self._faults_per_path[path])
            if fault:
                self._faults_per_path[path] += 1
                self.fault_counts[fault] += 1
            return fault

    def _sent(self, status: int) -> None:
        with self._lock:
            self.status_counts[status] += 1

    def _count(self, kind: str, detail: tuple[str, int, int] | None = None, target: str = "") -> None:
        with self._lock:
            self.targets.append(target)
            self.counts[kind] += 1
            if detail:
                self.detail_requests.append(detail)

    def _issue_token(self, project_id: str) -> tuple[str, float]:
        token = "MIIsim" + secrets.token_urlsafe(32)
        expires = time.time() + self.token_ttl
        with self._lock:
            self._issued[token] = (project_id, expires)
        return token, expires

    def _token_state(self, token: str) -> tuple[str | None, float] | None:
        with self._lock:
            return self._issued.get(token)


def _handler_class(sim: SimulatorServer):
    class Handler(_Handler):
        simulator = sim
    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's connection pool is exercised
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    timeout = 120
    simulator: SimulatorServer
    _fault: str | None = None  # the transient fault chosen for the request being served
    server_version = "ModelArtsSimulator/1.0"

    def log_message(self, format, *args):  # noqa: A002 - quiet: tests and demos read stdout
        pass

    # -- entry points ------------------------------------------------------------
    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def _serve(self, method: str):
        sim = self.simulator
        self._fault = None
        parts = urlsplit(self.path)
        body = self._read_body()
        kind, match = _route(method, parts.path)
        sim._count(kind, _detail_key(match) if kind == "version_detail" else None, f"{method} {self.path}")
        if sim.latency:
            time.sleep(sim.latency)
        if sim.hostile and sim.hostile.mode.startswith("trickle") and sim.hostile.applies(self.path):
            return self._trickle(sim.hostile)
        if kind == "iam":
            return self._iam(body)
        if sim.redirect_to and kind != "other":
            return self._send(302, b"", {"Location": sim.redirect_to + self.path})
        self._fault = sim._next_fault(self.path)
        if self._fault and self._transient(self._fault):
            return
        if kind == "other":
            return self._json(404, {"error_code": "APIG.0101",
                                    "error_msg": "The API does not exist or has not been published in the environment"})
        refusal = self._check_auth(method, body, match["project"])
        if refusal:
            return self._json(*refusal)
        if not (sim.world.has_project(match["project"]) or (sim.v2 and sim.v2.has_project(match["project"]))):
            return self._error(403, "ModelArts.0210", f"project {match['project']} does not match the token")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if kind.startswith("v2_"):
            if sim.v2 is None or not sim.v2.has_project(match["project"]):
                return self._json(404, {"error_code": "APIG.0101", "error_msg": "The API does not exist or has "
                                        "not been published in the environment"})
            return v2_routes.serve(self, kind, match, query, body)
        if not sim.world.has_project(match["project"]):  # a v2-only project has no v1 jobs
            return self._json(200, {"is_success": True, "job_total_count": 0, "job_count_limit": 1000,
                                    "quotas": 1000, "jobs": []})
        if kind == "job_list":
            return self._job_list(match["project"], query)
        if kind == "version_list":
            return self._version_list(match["project"], match["job"], query)
        return self._detail(match["project"], match["job"], match["version"])

    # -- the API -----------------------------------------------------------------
    def _job_list(self, project_id: str, query: dict):
        paging = _paging(query, page_default=1, page_min=1)
        if isinstance(paging, str):
            return self._error(400, "ModelArts.0101", paging)
        per_page, page = paging
        sort_by = query.get("sortBy", "job_name")
        order = query.get("order", "desc")
        if sort_by not in SORT_KEYS or order not in ("asc", "desc"):
            return self._error(400, "ModelArts.0101", "invalid sortBy or order")
        jobs = sorted(self.simulator.world.job_list_items(project_id), key=lambda j: (j[sort_by], j["job_id"]),
                      reverse=order == "desc")
        size = min(per_page, self.simulator.page_cap)
        window = self._list_window(jobs, size, page)
        if self._hostile("evil_ids") and page == 1:
            window = _hostile.evil_job_items() + window
        quota = 1000
        total = _hostile.OVERSTATED_TOTAL if self._hostile("overstated_total") else len(jobs)
        self._json(200, {"is_success": True, "job_total_count": total, "job_count_limit": quota - len(jobs),
                         "quotas": quota, "jobs": window})

    def _list_window(self, items: list, size: int, page: int) -> list:
        """One page of a listing, as the empty_page and repeat_page modes distort it."""
        if self._hostile("empty_page"):
            return []
        if self._hostile("repeat_page"):
            page = 1
        return items[(page - 1) * size: page * size]

    def _version_list(self, project_id: str, job: str, query: dict):
        paging = _paging(query, page_default=0, page_min=0)
        if isinstance(paging, str):
            return self._error(400, "ModelArts.0101", paging)
        per_page, page = paging
        job_id = _int(job)
        items = self.simulator.world.version_items(project_id, job_id) if job_id is not None else None
        if items is None:
            return self._error(400, "ModelArts.2775", f"training job {job} does not exist")
        sim_job = self.simulator.world.job(project_id, job_id)
        if page > 0:  # page 0 is the documented "no paging"
            window = self._list_window(items, min(per_page, self.simulator.page_cap), page)
        else:
            window = items
        if self._hostile("evil_ids") and page <= 1:
            window = [orjson.dumps(item) for item in _hostile.evil_version_items(job_id)] + window
        head = orjson.dumps({"is_success": True, "job_id": job_id, "job_name": sim_job.profile["job_name"],
                             "job_desc": sim_job.profile["job_desc"], "version_count": len(items)})
        self._send(200, head[:-1] + b',"versions":[' + b",".join(window) + b"]}")

    def _detail(self, project_id: str, job: str, version: str):
        job_id, version_id = _int(job), _int(version)
        body = None
        if job_id is not None and version_id is not None:
            body = self.simulator.world.detail(project_id, job_id, version_id)
        if body is None:
            return self._error(400, "ModelArts.2775", f"training job {job} version {version} does not exist")
        self._send(200, body)

    # -- IAM -------------------------------------------------------------------
    def _iam(self, body: bytes):
        sim = self.simulator
        try:
            auth = orjson.loads(body)["auth"]
            password = auth["identity"]["password"]["user"]
            project_id = auth["scope"]["project"]["id"]
            user = (password["name"], password["password"], password["domain"]["name"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return self._json(400, {"error": {"code": 400, "title": "Bad Request",
                                              "message": "The request body is not a password-scoped token request."}})
        if sim.iam_user is None or user != tuple(sim.iam_user):
            return self._json(401, {"error": {"code": 401, "title": "Unauthorized",
                                              "message": "The username or password is wrong."}})
        if not sim.world.has_project(project_id):
            return self._json(400, {"error": {"code": 400, "title": "Bad Request",
                                              "message": f"Project {project_id} does not exist."}})
        token, expires = sim._issue_token(project_id)
        now = datetime.now(timezone.utc)
        self._json(201, {"token": {
            "expires_at": _iso(datetime.fromtimestamp(expires, timezone.utc)), "issued_at": _iso(now),
            "methods": ["password"], "project": {"id": project_id, "name": "sim-region"},
            "user": {"name": user[0], "domain": {"name": user[2]}},
        }}, {"X-Subject-Token": token})

    def _hostile(self, mode: str) -> bool:
        hostile = self.simulator.hostile
        return hostile is not None and hostile.mode == mode and hostile.applies(self.path)

    def _trickle(self, hostile: Hostile) -> None:
        """Headers (or only the status line), then a byte (or a header line) every interval, until the client
        gives up or the server stops."""
        sim = self.simulator
        sim._sent(200)
        try:
            self.send_response(200)
            if hostile.mode == "trickle_body":  # no Content-Length: the body ends when the connection does
                self.send_header("Content-Type", "application/json;charset=utf-8")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(b'{"is_success":true,"padding":"')
            else:
                self.flush_headers()  # the status line and the first headers, without the blank line that ends them
            self.wfile.flush()
            n = 0
            while not sim.stopping.wait(hostile.interval):
                n += 1
                line = b"x" if hostile.mode == "trickle_body" else b"X-Trickle-%d: x\r\n" % n
                self.wfile.write(line)
                self.wfile.flush()
        except OSError:  # the client hung up: what it should do
            pass
        self.close_connection = True

    def _check_auth(self, method: str, body: bytes, project_id: str) -> tuple[int, dict] | None:
        """None if allowed, else (status, error body)."""
        sim = self.simulator
        if not (sim.token or sim.aksk or sim.iam_user):
            return None
        authorization = self.headers.get("Authorization", "")
        if sim.aksk and authorization.startswith("SDK-HMAC-SHA256"):
            why = verify_signature(method, self.path, dict(self.headers.items()), body, sim.aksk)
            return None if why is None else (403, _error_body("ModelArts.0206", f"invalid AK/SK: {why}"))
        token = self.headers.get("X-Auth-Token")
        if not token:
            return 401, _error_body("ModelArts.0201", "the request has no token")
        if sim.token and secrets.compare_digest(token, sim.token):
            return None
        state = sim._token_state(token)
        if state is None:
            return 401, _error_body("ModelArts.0203", "invalid token")
        scope, expires = state
        if time.time() >= expires:
            return 401, _error_body("ModelArts.0202", "the token has expired")
        if scope != project_id:
            return 403, _error_body("ModelArts.0210", "project ID does not match the token")
        return None

    # -- transient faults ----------------------------------------------------------
    def _transient(self, fault: str) -> bool:
        """Act out the fault; True if the request is answered (or dropped) by it."""
        sim = self.simulator
        if fault == "throttle":
            self._json(429, {"error_code": "APIG.0308", "error_msg": "The throttling threshold has been reached: "
                             "policy user over ratelimit,limit:100,time:1 minute"},
                       {"Retry-After": str(sim.faults.retry_after)})
        elif fault == "server_error":
            self._error(500, "ModelArts.0010", "internal error")
        elif fault == "unavailable":
            self._send(503, b'{"error_code":"APIG.0201","error_msg":"Backend unavailable"}')
        elif fault == "slow":
            time.sleep(sim.faults.slow_seconds)
            return False  # then answer normally, long after the client gave up
        elif fault == "drop":
            self.close_connection = True  # no answer at all: the client sees the connection close
            sim._sent(0)
        elif fault == "truncated":
            return False  # answered normally, but _send cuts the body short
        return True

    # -- plumbing ------------------------------------------------------------------
    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _error(self, status: int, code: str, message: str):
        self._json(status, _error_body(code, message))

    def _json(self, status: int, payload, headers: dict | None = None):
        self._send(status, orjson.dumps(payload), headers)

    def _send(self, status: int, body: bytes, headers: dict | None = None):
        """One response. A "truncated" fault promises the whole body, sends a third, and hangs up."""
        self.simulator._sent(status)
        if status == 200 and self._hostile("non_utf8"):
            body = _hostile.non_utf8(body)
        elif status == 200 and self._hostile("huge") and body.startswith(b'{"is_success":true'):
            body = _hostile.huge(body, self.simulator.hostile.size)
        truncate = self._fault == "truncated"
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body[: len(body) // 3] if truncate else body)
        except (BrokenPipeError, ConnectionResetError):
            truncate = True  # the client gave up (a slow answer): nothing more to do
        if truncate:
            self.close_connection = True


def _route(method: str, path: str) -> tuple[str, re.Match | None]:
    if path.startswith("/v2/"):
        return v2_routes.route(method, path)
    if method == "POST":
        return ("iam", None) if path.rstrip("/") == _IAM else ("other", None)
    for kind, pattern in (("version_detail", _DETAIL), ("version_list", _VERSIONS), ("job_list", _JOBS)):
        match = pattern.match(path)
        if match:
            return kind, match
    return "other", None


def _detail_key(match: re.Match) -> tuple[str, int, int]:
    return (match["project"], _int(match["job"]) or -1, _int(match["version"]) or -1)


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _paging(query: dict, *, page_default: int, page_min: int) -> tuple[int, int] | str:
    """(per_page, page) within the documented ranges, or the reason they are not."""
    per_page, page = _int(query.get("per_page", "10")), _int(query.get("page", str(page_default)))
    if per_page is None or not 1 <= per_page <= 1000:
        return "per_page must be an integer from 1 to 1000"
    if page is None or not page_min <= page <= 65535:
        return f"page must be an integer from {page_min} to 65535"
    return per_page, page


def _error_body(code: str, message: str) -> dict:
    return {"is_success": False, "error_code": code, "error_message": message}


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@contextmanager
def serve(world: World | None = None, **options):
    """The simplest use: `with serve(World(jobs=5)) as url: ...` (port 0 = an ephemeral port)."""
    with SimulatorServer(world, **options) as sim:
        yield sim.url

