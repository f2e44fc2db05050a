"""`make demo`: the real Dagster job against the built-in simulator, then what it stored.

    python -m pipelines.demo

Starts the simulator on loopback (ephemeral port, a random token, some faulty
payloads and some throttled or failing requests), points the environment at it,
loads the real Definitions and runs the `sync_all_projects` job through Dagster for
each project partition: once, then again after the simulated clock moved, to show
an incremental sync. Run history goes to ./.dagster_home (so `dagster dev` shows it
afterwards), the warehouse to ./warehouse_data, the report to ./report.html. No network
beyond loopback.
"""
from __future__ import annotations

import os
import secrets
import sys
import time
import warnings
from pathlib import Path

DAGSTER_HOME = ".dagster_home"
WAREHOUSE = "warehouse_data"
REPORT = "report.html"
SIM_JOBS = 40
SIM_V2_JOBS = 15  # new-version (v2) jobs per project, synced beside the v1 versions
SIM_SEED = 7
ADVANCE_HOURS = 6
EXAMPLE_SQL = """\
SELECT v.engine_name,
       count(DISTINCT (v.job_id, v.version_id)) AS versions,
       round(avg(s.value), 1)                   AS avg_gpu_util_pct
FROM job_versions v
JOIN system_metric_samples s USING (project_id, job_id, version_id)
WHERE s.metric = 'gpuUtil' AND v.status_name = 'COMPLETED'
GROUP BY v.engine_name
ORDER BY versions DESC
LIMIT 5"""

# The instance config written on first use: pool limit 1 serialises warehouse writers
# across runs in `dg dev`; the daemon looks at the run queue every second, not every 5 (a
# launched sync starts ~2 s sooner); telemetry off because the demo promises loopback only.
DAGSTER_YAML = """\
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
"""


def prepare_home(cwd: Path) -> Path:
    home = cwd / DAGSTER_HOME
    home.mkdir(exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


def point_environment_at(sim_url: str, token: str, home: Path, warehouse: Path) -> None:
    """Must run before pipelines.definitions is imported: the code location reads its settings on load."""
    os.environ.update({
        "DAGSTER_HOME": str(home),
        "MODELARTS_ENDPOINT": sim_url,
        "MODELARTS_TOKEN": token,
        "MODELARTS_WAREHOUSE": str(warehouse),
        "MODELARTS_RATE": "0",  # loopback: no need to be gentle
    })


def run_sync(job, instance, projects: list[str], label: str) -> bool:
    """One run of the job per project partition, through Dagster; prints what each run reported."""
    ok = True
    for project in projects:
        started = time.perf_counter()
        result = job.execute_in_process(instance=instance, partition_key=project, raise_on_error=False,
                                        run_config=QUIET)
        ok &= result.success
        status = "SUCCESS" if result.success else "FAILURE"
        print(f"{label}: run {result.run_id[:8]} of job {job.name}, partition {project}: {status} "
              f"in {time.perf_counter() - started:.1f} s")
        print("  " + sync_line(result))
        print("  " + checks_line(result))
    return ok


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def refresh_marts(defs, instance) -> bool:
    """The version_summary mart, as the automation sensor would run it after the syncs (no daemon here)."""
    from assets.conventions import key

    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[key("version_summary")], raise_on_error=False, run_config=QUIET)
    print(f"\nmart: run {result.run_id[:8]}, modelarts/version_summary: {'SUCCESS' if result.success else 'FAILURE'} "
          "(its utilisation chart is on the asset's page in dg dev)")
    return result.success


def _materialization(result, key: str):
    for event in result.get_asset_materialization_events():
        if event.materialization.asset_key.path[-1] == key:
            return {k: v.value for k, v in event.materialization.metadata.items()}
    return {}


def sync_line(result) -> str:
    raw = _materialization(result, "raw_payloads")
    rejected = _materialization(result, "rejected_payloads").get("rejected_in_run", "?")
    if not raw:
        return "raw_payloads was not materialized (see the run's logs in dagster dev)"
    return (f"listed {raw['versions_listed']}, fetched {raw['versions_fetched']}, "
            f"skipped as final {raw['versions_skipped_final']}, rejected {rejected}, "
            f"retried {raw['requests_retried']}, not fetched {raw['versions_not_fetched']}")


def _named(evaluation) -> str:
    """`field_issues quality: 2 versions with new unknown fields (no_new_unknown_fields)`"""
    name = f"{evaluation.asset_key.path[-1]} {evaluation.check_name}"
    return f"{name}: {evaluation.description}" if evaluation.description else name


def checks_line(result) -> str:
    evaluations = result.get_asset_check_evaluations()
    passed = sum(e.passed for e in evaluations)
    warned = sorted(_named(e) for e in evaluations if not e.passed and e.severity.value == "WARN")
    failed = sorted(_named(e) for e in evaluations if not e.passed and e.severity.value != "WARN")
    text = f"asset checks: {passed} passed"
    text += f", {len(warned)} warned ({'; '.join(warned)})" if warned else ", 0 warned"
    text += f", {len(failed)} failed ({'; '.join(failed)})" if failed else ", 0 failed"
    return text


