"""One writer at a time per warehouse folder, and who it is.

The lock is `<warehouse>/.writer.lock` (filelock: an OS lock, released when its process dies,
even by kill -9). Its holder writes its pid, command and start time to the sidecar
`.writer.lock.holder`, so a writer that has to wait says once for whom, instead of sitting
silent for up to the lock timeout. The sidecar is only ever read for that message: a stale
one (its writer killed) is simply overwritten by the next holder.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import sys
import time
from datetime import datetime
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_FILE = ".writer.lock"
log = logging.getLogger("warehouse")


class LockError(Exception):
    """The lock cannot be taken; the message says why and what to do."""


class LockBusy(LockError):
    pass


class WriterLock:
    def __init__(self, root: Path, name: str = LOCK_FILE):
        self.root = root
        self._holder_file = name + ".holder"
        self._lock = FileLock(str(root / name))

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
                    (self.root / self._holder_file).unlink(missing_ok=True)
                except OSError:
                    pass
            self._lock.release()

    def holder(self) -> str:
        """'with pid N (cli.py sync, started 12:01:05)', or '' when the holder left no note."""
        try:
            info = json.loads((self.root / self._holder_file).read_text())
            started = datetime.fromisoformat(info["started"]).strftime("%H:%M:%S")
            return f"with pid {int(info['pid'])} ({info['command']}, started {started})"
        except (OSError, ValueError, KeyError, TypeError):
            return ""

    def _write_holder(self) -> None:
        command = " ".join([Path(sys.argv[0]).name] + sys.argv[1:2]) if sys.argv and sys.argv[0] else "python"
        info = {"pid": os.getpid(), "command": command, "started": datetime.now().astimezone().isoformat()}
        try:
            (self.root / self._holder_file).write_text(json.dumps(info) + "\n")
        except OSError:
            pass  # the note is for messages only


class ProjectLocks:
    """The locks of a writer that owns some projects of a lake with a shared catalog (PostgreSQL).

    Writers of different projects commit concurrently (DuckLake settles their commits); each
    project has one writer at a time, because the writer's bookkeeping (stored versions and raw
    keys, what is derived) is per project. They hold the warehouse lock shared, so a writer of the
    whole warehouse (rebuild, maintain, an ingest of many projects) waits for them, and they for it.
    """

    def __init__(self, root: Path, projects: list[str]):
        self.root = root
        self._shared = SharedLock(root / LOCK_FILE, WriterLock(root))
        self._projects = [WriterLock(root, f".writer-{p}.lock") for p in sorted(set(projects))]

    @property
    def is_locked(self) -> bool:
        return self._shared.is_locked

    def acquire(self, timeout: float) -> None:
        self._shared.acquire(timeout)
        try:
            for lock in self._projects:  # always in the same order: two writers never deadlock
                lock.acquire(timeout)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        for lock in reversed(self._projects):
            lock.release()
        self._shared.release()


class SharedLock:
    """A shared flock on the warehouse lock file: many holders at once, none while a writer holds it
    exclusively (filelock takes the same file with an exclusive flock)."""

    def __init__(self, path: Path, exclusive: WriterLock):
        self.path = path
        self._exclusive = exclusive  # only to name the holder in messages
        self._fd: int | None = None

    @property
    def is_locked(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LockError(write_refused(self.path.parent, exc)) from None
        deadline, told = time.monotonic() + timeout, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                self._fd = fd
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    holder = self._exclusive.holder()
                    raise LockBusy(f"another writer is using the whole warehouse {self.path.parent}"
                                   f"{' (' + holder + ')' if holder else ''} (waited {timeout:g} s); wait for it "
                                   "to finish or raise the lock timeout") from None
                if not told:
                    log.warning("waiting for the writer %s to finish (up to %g s)",
                                self._exclusive.holder() or "holding the lock", timeout)
                    told = True
                time.sleep(0.1)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


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
