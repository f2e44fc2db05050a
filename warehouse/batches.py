"""Records cut into batches, and batches into the Arrow shapes the writer commits.

A batch is bounded twice (records and bytes): the bytes bound keeps a batch of large
payloads, with their metric samples, within a few tens of MB of memory.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from warehouse import schema
from pipelines.modelarts.records import RawRecord

def with_payload_ids(raw: pa.Table, raw_keys: pa.Table) -> pa.Table:
    """Raw rows keep the ids of their request; where it had none (a file), the payload's own."""
    for name in ("job_id", "version_id"):
        raw = raw.set_column(raw.schema.get_field_index(name), name,
                             pc.coalesce(raw.column(name), raw_keys.column(name)))
    return raw

def rejected_with_load_ids(rejected: pa.Table, raw: pa.Table) -> pa.Table:
    """Each rejection carries the load that landed its body (a rebuild keeps it)."""
    if rejected.num_rows == 0:
        return rejected
    by_key = {(p, s, h): load for p, s, h, load in zip(*(raw.column(c).to_pylist() for c in
                                                           ("project_id", "source", "payload_sha256", "load_id")))}
    loads = [by_key.get(k) for k in zip(*(rejected.column(c).to_pylist()
                                          for c in ("project_id", "source", "payload_sha256")))]
    return rejected.set_column(rejected.schema.get_field_index("load_id"), "load_id", pa.array(loads, pa.string()))

def records_from_raw(table: pa.Table) -> list[RawRecord]:
    return [
        RawRecord(
            body=row["payload"], project_id=row["project_id"], source=row["source"], kind=row["kind"],
            http_status=row["http_status"], job_id=row["job_id"], version_id=row["version_id"],
            fetched_at=row["fetched_at"], training_job_id=row.get("training_job_id"),
        )
        for row in table.to_pylist()
    ]

def raw_table(chunk: list[RawRecord], shas: list[str], load_id: str) -> pa.Table:
    cols = {name: [] for name in schema.RAW_PAYLOADS.column_names if name != "payload"}
    for r, sha in zip(chunk, shas):
        cols["project_id"].append(r.project_id)
        cols["job_id"].append(r.job_id)
        cols["version_id"].append(r.version_id)
        cols["kind"].append(r.kind)
        cols["source"].append(r.source)
        cols["fetched_at"].append(r.fetched_at)
        cols["http_status"].append(r.http_status)
        cols["payload_sha256"].append(sha)
        cols["byte_size"].append(len(r.body))
        cols["load_id"].append(load_id)
        cols["training_job_id"].append(r.training_job_id)
    cols["payload"] = binary_array([r.body for r in chunk], cols["byte_size"])
    return pa.Table.from_pydict(cols, schema=schema.RAW_PAYLOADS.schema)

def binary_array(bodies: list[bytes], sizes: list[int]) -> pa.Array:
    """Bytes -> a binary array with one copy (one join), not one growing append per body."""
    total = sum(sizes)
    if total >= 2**31 - 1:
        return pa.array(bodies, pa.binary())
    offsets = np.zeros(len(bodies) + 1, dtype=np.int32)
    np.cumsum(sizes, out=offsets[1:])
    return pa.Array.from_buffers(pa.binary(), len(bodies), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(bodies))])

def cuts(sizes: np.ndarray, max_records: int, max_bytes: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive runs of at most max_records items, each under max_bytes
    unless one item alone is larger: the batches _chunks makes, from sizes alone."""
    start = 0
    while start < len(sizes):
        ends = np.cumsum(sizes[start:start + max_records])
        stop = start + max(1, int(np.searchsorted(ends, max_bytes, side="left")))
        yield start, min(stop, len(sizes))
        start = stop

def chunks(records: Iterable[RawRecord], max_records: int, max_bytes: int) -> Iterator[list[RawRecord]]:
    chunk, size = [], 0
    for record in records:
        chunk.append(record)
        size += len(record.body)
        if len(chunk) >= max_records or size >= max_bytes:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk
