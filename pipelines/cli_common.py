"""What every command shares: the --warehouse option, and the rule that a mistake the user
can fix, or a trouble of the machine (disk full, read-only folder, a damaged file), is one line
and exit status 1, never a traceback."""
from __future__ import annotations

import sys
from contextlib import contextmanager

import click
import duckdb

from pipelines.modelarts.errors import ModelArtsError
from warehouse.datafiles import is_damage_error
from warehouse.files import InputError
from warehouse.reader import warehouse_dir
from warehouse.store import WarehouseError
from warehouse.writerlock import write_refused

USER_ERRORS = (ModelArtsError, WarehouseError, InputError)
# what DuckDB says when the disk refuses a write, with the errno it stands for
DISK_ERRORS = {"No space left on device": 28, "database or disk is full": 28, "Read-only file system": 30, "File too large": 27,
               "Disk quota exceeded": 122, "Permission denied": 13}

WAREHOUSE_OPTION = click.option(
    "--warehouse", "warehouse", envvar="MODELARTS_WAREHOUSE", default=None, show_default="./warehouse_data",
    help="Warehouse folder (or $MODELARTS_WAREHOUSE).",
)


@contextmanager
def user_errors():
    """Errors whose message says what to fix become a ClickException; never a traceback."""
    try:
        yield
    except USER_ERRORS as exc:
        raise click.ClickException(str(exc)) from None
    except (KeyboardInterrupt, duckdb.InterruptException):  # DuckDB turns Ctrl-C inside a query into the latter
        click.echo("interrupted; the warehouse keeps every batch it completed", err=True)
        sys.exit(130)
    except (OSError, duckdb.Error, RuntimeError) as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # DuckDB's "Query interrupted", raised from a Ctrl-C
            click.echo("interrupted; the warehouse keeps every batch it completed", err=True)
            sys.exit(130)
        line = machine_error(exc)
        if line is None:
            raise
        raise click.ClickException(line) from None


def machine_error(exc: BaseException) -> str | None:
    """One line for a disk or file trouble met while working on the warehouse (None: not one)."""
    text = str(exc)
    if isinstance(exc, OSError) and exc.errno in DISK_ERRORS.values():
        return write_refused(_folder(exc.filename), exc)
    for words, errno in DISK_ERRORS.items():
        if words in text:
            return write_refused(_folder(None), OSError(errno, words, _quoted_path(text)))
    if isinstance(exc, duckdb.Error) and is_damage_error(exc):
        return (f"a data file of the warehouse is missing or damaged ({text.strip().splitlines()[0]}); the "
                "warehouse was not changed. Run `modelarts-etl check` to list the damaged files")
    return None


def _folder(path) -> str:
    ctx = click.get_current_context(silent=True)
    folder = ctx.params.get("warehouse") if ctx is not None else None
    return str(warehouse_dir(folder))


def _quoted_path(text: str) -> str | None:
    parts = text.split('"')
    return parts[1] if len(parts) >= 3 else None
