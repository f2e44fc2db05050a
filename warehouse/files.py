"""Payload files -> RawRecords, streamed: a .json file is one payload, a .jsonl file one per line."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from warehouse.records import RawRecord, utc_now

SUFFIXES = (".json", ".jsonl")


class InputError(Exception):
    """A path the user gave that cannot be read."""


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders as their .json/.jsonl files (recursively, sorted)."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES))
        elif path.is_file():
            out.append(path)
        else:
            raise InputError(f"no such file or folder: {path}")
    return out


def iter_file_records(paths: Iterable[str | Path], project_id: str) -> Iterator[RawRecord]:
    for path in expand_paths(paths):
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
