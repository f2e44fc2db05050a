"""Hostile server behaviour: what a broken or malicious endpoint (or something in the way) might send.

Unlike faults.py, none of this is the real API misbehaving in a documented way; it is
what a client must survive without hanging, crashing, or writing anywhere it should not:

    evil_ids         list pages name jobs and versions with ids like `../../etc`, quotes, SQL,
                     "²", 5,000 digits or 2**64, beside the real ones
    trickle_body     the headers arrive, then the body one byte every `interval` seconds, forever
    trickle_headers  the status line arrives, then one header line every `interval` seconds, forever
    non_utf8         bytes that are not UTF-8 inside otherwise well-formed answers
    huge             answers (match= details) padded to `size` bytes (still valid JSON: an unknown field)
    empty_page       list pages (match= which, e.g. r"[?&]page=2(&|$)") come back empty, their totals unchanged
    repeat_page      list pages ignore `page` and repeat page 1 (job lists and versions lists alike)
    overstated_total the job list's `job_total_count` says 10**12, whatever the jobs are

    SimulatorServer(world, hostile=Hostile("trickle_body", match=r"/versions/\\d+$"))
"""
from __future__ import annotations

import re
from dataclasses import dataclass

HOSTILE_MODES = ("evil_ids", "trickle_body", "trickle_headers", "non_utf8", "huge", "empty_page", "repeat_page",
                 "overstated_total")
OVERSTATED_TOTAL = 10**12

# ids a hostile list page names; none of them may ever become part of a request path
EVIL_IDS = (
    "../../../etc/passwd", "..", "12/../../34", "1' OR '1'='1", '7"; DROP TABLE job_versions; --', "1;2",
    "%2e%2e%2f", "12?x=1", "12#frag", " 12 / 13", "²", "١٢٣", "9" * 5000, 2**64 - 1, -1, 1.5, True, None,
    {"id": 1}, [1], "0x10", "1e3", "",
)


@dataclass(frozen=True)
class Hostile:
    mode: str
    match: str | None = None  # regex on the request target; None = every API request
    interval: float = 0.05  # trickle modes: seconds between bytes (or header lines)
    size: int = 50 * 2**20  # huge: bytes of each matching answer

    def __post_init__(self):
        if self.mode not in HOSTILE_MODES:
            raise ValueError(f"unknown hostile mode {self.mode!r}; known: {', '.join(HOSTILE_MODES)}")

    def applies(self, target: str) -> bool:
        return self.match is None or re.search(self.match, target) is not None


def evil_job_items() -> list[dict]:
    return [{"job_id": value, "job_name": f"evil-{n}", "version_id": value, "version_count": 1,
             "status": 10, "create_time": 0} for n, value in enumerate(EVIL_IDS)]


def evil_version_items(job_id) -> list[dict]:
    return [{"job_id": job_id, "version_id": value, "status": 10} for value in EVIL_IDS]


def non_utf8(body: bytes) -> bytes:
    """Invalid UTF-8 in the first string value after the first key (a lone 0xff, a cut 3-byte sequence)."""
    at = body.find(b'":"')
    if at < 0:
        return body[:1] + b"\xff\xfe\xe2\x82" + body[1:]
    return body[: at + 3] + b"caf\xe9 \xff\xe2\x82" + body[at + 3:]


def huge(body: bytes, size: int) -> bytes:
    """The body grown to `size` bytes with an unknown field, still one JSON object."""
    pad = max(0, size - len(body) - len(b',"padding":""'))
    if not body.startswith(b"{"):
        return body + b" " * pad
    return b'{"padding":"' + b"x" * pad + b'",' + body[1:]
