"""Payload files -> RawRecords, streamed: a .json file is one payload, a .jsonl file one per line.

Symbolic links met inside a folder are never followed, wherever they point: a link to
/etc/passwd dropped into an ingest folder must not end up in raw_payloads. They are
skipped and named, so the user can pass a target explicitly if it is really wanted.
Every source is stored as an absolute, normalised path, so one file ingested from two
working directories is one raw key, not two.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.modelarts.records import RawRecord, utc_now

SUFFIXES = (".json", ".jsonl")


class InputError(Exception):
    """A path the user gave that cannot be read."""


@dataclass
class Inputs:
    files: list[Path] = field(default_factory=list)  # absolute, normalised
    skipped: list[str] = field(default_factory=list)  # "<path>: why", for each link not followed


def expand_paths(paths: Iterable[str | Path]) -> Inputs:
    """Files as given, folders as their .json/.jsonl files (recursively, sorted), links inside folders skipped."""
    found = Inputs()
    for raw in paths:
        path = Path(os.path.abspath(raw))
        if path.is_dir():
            _walk(path, found)
        elif path.is_file():
            found.files.append(path)
        else:
            raise InputError(f"no such file or folder: {path}")
    return found


def _walk(folder: Path, found: Inputs) -> None:
    files = []
    for top, dirs, names in os.walk(folder):  # never descends into a linked folder
        for name in sorted(dirs + names):
            path = Path(top, name)
            if path.is_symlink():
                if name in dirs or path.suffix in SUFFIXES:
                    found.skipped.append(f"{path}: a symbolic link (to {os.readlink(path)}); links inside a "
                                         "folder are not followed, pass the target itself to ingest it")
            elif name in names and path.suffix in SUFFIXES and path.is_file():
                files.append(path)
    found.files.extend(sorted(files))


def iter_file_records(paths: Iterable[str | Path], project_id: str) -> Iterator[RawRecord]:
    """The records of `paths` (see expand_paths; call it first to learn what was skipped)."""
    for path in expand_paths(paths).files:
        fetched_at = utc_now()
        try:
            if path.suffix == ".jsonl":
                yield from _jsonl_records(path, project_id, fetched_at)
            else:
                yield RawRecord(body=path.read_bytes(), project_id=project_id, source=str(path), fetched_at=fetched_at)
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from None


def _jsonl_records(path: Path, project_id: str, fetched_at) -> Iterator[RawRecord]:
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            body = line.rstrip(b"\r\n")
            if body.strip():
                yield RawRecord(body=body, project_id=project_id, source=f"{path}:{lineno}", fetched_at=fetched_at)
