"""The reading commands: `tables`, `sql` and `report`. Read-only: they never block a writer."""
from __future__ import annotations

import csv
import json
import sys
from datetime import date, datetime

import click
import duckdb

from pipelines.cli_common import WAREHOUSE_OPTION, user_errors
from warehouse.store import WarehouseError

SNAPSHOT_OPTION = click.option("--snapshot", type=click.IntRange(0), default=None,
                               help="Read as of this snapshot id (see `modelarts-etl snapshots`).")
MAX_PRETTY_ROWS = 1_000
MAX_CELL = 60


@click.command()
@WAREHOUSE_OPTION
@SNAPSHOT_OPTION
def tables(warehouse: str | None, snapshot: int | None) -> None:
    """Every table and view: its kind, rows, and the last snapshot that changed it."""
    from warehouse import reader

    with user_errors():
        con = reader.connect(warehouse, snapshot=snapshot)
        try:
            rows = table_rows(con)
        finally:
            con.close()
    _print_pretty(["table", "kind", "rows", "last load"], rows)


def table_rows(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """(name, kind, rows, last load) per table; a view's last load is the lake's latest snapshot."""
    from warehouse import reader

    current = con.execute("SELECT max(snapshot_id) FROM loads").fetchone()[0]
    changed = _last_changes(con, current)
    snapshot_times = dict(con.execute("SELECT snapshot_id, snapshot_time FROM loads").fetchall())
    stored = {name for (name,) in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()").fetchall()}
    out = []
    for name in reader.table_names():
        rows = con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
        stored_as = "system_metric_series" if name == "system_metric_samples" else name
        snap = changed.get(stored_as) if name in stored or stored_as in stored else current
        kind = "table" if name in stored else "view"
        when = snapshot_times.get(snap)
        out.append((name, kind, rows, f"{snap} ({when:%Y-%m-%d %H:%M:%S} UTC)" if when else "-"))
    return out


def _last_changes(con: duckdb.DuckDBPyConnection, current: int | None) -> dict[str, int]:
    """The newest snapshot (up to `current`) that added a data or delete file to each table, from the
    DuckLake catalog's own tables (the DuckLake spec's ducklake_data_file / ducklake_delete_file)."""
    if current is None:
        return {}
    meta = f"__ducklake_metadata_{con.execute('SELECT current_database()').fetchone()[0]}"
    return dict(con.execute(f"""SELECT t.table_name, max(f.begin_snapshot)
        FROM (SELECT table_id, begin_snapshot FROM {meta}.ducklake_data_file
              UNION ALL SELECT table_id, begin_snapshot FROM {meta}.ducklake_delete_file) f
        JOIN {meta}.ducklake_table t USING (table_id)
        WHERE f.begin_snapshot <= ? AND t.end_snapshot IS NULL GROUP BY t.table_name""", [current]).fetchall())


@click.command()
@click.argument("query")
@WAREHOUSE_OPTION
@SNAPSHOT_OPTION
@click.option("--csv", "as_csv", is_flag=True, help="Every row as CSV with a header, to stdout.")
@click.option("--json", "as_json", is_flag=True, help="Every row as a JSON array of objects, to stdout.")
def sql(query: str, warehouse: str | None, snapshot: int | None, as_csv: bool, as_json: bool) -> None:
    """Run one read-only SQL query, e.g. modelarts-etl sql "SELECT * FROM best_versions LIMIT 5"."""
    from warehouse import reader

    if as_csv and as_json:
        raise click.ClickException("--csv and --json both given: choose one")
    with user_errors():
        con = reader.connect(warehouse, snapshot=snapshot)
        try:
            try:
                result = con.execute(query)
                columns = [d[0] for d in result.description or ()]
                rows = result.fetchall() if columns else []
            except duckdb.Error as exc:
                raise WarehouseError(f"the query failed: {str(exc).strip().splitlines()[0]}") from None
        finally:
            con.close()
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    elif as_json:
        click.echo(json.dumps([dict(zip(columns, r)) for r in rows], default=_json_value, indent=1))
    else:
        _print_pretty(columns, rows)


@click.command()
@WAREHOUSE_OPTION
@SNAPSHOT_OPTION
@click.option("--out", "out", default="report.html", show_default=True, help="The HTML file to write.")
@click.option("--top", type=click.IntRange(1, 100), default=10, show_default=True, help="Jobs in the top lists.")
def report(warehouse: str | None, snapshot: int | None, out: str, top: int) -> None:
    """Write one self-contained HTML page of charts: runs over time, GPU utilisation, idle GPU-hours."""
    from warehouse.reader import warehouse_dir
    from warehouse.report import build_report

    with user_errors():
        path = build_report(warehouse_dir(warehouse), out, snapshot=snapshot, top=top)
    click.echo(f"report written to {path} ({path.stat().st_size:,} bytes)")


def _json_value(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _cell(value) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= MAX_CELL else text[:MAX_CELL - 1] + "…"


def _print_pretty(columns: list[str], rows: list[tuple]) -> None:
    shown = [[_cell(v) for v in row] for row in rows[:MAX_PRETTY_ROWS]]
    widths = [max([len(c)] + [len(r[i]) for r in shown]) for i, c in enumerate(columns)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    click.echo(line)
    click.echo("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |")
    click.echo(line)
    for row in shown:
        click.echo("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |")
    click.echo(line)
    more = len(rows) - len(shown)
    click.echo(f"{len(rows)} row{'s' if len(rows) != 1 else ''}"
               + (f" ({more} not shown: use --csv or --json for all)" if more else ""))
