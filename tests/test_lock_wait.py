"""Issue 13, item 12: a writer waiting for the lock says once that it waits, and for whom."""
from __future__ import annotations

import subprocess
import sys

from warehouse_world import ingest, write_corpus

HOLD = """
import sys, time
from warehouse.store import Warehouse
with Warehouse.open(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_waiting_writer_names_the_pid_and_command_holding_the_lock(tmp_path):
    corpus = write_corpus(tmp_path / "c.jsonl", n=8)
    wh = tmp_path / "wh"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(wh), "8", "sync"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        done = ingest(corpus, wh)
    finally:
        holder.wait(timeout=30)
    assert done.returncode == 0, done.stderr
    waiting = [line for line in done.stderr.splitlines() if line.startswith("waiting for the writer")]
    assert len(waiting) == 1, done.stderr
    assert f"with pid {holder.pid} (-c {wh}, started " in waiting[0]
    assert not (wh / ".writer.lock.holder").exists()  # the note goes with the lock
