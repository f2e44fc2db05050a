"""How errors a user can fix look in Dagster: their one line, not a traceback."""
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from pipelines.modelarts.errors import ModelArtsError
from warehouse.store import WarehouseError


@contextmanager
def user_errors() -> Iterator[None]:
    """Credentials, endpoint, unknown project, busy or missing warehouse: the library's messages
    already say what to fix (and never carry a secret), so they become the step's failure text."""
    try:
        yield
    except (ModelArtsError, WarehouseError) as exc:
        raise dg.Failure(description=str(exc)) from None
