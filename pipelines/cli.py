"""`modelarts-etl`: the command line. Kept free of Dagster imports so it starts fast."""
from __future__ import annotations

import time
from datetime import timezone
from pathlib import Path

import click

from pipelines.cli_common import WAREHOUSE_OPTION, user_errors
from warehouse import schema
from warehouse.files import expand_paths, iter_file_records
from warehouse.lake import LakeConfig, LakeError
from warehouse.reader import warehouse_dir
from warehouse.store import DEFAULT_BATCH_RECORDS, LoadReport, Warehouse, WarehouseError, validate_project_id


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="modelarts-etl")
def main() -> None:
    """Typed, lossless ETL of ModelArts training-job versions into Parquet and DuckDB."""


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--project-id", required=True, envvar="MODELARTS_PROJECT_ID", help="Project the payloads belong to.")
@WAREHOUSE_OPTION
@click.option("--keep-secrets", is_flag=True, help="Do not redact secret-looking parameters in tidy tables.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=DEFAULT_BATCH_RECORDS, show_default=True,
              help="Payloads parsed and written per transaction (bounds memory).")
@click.option("--strict", is_flag=True, help="Exit with status 1 if any payload was rejected or any link skipped.")
def ingest(paths: tuple[str, ...], project_id: str, warehouse: str | None, keep_secrets: bool,
           batch_size: int, strict: bool) -> None:
    """Load payload files (.json, .jsonl, or folders of them) as if fetched. Links inside folders
    are skipped; every rejected payload is listed with its reason."""
    started = time.perf_counter()
    with user_errors():
        validate_project_id(project_id)
        inputs = expand_paths(paths)
        with Warehouse.open(warehouse_dir(warehouse), redact=not keep_secrets, projects=[project_id]) as wh:
            report = wh.land(iter_file_records(inputs.files, project_id), batch_records=batch_size)
            rejected = wh.con.execute("SELECT source, error_kind, error_message FROM rejected_payloads "
                                      "WHERE load_id = ? ORDER BY source", [report.load_id]).fetchall()
    _print_report(report, time.perf_counter() - started)
    _print_refused(rejected, inputs.skipped, report.load_id)
    if strict and (rejected or inputs.skipped):
        raise click.ClickException(f"--strict: {len(rejected)} payload(s) rejected, {len(inputs.skipped)} link(s) "
                                   "skipped (listed above)")


SHOWN_REJECTIONS = 20


def _print_refused(rejected: list[tuple], skipped: list[str], load_id: str) -> None:
    """What ingest did not take, and why: the user should never have to guess which file it was."""
    for source, kind, message in rejected[:SHOWN_REJECTIONS]:
        click.echo(f"  rejected {source}: {kind}: {message}", err=True)
    if len(rejected) > SHOWN_REJECTIONS:
        click.echo(f"  ... and {len(rejected) - SHOWN_REJECTIONS} more: SELECT source, error_message FROM "
                   f"rejected_payloads WHERE load_id = '{load_id}'", err=True)
    for line in skipped:
        click.echo(f"  skipped {line}", err=True)


@main.command()
@WAREHOUSE_OPTION
@click.option("--keep-secrets", is_flag=True, help="Do not redact secret-looking parameters in tidy tables.")
def rebuild(warehouse: str | None, keep_secrets: bool) -> None:
    """Re-derive every tidy table from raw_payloads (after a parser fix); calls nothing. One snapshot,
    published only when it succeeds. Bodies in damaged data files are skipped and reported; their
    versions keep the rows they had."""
    started = time.perf_counter()
    with user_errors():
        root = _existing_warehouse(warehouse)
        with Warehouse.open(root, redact=not keep_secrets, create=False, source="rebuild") as wh:
            report = wh.rebuild()
    _print_report(report, time.perf_counter() - started)
    if report.damage:
        for damage in report.damage:
            click.echo(damage.line(root), err=True)
        raise click.ClickException(
            f"rebuilt without {sum(d.file.rows for d in report.damage)} raw bodies in {len(report.damage)} damaged "
            f"file(s); {report.versions_kept} version(s) whose body is unreadable kept their rows. Restore the "
            f"file(s) from a backup and rebuild again, or run `modelarts-etl recover --warehouse {root}` to make "
            "a warehouse of the readable bodies")


