"""Issue 13, item 5: readers never see a duplicate or an orphan while a re-ingest replaces versions,
on every read path: connect(), load() and the Parquet export folder."""
from __future__ import annotations

import os
import threading

import pyarrow.parquet as pq

from warehouse import connect, load
from warehouse.export import export_parquet
from warehouse_world import ingest, write_corpus

CHECK_SQL = """
SELECT (SELECT count(*) - count(DISTINCT (project_id, job_id, version_id)) FROM job_versions),
       (SELECT count(*) FROM parameters p WHERE NOT EXISTS (SELECT 1 FROM job_versions v WHERE
            (v.project_id, v.job_id, v.version_id) = (p.project_id, p.job_id, p.version_id)))
"""


def _problems_in(versions: list[tuple], parameters: list[tuple]) -> tuple[int, int]:
    keys = set(versions)
    return len(versions) - len(keys), sum(1 for key in parameters if key not in keys)


def _keys(table) -> list[tuple]:
    return list(zip(*(table[c] for c in ("project_id", "job_id", "version_id"))))


def test_no_reader_sees_a_duplicate_or_an_orphan_during_a_re_ingest(tmp_path):
    wh, dest = tmp_path / "wh", tmp_path / "export"
    assert ingest(write_corpus(tmp_path / "running.jsonl", status=8), wh, batch=30).returncode == 0
    export_parquet(wh, dest)
    seen = {"connect": [], "load": [], "export": []}
    done = threading.Event()

    def poll_connect():
        while not done.is_set():
            con = connect(wh)
            try:
                seen["connect"].append(con.execute(CHECK_SQL).fetchone())
            finally:
                con.close()

    def poll_load():
        while not done.is_set():
            versions = _keys(load("job_versions", wh).to_dict("list"))
            seen["load"].append(_problems_in(versions, _keys(load("parameters", wh).to_dict("list"))))

    def export_and_read():
        while not done.is_set():
            export_parquet(wh, dest)
            folder = os.path.realpath(dest)  # one export: resolve once, as the export docs say
            tables = {t: pq.read_table(os.path.join(folder, t)).to_pydict() for t in ("job_versions", "parameters")}
            seen["export"].append(_problems_in(_keys(tables["job_versions"]), _keys(tables["parameters"])))

    threads = [threading.Thread(target=f) for f in (poll_connect, poll_load, export_and_read)]
    for thread in threads:
        thread.start()
    try:
        re_ingest = ingest(write_corpus(tmp_path / "finished.jsonl", status=10), wh, batch=30)
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=60)
    assert re_ingest.returncode == 0, re_ingest.stderr
    assert "versions loaded 300" in re_ingest.stdout
    for path, results in seen.items():
        assert results, path
        assert all(r == (0, 0) for r in results), (path, [r for r in results if r != (0, 0)])
