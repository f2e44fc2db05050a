"""What every command shares: the --warehouse option, and the rule that a mistake the user
can fix is one line and exit status 1."""
from __future__ import annotations

import sys
from contextlib import contextmanager

import click

from pipelines.modelarts.errors import ModelArtsError
from warehouse.files import InputError
from warehouse.store import WarehouseError

USER_ERRORS = (ModelArtsError, WarehouseError, InputError)

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
    except KeyboardInterrupt:
        click.echo("interrupted; the warehouse keeps every batch it completed", err=True)
        sys.exit(130)
