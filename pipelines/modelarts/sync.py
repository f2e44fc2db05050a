"""Sync ModelArts projects into the warehouse: list, plan, fetch details, land.

The library entry point for the CLI and the Dagster assets alike:

    from pipelines.modelarts.auth import auth_from_env
    from pipelines.modelarts.sync import Target, sync_projects
    from warehouse.store import Warehouse

    with Warehouse.open("warehouse_data") as wh:
        report = sync_projects(wh, [Target(endpoint, project_id)], auth_from_env(endpoint))
    print(report.summary())

Per project: read which versions the warehouse holds (and which are final), land the
list pages while reading them, plan (see plan.py), then fetch the planned details on
`concurrency` threads. After landing, a complete job list (no gap, see discovery.py)
tells the writer which jobs exist (`wh.mark_deleted_upstream`), so versions of jobs
deleted upstream are marked, not left looking RUNNING forever. List pages and details go to one `wh.land(...)` call as one
stream (one load), landed in batches while fetching goes on, so memory stays bounded
however many versions there are. Nothing is parsed before it is landed.

The writer `wh` needs three methods: `version_states`, `land` and `mark_deleted_upstream`
(warehouse.store.Warehouse has them; this package never imports it).

A project that fails (bad credentials, unknown project, unreachable endpoint) does not
stop the others; `sync_projects` raises SyncError at the end, with the report attached,
unless `raise_on_error=False`.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field

from pipelines.modelarts.client import DEFAULT_DEADLINE, DEFAULT_TIMEOUT, ModelArtsClient
from pipelines.modelarts.discovery import Discovery, discover
from pipelines.modelarts.errors import EndpointError, ModelArtsError, SyncError
from pipelines.modelarts.plan import plan_fetches
from pipelines.modelarts.retry import RetryPolicy
from pipelines.modelarts.streaming import bounded_map
from pipelines.modelarts.v2.sync import sync_project_v2
from pipelines.modelarts import failpoints
from pipelines.modelarts.records import RawRecord, utc_now

Progress = Callable[[str, int, int], None]  # (project_id, versions done, versions to fetch)
APIS = ("v1", "v2", "both", "auto")  # auto: both, skipping an API the endpoint does not serve (HTTP 404)
DEFAULT_LAND_BATCH = 250  # records per warehouse batch: small, so landing overlaps fetching and the
                          # last batch, landed after the last fetch, is quick


@dataclass(frozen=True)
class Target:
    endpoint: str
    project_id: str


@dataclass
class ProjectReport:
    endpoint: str
    project_id: str
    jobs: int = 0
    jobs_unchanged: int = 0  # jobs whose versions list was skipped: nothing new per the job list
    listed: int = 0  # versions known to exist at the source
    to_fetch: int = 0
    fetched: int = 0  # detail answers received and landed (any HTTP status)
    skipped_final: int = 0
    failed: int = 0  # no answer after every retry: not landed, fetched again next sync
    rejected: int = 0  # newly rejected by the warehouse in this run
    versions_loaded: int = 0
    field_issues: int = 0
    landed: int = 0  # raw bodies newly stored (list pages included)
    deleted_upstream: int = 0  # stored versions newly marked: their job is no longer listed
    retried: int = 0
    requests: int = 0
    elapsed: float = 0.0
    warnings: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)  # listings that ended short of the server's count
    failures: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def complete(self) -> bool:
        """Every listing reached its count and every planned detail arrived."""
        return self.error is None and not self.gaps and not self.failed

    def line(self) -> str:
        text = (f"project {self.project_id}: jobs {self.jobs} ({self.jobs_unchanged} unchanged), "
                f"listed {self.listed}, fetched {self.fetched}, skipped as final {self.skipped_final}, "
                f"rejected {self.rejected}, retried {self.retried}, requests {self.requests}")
        if self.failed:
            text += f", failed {self.failed} (fetched again next sync)"
        if self.deleted_upstream:
            text += f", {self.deleted_upstream} versions of jobs deleted upstream marked"
        if self.gaps:
            text += f", INCOMPLETE: {len(self.gaps)} listing(s) ended short (listed again next sync)"
        return text + f", {self.elapsed:.1f} s"


@dataclass
class SyncReport:
    projects: list[ProjectReport] = field(default_factory=list)
    elapsed: float = 0.0

    def _sum(self, name: str) -> int:
        return sum(getattr(p, name) for p in self.projects)

    @property
    def listed(self) -> int:
        return self._sum("listed")

    @property
    def fetched(self) -> int:
        return self._sum("fetched")

    @property
    def skipped_final(self) -> int:
        return self._sum("skipped_final")

    @property
    def rejected(self) -> int:
        return self._sum("rejected")

    @property
    def retried(self) -> int:
        return self._sum("retried")

    @property
    def failed(self) -> int:
        return self._sum("failed")

    @property
    def requests(self) -> int:
        return self._sum("requests")

    @property
    def ok(self) -> bool:
        return all(p.error is None for p in self.projects)

    @property
    def complete(self) -> bool:
        return all(p.complete for p in self.projects)

    def summary(self) -> str:
        text = (f"listed {self.listed}, fetched {self.fetched}, skipped as final {self.skipped_final}, "
                f"rejected {self.rejected}, retried {self.retried}")
        if self.failed:
            text += f", failed {self.failed}"
        gaps = self._sum_len("gaps")
        if gaps:
            text += f", INCOMPLETE: {gaps} listing gap(s)"
        return text + f", elapsed {self.elapsed:.1f} s"

    def _sum_len(self, name: str) -> int:
        return sum(len(getattr(p, name)) for p in self.projects)

    def error_line(self) -> str:
        failed = [p for p in self.projects if p.error]
        if len(self.projects) == 1 and failed:
            return failed[0].error
        return f"{len(failed)} of {len(self.projects)} projects failed: " + "; ".join(
            f"{p.project_id}: {p.error}" for p in failed)


def sync_projects(wh, targets: Iterable[Target | tuple[str, str]], auth, *, concurrency: int = 8,
                  rate: float | None = None, per_page: int = 100,
                  timeout: tuple[float, float] = DEFAULT_TIMEOUT, retry: RetryPolicy | None = None,
                  verify: bool = True, progress: Progress | None = None, land_batch: int = DEFAULT_LAND_BATCH,
                  raise_on_error: bool = True, deadline: float | None = DEFAULT_DEADLINE,
                  api: str = "v1") -> SyncReport:
    """Sync every target into the open warehouse writer `wh`; see the module docstring."""
    started = time.perf_counter()
    report = SyncReport()
    clients: dict[str, ModelArtsClient] = {}
    try:
        for target in targets:
            target = target if isinstance(target, Target) else Target(*target)
            project = ProjectReport(endpoint=target.endpoint, project_id=target.project_id)
            report.projects.append(project)
            try:
                client = clients.get(target.endpoint)
                if client is None:  # one session and one rate budget per endpoint (region)
                    client = ModelArtsClient(target.endpoint, auth, concurrency=concurrency, rate=rate,
                                             timeout=timeout, retry=retry, verify=verify, deadline=deadline)
                    clients[target.endpoint] = client
                _sync_apis(wh, client, project, api, concurrency=concurrency, per_page=per_page,
                           progress=progress, land_batch=land_batch)
            except ModelArtsError as exc:
                project.error = str(exc)
    finally:
        for client in clients.values():
            client.close()
        report.elapsed = time.perf_counter() - started
    if raise_on_error and not report.ok:
        raise SyncError(report.error_line(), report)
    return report


def _sync_apis(wh, client: ModelArtsClient, project: ProjectReport, api: str, *, concurrency: int, per_page: int,
               progress: Progress | None, land_batch: int) -> None:
    """The project's v1 versions and/or v2 jobs (see APIS)."""
    if api not in APIS:
        raise ValueError(f"api must be one of {', '.join(APIS)}, not {api!r}")
    steps = []
    if api in ("v1", "both", "auto"):
        steps.append(("v1", lambda: sync_project(wh, client, project, concurrency=concurrency, per_page=per_page,
                                                 progress=progress, land_batch=land_batch)))
    if api in ("v2", "both", "auto"):
        steps.append(("v2", lambda: sync_project_v2(wh, client, project, concurrency=concurrency,
                                                    limit=min(per_page, 50), progress=progress,
                                                    land_batch=land_batch)))
    for _, step in steps:
        try:
            step()
        except EndpointError as exc:
            if api != "auto" or "HTTP 404" not in str(exc):
                raise  # auto: an API the endpoint does not serve (404) means the project has none of its jobs


@dataclass
class _Tally:
    """What fetching the details of one project came to."""

    fetched: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    error: ModelArtsError | None = None


def sync_project(wh, client: ModelArtsClient, project: ProjectReport, *, concurrency: int, per_page: int,
                 progress: Progress | None = None, land_batch: int = DEFAULT_LAND_BATCH) -> None:
    """One project, filling `project` as it goes; raises ModelArtsError when the project cannot be synced."""
    started = time.perf_counter()
    requests_before, retries_before = client.stats.totals()
    try:
        states = wh.version_states(project.project_id)
        found, tally = Discovery(project.project_id), _Tally()
        records = _project_records(client, project, states, found, tally, concurrency=concurrency,
                                   per_page=per_page, progress=progress)
        with closing(records):  # a failed land (disk full) must stop the fetch threads now, not never
            loaded = wh.land(records, batch_records=land_batch)
        project.landed, project.rejected = loaded.landed, loaded.rejected
        project.versions_loaded, project.field_issues = loaded.versions_loaded, loaded.field_issues
        if found.error is None and found.job_list_complete:  # a listing with a gap proves no job gone
            project.deleted_upstream = wh.mark_deleted_upstream(project.project_id, [j.job_id for j in found.jobs],
                                                                utc_now())
        for error in (found.error, tally.error):
            if error is not None:
                raise error
    finally:
        requests_after, retries_after = client.stats.totals()
        project.requests = requests_after - requests_before
        project.retried = retries_after - retries_before
        project.elapsed = time.perf_counter() - started


