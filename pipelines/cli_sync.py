"""`modelarts-etl sync` (pull from the API into the warehouse) and `modelarts-etl simulate`.

Credentials come from the environment only, never from flags (flags end up in shell
history and `ps`); the first complete set wins:

    MODELARTS_TOKEN                        an IAM token (X-Auth-Token); cannot be renewed
    HUAWEICLOUD_SDK_AK, HUAWEICLOUD_SDK_SK AK/SK request signing (SDK-HMAC-SHA256)
    HUAWEICLOUD_SDK_SECURITY_TOKEN         optional, with temporary AK/SK
    MODELARTS_IAM_USER, MODELARTS_IAM_PASSWORD
                                           IAM password login; a token per project, renewed
    MODELARTS_IAM_DOMAIN                   account name for the login (default: the user name)
    MODELARTS_IAM_ENDPOINT                 IAM address (default: derived from the endpoint)

Stand-ins for flags: MODELARTS_ENDPOINT (--endpoint), MODELARTS_PROJECT_ID (--project-id;
several separated by spaces or commas), MODELARTS_WAREHOUSE (--warehouse),
MODELARTS_MAX_RETRY_AFTER (--max-retry-after). A --project-id flag is one id: repeat it
for several (`--project-id "a b"` is refused, not split).

A wrong endpoint, bad credentials or an unknown project end in one line on stderr and
exit status 1; no traceback, no secret. `python -m pipelines.cli_sync` runs both
commands without the main CLI.
"""
from __future__ import annotations

import signal
import time
import warnings

import click
from click.core import ParameterSource

from pipelines.cli_common import WAREHOUSE_OPTION, user_errors

from pipelines.modelarts.auth import auth_from_env
from pipelines.modelarts.client import DEFAULT_DEADLINE, DEFAULT_TIMEOUT, normalize_endpoint
from pipelines.modelarts.retry import DEFAULT_MAX_RETRY_AFTER, RetryPolicy
from pipelines.modelarts.simulator.faults import PAYLOAD_FAULTS, TRANSIENT_FAULTS, TransientFaults
from pipelines.modelarts.simulator.generator import DEFAULT_PROJECT_ID
from pipelines.modelarts.simulator.hostile import HOSTILE_MODES, Hostile
from pipelines.modelarts.simulator.server import SimulatorServer
from pipelines.modelarts.simulator.v2_world import V2World
from pipelines.modelarts.simulator.world import World
from pipelines.modelarts.sync import APIS, DEFAULT_LAND_BATCH, SyncReport, Target, sync_projects
from warehouse.reader import warehouse_dir
from warehouse.store import Warehouse, validate_project_id

PROGRESS_EVERY = 2.0  # seconds between progress lines
PROGRESS_MIN_VERSIONS = 100  # syncs with fewer versions to fetch print no progress


def _project_ids(values: tuple[str, ...]) -> list[str]:
    """Each --project-id is one id, as given: `--project-id "a b"` is a mistake, not two projects.
    Only $MODELARTS_PROJECT_ID holds several (click splits it at spaces; commas work too)."""
    ctx = click.get_current_context()
    from_env = ctx.get_parameter_source("project_ids") is ParameterSource.ENVIRONMENT
    ids = []
    for value in values:
        if from_env:
            ids.extend(value.replace(",", " ").split())
        elif any(sep in value for sep in ", \t\n"):
            raise click.ClickException(f"invalid project id {value!r}: one --project-id is one id, and this one "
                                       "has a space or comma; pass --project-id once per project")
        else:
            ids.append(value)
    return list(dict.fromkeys(ids))


class _Progress:
    """Prints "fetched n/total" lines on stderr, at most every PROGRESS_EVERY seconds."""

    def __init__(self):
        self._last = 0.0

    def __call__(self, project_id: str, done: int, total: int) -> None:
        if total < PROGRESS_MIN_VERSIONS:
            return
        now = time.monotonic()
        if done in (0, total) or now - self._last >= PROGRESS_EVERY:
            self._last = now
            click.echo(f"  {project_id}: fetched {done}/{total} versions", err=True)


@click.command()
@click.option("--endpoint", envvar="MODELARTS_ENDPOINT", required=True,
              help="ModelArts endpoint, e.g. https://modelarts.cn-north-4.myhuaweicloud.com ($MODELARTS_ENDPOINT).")
@click.option("--project-id", "project_ids", multiple=True, envvar="MODELARTS_PROJECT_ID", required=True,
              help="Project to sync; repeat for several ($MODELARTS_PROJECT_ID).")
@WAREHOUSE_OPTION
@click.option("--concurrency", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Requests in flight at once.")
@click.option("--rate", type=click.FloatRange(min=0), default=20.0, show_default=True,
              help="Requests per second per endpoint; 0 = no limit.")
@click.option("--per-page", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="Page size asked of the list endpoints (the server may give fewer).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT[1], show_default=True,
              help="Seconds to wait for an answer before retrying.")
@click.option("--retries", type=click.IntRange(0, 20), default=5, show_default=True,
              help="Retries per request on 429, 5xx, timeouts and dropped connections.")
@click.option("--max-retry-after", type=click.FloatRange(min=0), default=DEFAULT_MAX_RETRY_AFTER, show_default=True,
              envvar="MODELARTS_MAX_RETRY_AFTER",
              help="Longest Retry-After (seconds) waited for; a request told to wait longer is left for the next "
                   "sync and reported as not fetched ($MODELARTS_MAX_RETRY_AFTER).")
@click.option("--deadline", type=click.FloatRange(min=1), default=DEFAULT_DEADLINE, show_default=True,
              help="Seconds for a whole request, however the server paces its answer (--timeout is per read).")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=DEFAULT_LAND_BATCH, show_default=True,
              help="Answers landed per warehouse transaction.")
@click.option("--api", type=click.Choice(APIS), default="auto", show_default=True,
              help="Which training API: v1 (old-version jobs and versions), v2 (new-version jobs), both; auto = "
                   "both, skipping one the endpoint does not serve for the project.")
