"""`modelarts-etl`: the command line. Kept free of Dagster imports so it starts fast."""
from __future__ import annotations

import time

import click

from pipelines.cli_common import WAREHOUSE_OPTION, user_errors
from warehouse.files import iter_file_records
from warehouse.reader import warehouse_dir
from warehouse.store import DEFAULT_BATCH_RECORDS, LoadReport, Warehouse, validate_project_id


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Typed, lossless ETL of ModelArts training-job versions into Parquet and DuckDB."""


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--project-id", required=True, envvar="MODELARTS_PROJECT_ID", help="Project the payloads belong to.")
@WAREHOUSE_OPTION
@click.option("--keep-secrets", is_flag=True, help="Do not redact secret-looking parameters in tidy tables.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=DEFAULT_BATCH_RECORDS, show_default=True,
              help="Payloads parsed and written per transaction (bounds memory).")
def ingest(paths: tuple[str, ...], project_id: str, warehouse: str | None, keep_secrets: bool,
           batch_size: int) -> None:
    """Load payload files (.json, .jsonl, or folders of them) as if fetched."""
    started = time.perf_counter()
    with user_errors():
        validate_project_id(project_id)
        with Warehouse.open(warehouse_dir(warehouse), redact=not keep_secrets) as wh:
            report = wh.land(iter_file_records(paths, project_id), batch_records=batch_size)
    _print_report(report, time.perf_counter() - started)


@main.command()
@WAREHOUSE_OPTION
@click.option("--keep-secrets", is_flag=True, help="Do not redact secret-looking parameters in tidy tables.")
def rebuild(warehouse: str | None, keep_secrets: bool) -> None:
    """Re-derive every tidy table from raw_payloads (after a parser fix); calls nothing."""
    started = time.perf_counter()
    with user_errors():
        with Warehouse.open(warehouse_dir(warehouse), redact=not keep_secrets) as wh:
            report = wh.rebuild()
    _print_report(report, time.perf_counter() - started)


def _print_report(report: LoadReport, elapsed: float) -> None:
    click.echo(
        f"landed {report.landed} payloads ({report.duplicates} already stored), "
        f"versions loaded {report.versions_loaded}, rejected {report.rejected}, "
        f"field issues {report.field_issues}, in {elapsed:.1f} s"
    )


try:  # the sync and simulate commands live beside the HTTP client
    from pipelines.cli_sync import simulate, sync

    main.add_command(sync)
    main.add_command(simulate)
except ImportError:  # pragma: no cover - only while the client is being written
    pass


if __name__ == "__main__":
    main()
