"""Rebuild: every derived row again from raw_payloads, in one transaction.

Readers see the old tables until it commits, and a rebuild that fails or is killed leaves them
as they were. When some raw data files are damaged, the rows whose body is in them are kept
(nothing else could restore them) and every readable body is derived again.
"""
from __future__ import annotations

from pipelines.modelarts import failpoints
from warehouse import datafiles, progress, schema, store_v2
from warehouse.store import READABLE_RAW, LoadReport, Warehouse, WarehouseError, new_load_id, transaction


def rebuild(wh: Warehouse, *, batch_records: int, batch_bytes: int) -> LoadReport:
    if wh.scope:
        raise WarehouseError("rebuild works on the whole warehouse: open the writer without projects=")
    report = LoadReport(load_id=new_load_id())
    wh._versions = {}
    damage = datafiles.damaged(wh.con, [schema.RAW_PAYLOADS.name])
    if damage:
        wh.use_readable_raw(damage)
    report.damage = damage
    progress.load_thresholds(wh.con)  # joined by the reads, unused: a rebuild reads every body
    with transaction(wh.con, "rebuild"):
        if damage:
            report.versions_kept = _clear_derived_of_readable_bodies(wh.con)
            store_v2.delete_of_readable_bodies(wh.con, READABLE_RAW)
        else:
            for table in schema.STORED_TIDY_TABLES + (schema.REJECTED_PAYLOADS,):
                wh.con.execute(f'DELETE FROM "{table.name}"')
            store_v2.delete_all(wh.con)
        for batch in wh._stored_batches(("TRUE", []), batch_records, batch_bytes):
            wh._write_derived(batch, report)
            failpoints.hit("rebuild_batch_written")
        wh.label_snapshot("rebuild", report, raw_through=wh._max_raw_rowid())
    report.load_id = "rebuild"
    return report


def _clear_derived_of_readable_bodies(con) -> int:
    """Delete the v1 rows that readable bodies will derive again; the versions whose body is in a
    damaged file keep their rows. Returns how many were kept."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE kept_versions AS SELECT project_id, job_id, version_id "
                f"FROM job_versions v WHERE NOT EXISTS (SELECT 1 FROM {READABLE_RAW} r "
                "WHERE r.project_id = v.project_id AND r.payload_sha256 = v.payload_sha256)")
    for table in schema.STORED_TIDY_TABLES:
        con.execute(f'DELETE FROM "{table.name}" WHERE (project_id, job_id, version_id) NOT IN '
                    "(SELECT (project_id, job_id, version_id) FROM temp.kept_versions)")
    con.execute(f"DELETE FROM {schema.REJECTED_PAYLOADS.name} WHERE (project_id, source, payload_sha256) IN "
                f"(SELECT (project_id, source, payload_sha256) FROM {READABLE_RAW})")
    kept = con.execute("SELECT count(*) FROM temp.kept_versions").fetchone()[0]
    con.execute("DROP TABLE temp.kept_versions")
    return kept
