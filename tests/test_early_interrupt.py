"""Issue 13, item 9: Ctrl-C in the first second of a brand-new warehouse leaves a folder that
connect() opens, or none at all (never one it cannot open). The delays count from the moment
the writer makes the folder (Python's own start-up is not what is tested)."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from warehouse import connect
from warehouse.store import WarehouseError
from warehouse_world import write_corpus


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15, 0.3, 0.6, 1.0])
def test_sigint_early_in_a_new_warehouse_leaves_one_that_opens_or_none(tmp_path, delay):
    corpus = write_corpus(tmp_path / "c.jsonl", n=200)
    wh = tmp_path / "wh"
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "ingest", str(corpus), "--project-id", "p1",
                             "--warehouse", str(wh), "--batch-size", "20"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    while not wh.exists() and proc.poll() is None and time.monotonic() - started < 60:
        time.sleep(0.005)  # the moment the writer starts making the warehouse
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    if not wh.exists():
        return
    try:
        con = connect(wh)
    except WarehouseError as exc:  # refused with one line: recognisably not a warehouse
        assert "no warehouse at" in str(exc), exc
        assert not any(wh.rglob("*.parquet")), list(wh.rglob("*"))
        return
    try:
        versions, bodies = con.execute("SELECT (SELECT count(*) FROM job_versions), "
                                       "(SELECT count(*) FROM raw_payloads)").fetchone()
        assert versions <= bodies
    finally:
        con.close()
