"""Keep a lake small: merge small files, expire old snapshots, delete files nothing needs.

Every load commits a few small Parquet files and a snapshot, and every re-loaded running
version leaves a delete file behind; without maintenance both grow with the number of loads.
`maintain` runs DuckLake's own maintenance functions (DuckDB 1.5.5) in an order that lets each
step free what the previous one made obsolete:

1. `ducklake_rewrite_data_files(delete_threshold => ...)`: files with deleted rows are rewritten
   without them. `ducklake_merge_adjacent_files` skips files that have deletes, so this comes first.
2. `ducklake_merge_adjacent_files`: the small files of many loads become one per table. Merged
   files keep every snapshot's view of the rows (time travel is unchanged) and keep row ids, so
   `raw_through` (a raw_payloads rowid) still means the same rows.
3. `ducklake_expire_snapshots(versions => [...])`: snapshots older than the retention, but never
   the newest one and never the newest snapshot with `loads.raw_through` set (the writer resumes
   from it). The two commits above record the current `raw_through` in their own commit message
   (step `maintenance`): the data did not change, so what was derived still is, and the snapshots
   from before the rewrite can expire with their files.
4. `ducklake_cleanup_old_files(cleanup_all => true)`: files only expired snapshots needed.
5. `ducklake_delete_orphaned_files(older_than => now - retention)`: files no snapshot ever
   committed (a writer killed mid-batch). Only run while holding the writer lock (a `Warehouse`),
   so no writer is between writing a file and committing it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from warehouse import lake, progress
from warehouse.store import LoadReport, WarehouseError, transaction, new_load_id

if TYPE_CHECKING:
    from warehouse.store import Warehouse

DEFAULT_RETENTION = timedelta(days=7)
# Rewrite every file with any deleted row. Deletes only hit files holding versions that were still
# running when loaded, which are the recent, small files; an old file of final versions is never
# rewritten again. A higher threshold leaves such files (and their delete files) unmergeable forever.
DEFAULT_DELETE_THRESHOLD = 0.0
METADATA = f"__ducklake_metadata_{lake.ALIAS}"
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass
class MaintenanceReport:
    files_before: int
    files_after: int
    snapshots_expired: int
    files_deleted: int
    catalog_bytes: int | None  # size of the embedded catalog file, None for a shared catalog
    live_files: int = 0  # files the newest snapshot reads (the rest serve snapshots kept for time travel)
    snapshots_kept: int = 0
    files_merged: int = 0  # input files of the rewrite and merge steps

    def summary(self) -> str:
        catalog = "" if self.catalog_bytes is None else f", catalog {self.catalog_bytes / 1024:.0f} KiB"
        return (f"data files {self.files_before} -> {self.files_after} ({self.live_files} live, "
                f"{self.files_merged} merged, {self.files_deleted} deleted); snapshots expired "
                f"{self.snapshots_expired}, kept {self.snapshots_kept}{catalog}")


def parse_retention(text: str) -> timedelta:
    """'7d', '12h', '30m', '90s', '2w' or '0' (keep nothing but what the writer needs)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text).lower())
    if not match or (not match.group(2) and float(match.group(1)) != 0):
        raise WarehouseError(f"retention {text!r} is not a duration: use a number and a unit, "
                             "e.g. 7d, 12h, 30m, 90s, 2w (or 0 to keep only the latest snapshots)")
    return timedelta(**{_UNITS[match.group(2) or "s"]: float(match.group(1))})


def maintain(wh: "Warehouse", *, retention: timedelta = DEFAULT_RETENTION,
             delete_threshold: float = DEFAULT_DELETE_THRESHOLD) -> MaintenanceReport:
    """Merge small files, expire snapshots older than `retention`, remove dead and orphaned files."""
    if retention < timedelta(0):
        raise WarehouseError(f"retention {retention} is negative: use 0 or more")
    con = wh.con
    before = tracked_files(con)
    load_id = new_load_id()
    merged = _compact(wh, load_id, "ducklake_rewrite_data_files", f"delete_threshold => {float(delete_threshold)}")
    merged += _compact(wh, load_id, "ducklake_merge_adjacent_files")
    cutoff = datetime.now(timezone.utc) - retention
    expired = _expire(con, cutoff)
    deleted = len(con.execute(f"CALL ducklake_cleanup_old_files('{lake.ALIAS}', cleanup_all => true)").fetchall())
    deleted += len(con.execute(f"CALL ducklake_delete_orphaned_files('{lake.ALIAS}', older_than => ?)",
                               [cutoff]).fetchall())
    return MaintenanceReport(
        files_before=before, files_after=tracked_files(con), snapshots_expired=expired,
        files_deleted=deleted, catalog_bytes=catalog_bytes(wh.config), live_files=live_files(con),
        snapshots_kept=con.execute(f"SELECT count(*) FROM ducklake_snapshots('{lake.ALIAS}')").fetchone()[0],
        files_merged=merged)


def _compact(wh: "Warehouse", load_id: str, function: str, options: str = "") -> int:
    """One rewrite or merge as its own labelled snapshot that carries `raw_through` forward.
    Returns the number of input files; commits nothing when there was nothing to do."""
    args = f"'{lake.ALIAS}'" + (f", {options}" if options else "")
    raw_through = wh.raw_through()
    with transaction(wh.con, "maintenance"):
        done = wh.con.execute(f"CALL {function}({args})").fetchall()
        if done:
            wh.label_snapshot("maintenance", LoadReport(), load_id=load_id,
                               raw_through=raw_through if raw_through >= 0 else None)
    return sum(row[2] for row in done)


def _expire(con, cutoff: datetime) -> int:
    """Expire the snapshots older than `cutoff`, except the ones the writer and readers rely on."""
    keep = {con.execute(f"SELECT id FROM {lake.ALIAS}.current_snapshot()").fetchone()[0]}
    keep |= progress.mark_snapshots(con)
    old = [sid for (sid,) in con.execute(
        f"SELECT snapshot_id FROM ducklake_snapshots('{lake.ALIAS}') WHERE snapshot_time < ? ORDER BY 1",
        [cutoff]).fetchall() if sid not in keep]
    if not old:  # versions => [] is a syntax error in the catalog query
        return 0
    return len(con.execute(f"CALL ducklake_expire_snapshots('{lake.ALIAS}', versions => ?)", [old]).fetchall())


def tracked_files(con) -> int:
    """Parquet files the catalog knows: data and delete files of every kept snapshot, plus those
    waiting for cleanup. With no orphans, this is what is on disk."""
    return con.execute(
        f"SELECT (SELECT count(*) FROM {METADATA}.ducklake_data_file) "
        f"+ (SELECT count(*) FROM {METADATA}.ducklake_delete_file) "
        f"+ (SELECT count(*) FROM {METADATA}.ducklake_files_scheduled_for_deletion)").fetchone()[0]


def live_files(con) -> int:
    """Data and delete files the newest snapshot reads."""
    return con.execute(
        f"SELECT (SELECT count(*) FROM {METADATA}.ducklake_data_file WHERE end_snapshot IS NULL) "
        f"+ (SELECT count(*) FROM {METADATA}.ducklake_delete_file WHERE end_snapshot IS NULL)").fetchone()[0]


def catalog_bytes(config: lake.LakeConfig) -> int | None:
    """The embedded catalog's size on disk, its write-ahead log included."""
    if not config.embedded:
        return None
    files = [config.sqlite_file, config.sqlite_file.with_name(config.sqlite_file.name + "-wal")]
    return sum(f.stat().st_size for f in files if f.exists())
