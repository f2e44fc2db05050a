"""Issue 13, item 12: a writer waiting for the lock says once that it waits, and for whom."""
from __future__ import annotations

import subprocess
import sys

from warehouse_world import write_corpus

HOLD = """
import sys, time
from pathlib import Path
from warehouse.store import Warehouse
with Warehouse.open(sys.argv[1]):
    print("holding", flush=True)
    deadline = time.monotonic() + float(sys.argv[2])
    while not Path(sys.argv[1], "release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
"""


def test_a_waiting_writer_names_the_pid_and_command_holding_the_lock(tmp_path):
    corpus = write_corpus(tmp_path / "c.jsonl", n=8)
    wh = tmp_path / "wh"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(wh), "120", "sync"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        waiter = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "ingest", str(corpus), "--project-id", "p1",
                                   "--warehouse", str(wh)], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        lines = []
        for line in waiter.stderr:  # as it prints: the holder lets go once the waiter said it waits
            lines.append(line)
            if line.startswith("waiting for the writer"):
                break
        (wh / "release").touch()
        out, rest = waiter.communicate(timeout=120)
        done = subprocess.CompletedProcess(waiter.args, waiter.returncode, out, "".join(lines) + rest)
    finally:
        (wh / "release").touch()
        holder.wait(timeout=30)
    assert done.returncode == 0, done.stderr
    waiting = [line for line in done.stderr.splitlines() if line.startswith("waiting for the writer")]
    assert len(waiting) == 1, done.stderr
    assert f"with pid {holder.pid} (-c {wh}, started " in waiting[0]
    assert not (wh / ".writer.lock.holder").exists()  # the note goes with the lock