def _project_records(client: ModelArtsClient, project: ProjectReport, states: dict, found: Discovery,
                     tally: _Tally, *, concurrency: int, per_page: int,
                     progress: Progress | None) -> Iterator[RawRecord]:
    """List pages, then the planned details, as one stream: one load, landed in batches while fetching goes on."""
    yield from discover(client, project.project_id, states, per_page=per_page, concurrency=concurrency, found=found)
    project.jobs, project.jobs_unchanged, project.warnings = len(found.jobs), found.settled_jobs, found.warnings
    project.gaps = found.gaps
    if found.error is not None:
        return
    plan = plan_fetches(found.versions, states)
    project.listed = len(plan.to_fetch) + plan.skipped_final + found.settled_versions
    project.skipped_final = plan.skipped_final + found.settled_versions
    project.to_fetch = len(plan.to_fetch)
    if progress:
        progress(project.project_id, 0, project.to_fetch)
    yield from fetch_details(client, project.project_id, plan.to_fetch, concurrency=concurrency, tally=tally,
                             progress=progress)
    project.fetched, project.failed, project.failures = tally.fetched, tally.failed, tally.failures


def fetch_details(client: ModelArtsClient, project_id: str, keys: list[tuple[int, int]], *, concurrency: int,
                  tally: _Tally, progress: Progress | None = None) -> Iterator[RawRecord]:
    """Detail answers as records, as they arrive. Like discover(), keeps its error in `tally.error`."""
    def fetch(key):
        return client.version_detail(project_id, *key)

    done = 0
    try:
        with closing(bounded_map(fetch, keys, workers=concurrency, buffer=max(64, 16 * concurrency))) as outcomes:
            for outcome in outcomes:
                done += 1
                if outcome.error is not None:
                    raise outcome.error  # a ModelArtsError stops the project; anything else is a bug
                response = outcome.value
                if response.status is None:
                    tally.failed += 1
                    tally.failures.append(f"job {response.job_id} version {response.version_id}: {response.error}")
                else:
                    tally.fetched += 1
                    failpoints.hit("sync_detail_fetched")  # tests kill -9 a sync here, mid-fetch
                    yield response.record()
                if progress:
                    progress(project_id, done, len(keys))
    except ModelArtsError as exc:
        tally.error = exc