@main.command()
@WAREHOUSE_OPTION
def check(warehouse: str | None) -> None:
    """Read every data file of every table and say which are damaged (exit status 1 if any).
    Read-only: never takes the writer lock."""
    from warehouse import datafiles
    from warehouse.reader import connect

    started = time.perf_counter()
    with user_errors():
        root = _existing_warehouse(warehouse)
        con = connect(root)
        try:
            files = sum(len(datafiles.data_files(con, t.name)) for t in schema.STORED_TABLES)
            damage = datafiles.damaged(con)
        finally:
            con.close()
    for found in damage:
        click.echo(found.line(root))
    elapsed = time.perf_counter() - started
    if not damage:
        click.echo(f"{files} data files checked, none damaged, in {elapsed:.1f} s")
        return
    raw = [d for d in damage if d.file.table == schema.RAW_PAYLOADS.name]
    todo = (f"restore them from a backup (same paths), or run `modelarts-etl recover --warehouse {root}` to "
            "rebuild the warehouse from the readable raw files" if raw else
            f"only derived tables are damaged: run `modelarts-etl recover --warehouse {root}` to derive them "
            "again from the raw files (or restore the files from a backup)")
    raise click.ClickException(f"{len(damage)} of {files} data files damaged ({len(raw)} of raw_payloads, "
                               f"{sum(d.file.rows for d in raw)} raw bodies): {todo}")


main.add_command(check, "verify")


@main.command()
@WAREHOUSE_OPTION
def recover(warehouse: str | None) -> None:
    """Rebuild a warehouse from its raw data files alone (the catalog lost or damaged, or data files
    damaged): the catalog and data/ move to pre-recover/, nothing is deleted."""
    from warehouse.recover import recover as run_recover

    started = time.perf_counter()
    with user_errors():
        root = warehouse_dir(warehouse)
        report = run_recover(root)
    for path, problem in report.unreadable:
        click.echo(f"skipped unreadable raw file {path}: {problem}", err=True)
    click.echo(f"{report.summary()}, in {time.perf_counter() - started:.1f} s")


@main.command()
@WAREHOUSE_OPTION
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="Show the newest N snapshots.")
def snapshots(warehouse: str | None, limit: int) -> None:
    """The load ledger: one line per snapshot (newest last). Read any table as of one with
    `connect(warehouse, snapshot=ID)`, or in SQL: SELECT * FROM job_versions AT (VERSION => ID)."""
    with user_errors():
        from warehouse.reader import connect

        con = connect(warehouse_dir(warehouse))
        try:
            ledger = con.execute("SELECT * FROM (SELECT * FROM loads ORDER BY snapshot_id DESC LIMIT ?) "
                                 "ORDER BY snapshot_id", [limit]).fetchall()
        finally:
            con.close()
    click.echo(format_ledger(ledger))


LEDGER_COLUMNS = ("snapshot", "time (UTC)", "step", "load_id", "source", "projects", "landed", "versions",
                  "rejected", "issues", "raw_through")


def format_ledger(ledger: list[tuple]) -> str:
    """The `loads` rows as an aligned text table; numbers right-aligned, empty for NULL."""
    def cell(value) -> str:
        if value is None:
            return ""
        if hasattr(value, "astimezone"):
            return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        return str(value)

    cells = [LEDGER_COLUMNS] + [tuple(cell(v) for v in row) for row in ledger]
    widths = [max(len(r[i]) for r in cells) for i in range(len(LEDGER_COLUMNS))]
    numeric = {0, 6, 7, 8, 9, 10}
    return "\n".join("  ".join(v.rjust(w) if i in numeric else v.ljust(w) for i, (v, w) in
                               enumerate(zip(r, widths))).rstrip() for r in cells)


@main.command()
@WAREHOUSE_OPTION
@click.option("--retention", default="7d", show_default=True,
              help="Keep snapshots (time travel) this long: a number and s, m, h, d or w, e.g. 12h, 30d; "
                   "0 keeps only the latest. Orphaned files older than this are deleted too.")
def maintain(warehouse: str | None, retention: str) -> None:
    """Merge small data files, expire snapshots older than --retention and delete the files nothing
    needs any more. Takes the writer lock; readers are never blocked. The snapshot the writer
    resumes from (the newest with raw_through) is always kept."""
    from warehouse.maintenance import maintain as run_maintenance, parse_retention

    started = time.perf_counter()
    with user_errors():
        keep = parse_retention(retention)
        root = _existing_warehouse(warehouse)
        with Warehouse.open(root, source="maintain", create=False) as wh:
            report = run_maintenance(wh, retention=keep)
    click.echo(f"{report.summary()}, in {time.perf_counter() - started:.1f} s")


@main.command()
@WAREHOUSE_OPTION
@click.option("--parquet", "parquet_dir", type=click.Path(), help="Folder (a link, swapped atomically) for one "
              "Parquet folder per table, e.g. pandas.read_parquet('DIR/job_versions').")