def print_summary(warehouse: Path) -> None:
    from warehouse import connect, schema

    con = connect(warehouse)
    try:
        print(f"\nTables in the DuckLake at {warehouse}/ (catalog.sqlite, Parquet data files in data/):")
        for table in schema.ALL_TABLES:
            n = con.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()[0]
            print(f"  {table.name:<24}{n:>10,}")
        print("\nRuns of both API generations (the `runs` view):")
        print_rows(con.execute("SELECT api_version, count(*) AS runs, count(*) FILTER (WHERE is_final) AS final "
                               "FROM runs GROUP BY ALL ORDER BY ALL"))
        print_rejected(con)
        print(f"\nExample query (warehouse.connect({str(warehouse)!r}), or the DuckDB CLI: see the README):")
        print("\n".join("  " + line for line in EXAMPLE_SQL.splitlines()))
        print_rows(con.execute(EXAMPLE_SQL))
        print_version_summary(con)
    finally:
        con.close()


def print_version_summary(con) -> None:
    """One line of version_summary: the run that held the most GPU-hours."""
    row = con.execute("""SELECT job_name, version_name, status_name, status_category, gpu_hours, gpu_util_avg,
                                gpu_util_p95, gpu_hours_under_20, total_accuracy
                         FROM version_summary WHERE gpu_hours IS NOT NULL
                         ORDER BY gpu_hours DESC, version_id LIMIT 1""").fetchone()
    if row is None:
        return
    name, version, status, category, hours, avg, p95, idle, accuracy = row
    util = "no GPU samples" if avg is None else f"GPU util avg {avg:.1f} %, p95 {p95:.1f} %, {idle:,.1f} h under 20 %"
    print(f"\nversion_summary, the run with the most GPU-hours: {name} {version}, {status} ({category}), "
          f"{hours:,.1f} GPU-hours, {util}" + (f", accuracy {accuracy:.3f}" if accuracy is not None else ""))


def write_report(warehouse: Path, out: Path) -> None:
    from warehouse.report import build_report

    path = build_report(warehouse, out)
    print(f"\nReport: {path} (one self-contained HTML file; `modelarts-etl report` writes it too)")


def print_rejected(con) -> None:
    total = con.execute("SELECT count(*) FROM rejected_payloads").fetchone()[0]
    print(f"\nRejected payloads: {total} (kept byte for byte in raw_payloads; the reason is in rejected_payloads)")
    if total:
        print_rows(con.execute("SELECT stage, error_kind, count(*) AS payloads, "
                               "any_value(error_message) AS example_message "
                               "FROM rejected_payloads GROUP BY ALL ORDER BY payloads DESC"))


def print_rows(cursor, width: int = 60) -> None:
    names = [d[0] for d in cursor.description]
    rows = [[_text(v, width) for v in row] for row in cursor.fetchall()]
    widths = [max(len(n), *(len(r[i]) for r in rows)) if rows else len(n) for i, n in enumerate(names)]
    print("  " + "  ".join(n.ljust(w) for n, w in zip(names, widths)))
    for row in rows:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _text(value, width: int) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def main() -> int:
    started = time.perf_counter()
    cwd = Path.cwd()
    home, warehouse = prepare_home(cwd), cwd / WAREHOUSE
    warnings.filterwarnings("ignore")  # Dagster's preview/deprecation notices are not the demo's story

    from pipelines.modelarts.simulator import SimulatorServer, TransientFaults, World
    from pipelines.modelarts.simulator.v2_world import V2World
    from pipelines.partitions import project_ids_from_env

    projects = project_ids_from_env()
    world = World(projects=projects, jobs=SIM_JOBS, seed=SIM_SEED, payload_fault_rate=0.06)
    faults = TransientFaults(rate=0.03, kinds=("throttle", "server_error", "drop"), seed=SIM_SEED, max_per_path=1,
                             retry_after=0)
    v2 = V2World(projects=tuple(projects), jobs=SIM_V2_JOBS, seed=SIM_SEED, payload_fault_rate=0.06,
                 secret_share=0.2)
    token = secrets.token_urlsafe(16)
    with SimulatorServer(world, token=token, faults=faults, v2=v2) as sim:
        point_environment_at(sim.url, token, home, warehouse)
        print(f"simulator: {sim.url} (loopback), {len(projects)} project(s), {world.version_count()} v1 versions "
              f"and {len(v2.truth())} v2 jobs; about 6% of payloads faulty, 3% of requests throttled or failing")
        print(f"DAGSTER_HOME={home}  warehouse={warehouse}\n")

        import dagster as dg

        from pipelines.definitions import defs

        job = defs.resolve_job_def("sync_all_projects")
        instance = dg.DagsterInstance.get()
        ok = run_sync(job, instance, projects, "sync 1")
        changes = world.advance(ADVANCE_HOURS * 3600)
        v2.advance(ADVANCE_HOURS * 3600, new_jobs=2)
        print(f"\nsimulated clock +{ADVANCE_HOURS} h: {len(changes.finished)} versions finished, "
              f"{len(changes.new)} new, {len(changes.still_running)} still running")
        ok &= run_sync(job, instance, projects, "sync 2")
        ok &= refresh_marts(defs, instance)
    print_summary(warehouse)
    write_report(warehouse, cwd / REPORT)
    repo = Path(__file__).resolve().parents[1]
    print(f"\nDone in {time.perf_counter() - started:.1f} s. Browse the runs, assets and checks with:\n"
          f"  cd {repo} && DAGSTER_HOME={home} MODELARTS_WAREHOUSE={warehouse} "
          f"VIRTUAL_ENV={Path(sys.executable).parents[1]} {Path(sys.executable).parent}/dg dev")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
