"""A warehouse again from its raw data files alone, for when the catalog is lost or damaged.

DuckLake writes whole rows to Parquet, so every raw_payloads data file carries every column of
its bodies (keys, source, sha256, fetched time, load id, the bytes): the catalog only says which
files make up which snapshot. `recover` moves the catalog and the data folder aside (to
`pre-recover/`, nothing is deleted), makes a new lake, lands every raw row those files hold,
once per raw key (project, source, sha256) and in landing order, as one snapshot, and derives
every tidy table from them.

What the files alone cannot say: which snapshot a file belonged to. So a body from a file no
snapshot committed (a writer killed between writing and committing it) is landed too: it was
fetched, and landing it twice is impossible (one row per raw key). Raw rows are never deleted
(only maintenance rewrites files, and keeps every row), so no delete file can hide one.
Snapshot history (time travel) starts again at the recovery; the old one stays in `pre-recover/`.
A recover killed half-way is run again: it reads the raw files of every earlier `pre-recover*/`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from warehouse import datafiles, lake, schema
from warehouse.lake import LakeConfig, LakeError
from warehouse.migrate import _move_aside, land_raw_rows, landing_keys
from warehouse.store import Warehouse, WarehouseError

ASIDE = "pre-recover"
RAW_FILES = Path(lake.DATA_DIR) / "main" / schema.RAW_PAYLOADS.name


@dataclass
class RecoverReport:
    aside: Path | None
    files: int = 0  # raw data files read
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    landed: int = 0  # raw bodies, one per raw key
    versions: int = 0

    def summary(self) -> str:
        return (f"recovered {self.landed} raw bodies ({self.versions} versions) from {self.files} raw data files"
                + (f"; {len(self.unreadable)} unreadable file(s) skipped" if self.unreadable else "")
                + (f"; the old catalog and data are in {self.aside}" if self.aside else ""))


def recover(root: str | os.PathLike, *, lock_timeout: float = 600) -> RecoverReport:
    root = Path(root)
    try:
        config = LakeConfig.for_folder(root)
    except LakeError as exc:
        raise WarehouseError(str(exc)) from None
    if not (config.embedded and config.local_data and config.sqlite_file.parent == config.root):
        raise WarehouseError("recover rebuilds a warehouse folder with its own catalog.sqlite and data/: unset "
                             "MODELARTS_CATALOG and MODELARTS_DATA_PATH (a shared catalog has its own backups)")
    if not raw_files(root):
        raise WarehouseError(f"nothing to recover in {root.absolute()}: no raw data files under "
                             f"{root / RAW_FILES} or {root / ASIDE}*/")
    wh = Warehouse(root, source="recover", lock_timeout=lock_timeout)
    wh.acquire_lock()
    try:
        names = tuple(config.sqlite_file.name + s for s in ("", "-wal", "-shm")) + (lake.DATA_DIR,)
        report = RecoverReport(aside=_move_aside(root, names, ASIDE))
        paths = []
        for path in raw_files(root):
            problem = datafiles.read_whole(path)[1]
            if problem is None:
                paths.append(path)
            else:
                report.unreadable.append((path, problem))
        report.files = len(paths)
        files, keys = landing_keys(paths, report.unreadable)
        with wh:
            report.landed = land_raw_rows(wh, files, keys, step="recover")
            wh.derive_pending()
            report.versions = wh.con.execute("SELECT count(*) FROM job_versions").fetchone()[0]
    finally:
        wh.close()
    return report


def raw_files(root: Path) -> list[Path]:
    """The raw data files in the warehouse's data folder and in every earlier recovery's."""
    folders = [root / RAW_FILES] + sorted(p / RAW_FILES for p in root.glob(ASIDE + "*"))
    return [p for folder in folders if folder.is_dir() for p in sorted(folder.glob("*.parquet"))
            if not p.name.endswith("-delete.parquet")]


def has_raw_files(root: Path) -> bool:
    return any(root.glob(f"{RAW_FILES}/*.parquet"))
