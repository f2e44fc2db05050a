"""Named crash points, so tests can `kill -9` a writer at an exact moment.

Set MODELARTS_FAILPOINT=<name> (optionally <name>:<n> for the n-th time the point
is reached) and the process SIGKILLs itself there. Unset, `hit` is one dict lookup.
"""
from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def hit(name: str) -> None:
    wanted = os.environ.get("MODELARTS_FAILPOINT")
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
