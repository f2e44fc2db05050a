"""Keep a lake small: merge small files, expire old snapshots, delete files nothing needs."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from warehouse.store import Warehouse

DEFAULT_RETENTION = timedelta(days=7)


@dataclass
class MaintenanceReport:
    files_before: int
    files_after: int
    snapshots_expired: int
    files_deleted: int
    catalog_bytes: int | None  # size of the embedded catalog file, None for a shared catalog


def maintain(wh: "Warehouse", *, retention: timedelta = DEFAULT_RETENTION) -> MaintenanceReport:
    """Merge small files, expire snapshots older than `retention`, remove dead and orphaned files."""
    raise NotImplementedError
