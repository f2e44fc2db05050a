"""Writers that commit at the same time on a shared catalog, and what happens when they collide.

DuckLake settles most races itself: a commit that lost the race but changes nothing the
winner changed (inserts beside inserts) is retried on the new snapshot without rewriting a
file. What it cannot settle is a real conflict: two transactions deleting rows of one data
file (after maintenance merged several projects' rows into one file). Then the whole
transaction runs again here, on the newer snapshot, a few times, before it becomes one error.
"""
from __future__ import annotations

import random
import time

import duckdb

from warehouse import schema


class ConflictError(Exception):
    """A concurrent writer kept changing the same data; nothing was half-written."""


CONFLICT_RETRIES = ("SET ducklake_max_retry_count = 30; SET ducklake_retry_wait_ms = 50; "
                    "SET ducklake_retry_backoff = 1.3")
"""DuckLake retries a commit that lost a race but does not conflict (inserts beside inserts) by
itself; on a shared catalog with several writers the default 10 attempts can run out."""
OWN_RETRIES = 5


def with_conflict_retries(attempt, what: str):
    """Run `attempt` (one whole transaction); when DuckLake reports a real conflict with a concurrent
    writer (two deletes in one merged data file), run it again on the new snapshot, a few times."""
    for n in range(OWN_RETRIES):
        try:
            return attempt()
        except duckdb.TransactionException as exc:
            if "conflict" not in str(exc).lower():
                raise
            if n == OWN_RETRIES - 1:
                raise ConflictError(f"{what}: a concurrent writer kept changing the same data "
                                     f"({_conflict_table(str(exc))}) after {OWN_RETRIES} attempts; nothing "
                                     "was half-written: run the same command again") from None
            time.sleep(0.2 * (n + 1) + random.random() * 0.3)


def _conflict_table(message: str) -> str:
    for table in schema.STORED_TABLES:
        if f'"{table.name}"' in message or f" {table.name}" in message:
            return f"table {table.name}"
    return message.splitlines()[0][:200]
