"""Plain copies of one snapshot, for tools that do not read DuckLake.

A DuckLake's data folder is not the table (delete files, files of old snapshots), so
readers that only know Parquet get an export instead.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ExportReport:
    snapshot_id: int
    path: Path
    tables: dict[str, int]  # table -> rows written


def export_parquet(warehouse: str | os.PathLike, dest: str | os.PathLike, *,
                   snapshot: int | None = None) -> ExportReport:
    """Every table of the contract, as of one snapshot, to `dest/<table>/` (pandas.read_parquet(dest/<table>)
    works). A reader of `dest` sees the previous export or this one, never a mix."""
    raise NotImplementedError


def export_duckdb(warehouse: str | os.PathLike, dest: str | os.PathLike, *,
                  snapshot: int | None = None) -> ExportReport:
    """One snapshot as a standalone DuckDB file, written beside `dest` and renamed over it."""
    raise NotImplementedError