@click.option("--insecure", is_flag=True, help="Do not verify TLS certificates (test endpoints only).")
@click.option("--keep-secrets", is_flag=True, help="Do not redact secret-looking parameters in tidy tables.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
def sync(endpoint: str, project_ids: tuple[str, ...], warehouse: str | None, concurrency: int, rate: float,
         per_page: int, timeout: float, retries: int, max_retry_after: float, deadline: float, batch_size: int,
         api: str, insecure: bool, keep_secrets: bool, quiet: bool) -> None:
    """Fetch new and unfinished training-job versions (v1) and jobs (v2) from the API into the warehouse."""
    ids = _project_ids(project_ids)
    with user_errors():
        for project_id in ids:
            validate_project_id(project_id)
        endpoint = normalize_endpoint(endpoint)
        connect = min(timeout, DEFAULT_TIMEOUT[0])
        auth = auth_from_env(endpoint, verify=not insecure, timeout=(connect, timeout), deadline=deadline)
        if insecure:
            click.echo("WARNING: TLS certificate verification is disabled (--insecure): use it only against a "
                       "test endpoint", err=True)
        click.echo(f"syncing {len(ids)} project(s) from {endpoint} ({auth.describe()})", err=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the --insecure line above says it once
            with Warehouse.open(warehouse_dir(warehouse), redact=not keep_secrets, projects=ids) as wh:
                report = sync_projects(
                    wh, [Target(endpoint, p) for p in ids], auth, concurrency=concurrency, rate=rate or None,
                    per_page=per_page, timeout=(connect, timeout),
                    retry=RetryPolicy(max_retries=retries, retry_after_max=max_retry_after),
                    verify=not insecure, progress=None if quiet else _Progress(), raise_on_error=False,
                    deadline=deadline, land_batch=batch_size, api=api,
                )
                if not report.ok:
                    wh.discard_if_empty()  # a first sync that failed leaves no empty warehouse behind
    _print_report(report)
    if not report.ok:
        raise click.ClickException(report.error_line())


def _print_report(report: SyncReport) -> None:
    for project in report.projects:
        if project.error is None:
            click.echo(project.line())
        for gap in project.gaps[:20]:
            click.echo(f"  gap: {gap}", err=True)
        for warning in [w for w in project.warnings if w not in project.gaps][:5]:
            click.echo(f"  warning: {warning}", err=True)
        for failure in project.failures[:5]:
            click.echo(f"  not fetched: {failure}", err=True)
    if any(project.error is None for project in report.projects):
        click.echo(f"total: {report.summary()}")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (keep it loopback).")
@click.option("--port", type=click.IntRange(0, 65535), default=8780, show_default=True, help="0 = any free port.")
@click.option("--project-id", "project_ids", multiple=True,
              help=f"Project ids to serve (default {DEFAULT_PROJECT_ID}).")
@click.option("--jobs", type=click.IntRange(min=0), default=50, show_default=True, help="Jobs per project.")
@click.option("--versions-per-job", default="1-8", show_default=True, help="N, or MIN-MAX.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--running-share", type=click.FloatRange(0, 1), default=0.2, show_default=True,
              help="Share of jobs whose latest version is still in progress.")
@click.option("--page-cap", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="Largest page the server gives, whatever per_page asks.")
@click.option("--latency-ms", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Added to every request.")
@click.option("--fault-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of requests meeting a transient fault.")
@click.option("--faults", default=",".join(TRANSIENT_FAULTS), show_default=True, help="Transient fault kinds.")
@click.option("--max-faults-per-path", type=click.IntRange(min=0), default=None,
              help="After this many faults a URL is served normally.")
@click.option("--retry-after", type=click.IntRange(min=0), default=1, show_default=True,
              help="Retry-After seconds sent with 429.")
@click.option("--slow-seconds", type=click.FloatRange(min=0), default=35.0, show_default=True,
              help="How long a 'slow' fault stalls (past the client's timeout).")
@click.option("--payload-fault-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of versions whose detail payload is faulty.")
@click.option("--payload-faults", default=",".join(PAYLOAD_FAULTS), show_default=True, help="Payload fault kinds.")
@click.option("--secret-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of jobs with made-up secrets in parameters and user_command (to see redaction).")
@click.option("--hostile", type=click.Choice(HOSTILE_MODES), default=None,
              help="Misbehave on purpose: hostile ids, trickled answers, non-UTF-8 bytes, huge bodies, "
                   "empty or repeated list pages, an overstated job total.")
@click.option("--hostile-match", default=None, help="Regex on the request path the --hostile mode applies to.")
@click.option("--token", envvar="MODELARTS_SIMULATOR_TOKEN", default=None,
              help="Require this X-Auth-Token ($MODELARTS_SIMULATOR_TOKEN).")
@click.option("--ak", envvar="MODELARTS_SIMULATOR_AK", default=None, help="Accept AK/SK signatures with this AK.")
@click.option("--sk", envvar="MODELARTS_SIMULATOR_SK", default=None, help="... and this SK.")
@click.option("--iam-user", default=None, help="Serve IAM logins for this user (POST /v3/auth/tokens).")
@click.option("--iam-password", envvar="MODELARTS_SIMULATOR_IAM_PASSWORD", default=None)
@click.option("--iam-domain", default=None, help="Default: the user name.")
@click.option("--token-ttl", type=click.FloatRange(min=1), default=24 * 3600.0, show_default=True,
              help="Seconds an IAM token stays valid.")
@click.option("--tick", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Every N seconds, advance the simulated clock (0 = never).")
@click.option("--tick-hours", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Simulated hours per tick.")
@click.option("--duration", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Stop after N seconds (0 = run until Ctrl-C).")
@click.option("--prewarm", is_flag=True, help="Generate every payload before serving (for benchmarks).")
@click.option("--v2-jobs", type=click.IntRange(min=0), default=0, show_default=True,
              help="New-version (v2) jobs per project, served under /v2/ (0 = no v2 API).")
@click.option("--v2-offset", type=click.Choice(("page", "record")), default="page", show_default=True,
              help="How the v2 job search reads `offset`: a page number or a record offset (the docs disagree).")
def simulate(host, port, project_ids, jobs, versions_per_job, seed, running_share, page_cap, latency_ms,
             fault_rate, faults, max_faults_per_path, retry_after, slow_seconds, payload_fault_rate,
             payload_faults, secret_share, hostile, hostile_match, token, ak, sk, iam_user, iam_password, iam_domain,
             token_ttl, tick, tick_hours, duration, prewarm, v2_jobs, v2_offset) -> None:
    """Serve a simulated ModelArts v1 training-job API (and a minimal IAM; with --v2-jobs, the v2 API) with
    synthetic data."""
    if bool(ak) != bool(sk):
        raise click.ClickException("give both --ak and --sk, or neither")
    if bool(iam_user) != bool(iam_password):
        raise click.ClickException("give both --iam-user and --iam-password, or neither")
    try:
        world = World(projects=_project_ids(project_ids) or [DEFAULT_PROJECT_ID], jobs=jobs,
                      versions_per_job=_range(versions_per_job), seed=seed, running_share=running_share,
                      payload_fault_rate=payload_fault_rate, payload_faults=_kinds(payload_faults),
                      secret_share=secret_share)
        transient = TransientFaults(rate=fault_rate, kinds=_kinds(faults), seed=seed, max_per_path=max_faults_per_path,
                                    retry_after=retry_after, slow_seconds=slow_seconds)
        server = SimulatorServer(world, host=host, port=port, token=token, aksk=(ak, sk) if ak else None,
                                 iam_user=(iam_user, iam_password, iam_domain or iam_user) if iam_user else None,
                                 token_ttl=token_ttl, page_cap=page_cap, latency=latency_ms / 1000, faults=transient,
                                 hostile=Hostile(hostile, match=hostile_match) if hostile else None,
                                 v2=V2World(projects=tuple(world.project_ids), jobs=v2_jobs, seed=seed,
                                            running_share=running_share, payload_fault_rate=payload_fault_rate,
                                            payload_faults=_kinds(payload_faults), secret_share=secret_share,
                                            offset_reading=v2_offset) if v2_jobs else None)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    if prewarm:
        world.prewarm()
    with server:
        click.echo(f"ModelArts simulator listening on {server.url}")  # first line: scripts read the URL here
        click.echo(f"projects: {' '.join(world.project_ids)}; jobs: {jobs} per project; "
                   f"versions: {world.version_count()}")
        auth_hint = "MODELARTS_TOKEN=<the --token> " if token else ""
        click.echo(f"try: MODELARTS_ENDPOINT={server.url} MODELARTS_PROJECT_ID={world.project_ids[0]} "
                   f"{auth_hint}modelarts-etl sync")
        try:
            _run(world, tick, tick_hours, duration)
        except KeyboardInterrupt:
            pass
    click.echo("simulator stopped")


def _run(world: World, tick: float, tick_hours: float, duration: float) -> None:
    # a parent that ignores SIGTERM (some supervisors, test runners) passes that on: stop on it anyway
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    started = time.monotonic()
    next_tick = started + tick if tick else None
    while not duration or time.monotonic() - started < duration:
        time.sleep(0.1)
        if next_tick is not None and time.monotonic() >= next_tick:
            changes = world.advance(tick_hours * 3600)
            click.echo(f"clock +{tick_hours:g} h: {len(changes.finished)} finished, {len(changes.new)} new, "
                       f"{len(changes.still_running)} still running")
            next_tick += tick


def _range(text: str) -> int | tuple[int, int]:
    try:
        low, _, high = text.partition("-")
        low_n, high_n = int(low), int(high or low)
    except ValueError:
        raise click.BadParameter("use N or MIN-MAX, e.g. 1-8", param_hint="--versions-per-job") from None
    if not 1 <= low_n <= high_n:
        raise click.BadParameter("need 1 <= MIN <= MAX", param_hint="--versions-per-job")
    return (low_n, high_n)


def _kinds(text: str) -> tuple[str, ...]:
    return tuple(kind.strip() for kind in text.split(",") if kind.strip())


@click.group()
def _main() -> None:
    """sync and simulate, without the rest of modelarts-etl."""


_main.add_command(sync)
_main.add_command(simulate)

if __name__ == "__main__":
    _main()
