"""The writer's v2 part: a flattened v2 batch into the lake, inside the writer's derive transaction.

Kept apart from store.py so the v1 path stays as it was. Each body replaces what its scope
said before (see flatten_v2.py): the detail tables by job, the metric series by task, the
field issues by scope, the listings by job; events are stored once each by their natural key.
"""
from __future__ import annotations

import pyarrow as pa

from warehouse import schema_v2
from warehouse.flatten_v2 import V2Batch


def write(wh, batch: V2Batch) -> None:
    """Replace and insert the batch's v2 rows (the caller holds the transaction)."""
    con = wh.con
    if batch.detail_keys.num_rows:
        _delete(con, [t.name for t in schema_v2.DETAIL_TABLES], batch.detail_keys)
    if batch.metric_keys.num_rows:
        _delete(con, ["v2_metric_series"], batch.metric_keys)
    if batch.issue_scopes.num_rows:
        _delete(con, ["v2_field_issues"], batch.issue_scopes)
    listings = batch.tables["v2_job_listings"]
    if listings.num_rows:
        _delete(con, ["v2_job_listings"], listings.select(list(schema_v2.V2_KEY)))
    events = batch.tables["v2_events"]
    if events.num_rows:
        _delete(con, ["v2_events"], events.select(list(schema_v2.V2_EVENTS.key)))
    for table in schema_v2.STORED:
        wh.insert(table.name, batch.tables[table.name])
    wh.insert("rejected_payloads", batch.rejected)


def _delete(con, tables: list[str], keys: pa.Table) -> None:
    # IS NOT DISTINCT FROM: an event key may hold NULLs (no level, no source) and must still match itself
    match = " AND ".join(f't."{c}" IS NOT DISTINCT FROM k."{c}"' for c in keys.column_names)
    con.register("v2_replaced_keys", keys)
    try:
        for name in tables:
            con.execute(f'DELETE FROM "{name}" t WHERE EXISTS (SELECT 1 FROM v2_replaced_keys k WHERE {match})')
    finally:
        con.unregister("v2_replaced_keys")


def delete_all(con) -> None:
    """Every v2 row (rebuild derives them again)."""
    for table in schema_v2.STORED:
        con.execute(f'DELETE FROM "{table.name}"')


def delete_of_readable_bodies(con, readable_raw: str) -> None:
    """A rebuild with damaged raw files: delete the jobs and metric series whose body is readable
    (derived again); those whose body is unreadable keep their rows. Listings, events and field
    issues are replaced by scope when their bodies are derived again."""
    readable = (f"(SELECT 1 FROM {readable_raw} r WHERE r.project_id = t.project_id "
                "AND r.payload_sha256 = t.payload_sha256)")
    con.execute(f"CREATE OR REPLACE TEMP TABLE v2_rederived AS SELECT project_id, training_job_id "
                f"FROM v2_jobs t WHERE EXISTS {readable}")
    for table in schema_v2.DETAIL_TABLES:
        con.execute(f'DELETE FROM "{table.name}" WHERE (project_id, training_job_id) IN '
                    "(SELECT (project_id, training_job_id) FROM temp.v2_rederived)")
    con.execute(f"DELETE FROM v2_metric_series t WHERE EXISTS {readable}")
    con.execute("DROP TABLE temp.v2_rederived")


def job_states(wh, project_id: str) -> dict[str, tuple[bool, int | None]]:
    """training_job_id -> (is_final, create_time in epoch ms) for every v2 job stored for the project."""
    rows = wh.con.execute(
        "SELECT training_job_id, is_final, epoch_ms(create_time) FROM v2_jobs WHERE project_id = ?",
        [project_id]).fetchall()
    return {job: (bool(final), created) for job, final, created in rows}


def listed_jobs(wh, project_id: str) -> dict[str, int | None]:
    """training_job_id -> create_time (epoch ms) of every v2 job the search has listed."""
    rows = wh.con.execute("SELECT training_job_id, epoch_ms(create_time) FROM v2_job_listings WHERE project_id = ?",
                          [project_id]).fetchall()
    return dict(rows)