@click.option("--duckdb", "duckdb_file", type=click.Path(), help="A standalone DuckDB file, replaced atomically.")
@click.option("--snapshot", default=None, help="Snapshot id to export (see `snapshots`); default the latest.")
def export(warehouse: str | None, parquet_dir: str | None, duckdb_file: str | None, snapshot: str | None) -> None:
    """Copy every table, as of one snapshot, to plain Parquet and/or a DuckDB file, for tools
    that do not read DuckLake."""
    from warehouse.export import export_duckdb, export_parquet

    started = time.perf_counter()
    with user_errors():
        if not parquet_dir and not duckdb_file:
            raise WarehouseError("nothing to export to: pass --parquet DIR and/or --duckdb FILE")
        snapshot = _snapshot_id(snapshot)
        root = _existing_warehouse(warehouse)
        reports = []
        if parquet_dir:
            reports.append(export_parquet(root, parquet_dir, snapshot=snapshot))
            snapshot = reports[-1].snapshot_id  # both exports show the same snapshot
        if duckdb_file:
            reports.append(export_duckdb(root, duckdb_file, snapshot=snapshot))
    for report in reports:
        click.echo(f"exported snapshot {report.snapshot_id} to {report.path}: "
                   f"{report.tables.get('job_versions', 0)} versions, {sum(report.tables.values())} rows in "
                   f"{len(report.tables)} tables")
    click.echo(f"in {time.perf_counter() - started:.1f} s")


@main.command()
@WAREHOUSE_OPTION
def migrate(warehouse: str | None) -> None:
    """Convert a warehouse of the pre-DuckLake layout (modelarts.duckdb + parquet/) into a DuckLake.
    Any writer does this on first open; this command does only that. The old files are moved to
    pre-ducklake/, nothing is deleted."""
    from warehouse.migrate import needs_migration

    started = time.perf_counter()
    with user_errors():
        root = warehouse_dir(warehouse)
        if not root.is_dir():
            raise WarehouseError(f"no warehouse at {root.absolute()}: pass --warehouse")
        legacy = needs_migration(root)
        with Warehouse.open(root, source="migrate") as wh:
            landed = wh.con.execute("SELECT coalesce(sum(landed), 0) FROM loads WHERE step = 'migrate'").fetchone()[0]
            versions = wh.con.execute("SELECT count(*) FROM job_versions").fetchone()[0]
    if legacy:
        click.echo(f"converted {root}: {landed} raw bodies, {versions} versions; the old files are in "
                   f"{root}/pre-ducklake/ (delete them once the lake looks right), in "
                   f"{time.perf_counter() - started:.1f} s")
    else:
        click.echo(f"{root} is already a DuckLake warehouse: nothing to convert")


def _snapshot_id(text: str | None) -> int | None:
    """Parsed here, not by click, so a typo is one line like every other mistake."""
    if text is None:
        return None
    if not text.strip().isdigit():
        raise WarehouseError(f"--snapshot {text!r} is not a snapshot id: use a number from `modelarts-etl snapshots`")
    return int(text)


def _existing_warehouse(warehouse: str | None) -> Path:
    """The warehouse folder, refusing one with no lake (opening a writer would create one)."""
    from warehouse.recover import has_raw_files

    root = warehouse_dir(warehouse)
    try:
        exists = LakeConfig.for_folder(root).exists()
    except LakeError as exc:
        raise WarehouseError(str(exc)) from None
    if not exists and has_raw_files(root):
        raise WarehouseError(f"the warehouse {root.absolute()} has data files but no catalog: run "
                             f"`modelarts-etl recover --warehouse {root}` to rebuild it from them")
    if not exists:
        raise WarehouseError(f"no warehouse at {root.absolute()}: run `modelarts-etl ingest` or `sync` first, "
                             "or pass --warehouse")
    return root


def _print_report(report: LoadReport, elapsed: float) -> None:
    click.echo(
        f"landed {report.landed} payloads ({report.duplicates} already stored), "
        f"versions loaded {report.versions_loaded}, rejected {report.rejected}, "
        f"field issues {report.field_issues}, in {elapsed:.1f} s"
    )


from pipelines.cli_report import report, sql, tables  # noqa: E402  (the reading commands)

for command in (tables, sql, report):
    main.add_command(command)

try:  # the sync and simulate commands live beside the HTTP client
    from pipelines.cli_sync import simulate, sync

    main.add_command(sync)
    main.add_command(simulate)
except ImportError:  # pragma: no cover - only while the client is being written
    pass


if __name__ == "__main__":
    main()
