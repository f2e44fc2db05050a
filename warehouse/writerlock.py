"""One writer at a time per warehouse folder, and who it is.

The lock is `<warehouse>/.writer.lock` (filelock: an OS lock, released when its process dies,
even by kill -9). Its holder writes its pid, command and start time to the sidecar
`.writer.lock.holder`, so a writer that has to wait says once for whom, instead of sitting
silent for up to the lock timeout. The sidecar is only ever read for that message: a stale
one (its writer killed) is simply overwritten by the next holder.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import sys
from datetime import datetime
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_FILE = ".writer.lock"
HOLDER_FILE = LOCK_FILE + ".holder"
log = logging.getLogger("warehouse")


class LockError(Exception):
    """The lock cannot be taken; the message says why and what to do."""


class LockBusy(LockError):
    pass


class WriterLock:
    def __init__(self, root: Path):
        self.root = root
        self._lock = FileLock(str(root / LOCK_FILE))

    @property
    def is_locked(self) -> bool:
        return self._lock.is_locked

    def acquire(self, timeout: float) -> None:
        try:
            try:
                self._lock.acquire(timeout=0)
            except Timeout:
                log.warning("waiting for the writer %s to finish (up to %g s)", self.holder() or "holding the lock",
                            timeout)
                self._lock.acquire(timeout=timeout)
        except Timeout:
            holder = self.holder()
            raise LockBusy(f"another writer is using the warehouse {self.root}{' (' + holder + ')' if holder else ''} "
                           f"(waited {timeout:g} s); wait for it to finish or raise the lock timeout") from None
        except OSError as exc:
            raise LockError(write_refused(self.root, exc)) from None
        self._write_holder()

    def release(self) -> None:
        if self._lock.is_locked:
            if self._lock.lock_counter == 1:
                try:
                    (self.root / HOLDER_FILE).unlink(missing_ok=True)
                except OSError:
                    pass
            self._lock.release()

    def holder(self) -> str:
        """'with pid N (cli.py sync, started 12:01:05)', or '' when the holder left no note."""
        try:
            info = json.loads((self.root / HOLDER_FILE).read_text())
            started = datetime.fromisoformat(info["started"]).strftime("%H:%M:%S")
            return f"with pid {int(info['pid'])} ({info['command']}, started {started})"
        except (OSError, ValueError, KeyError, TypeError):
            return ""

    def _write_holder(self) -> None:
        command = " ".join([Path(sys.argv[0]).name] + sys.argv[1:2]) if sys.argv and sys.argv[0] else "python"
        info = {"pid": os.getpid(), "command": command, "started": datetime.now().astimezone().isoformat()}
        try:
            (self.root / HOLDER_FILE).write_text(json.dumps(info) + "\n")
        except OSError:
            pass  # the note is for messages only


def write_refused(root: Path, exc: OSError) -> str:
    """One line for an OSError met while writing to the warehouse: what happened, what is safe, what to do."""
    what = {errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
            errno.EPERM: "permission denied", errno.ENOSPC: "the disk is full",
            errno.EDQUOT: "the disk quota is exceeded", errno.EFBIG: "a file grew past the size limit"}.get(
        exc.errno, exc.strerror or str(exc))
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        todo = "free space (or raise the limit), then run the same command again: it carries on from there"
    else:
        todo = ("writers (ingest, sync, rebuild, maintain) need to write there; readers (connect, load, "
                "snapshots, export, check) work on a read-only warehouse")
    return (f"cannot write to the warehouse {root}: {what} ({exc.filename or root}). Nothing was half-written: "
            f"readers still see the last committed snapshot. {todo[0].upper() + todo[1:]}")
