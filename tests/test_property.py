"""Property: child row counts follow the payload's list lengths, and re-ingesting changes nothing."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import land
from warehouse import connect
from test_storage import snapshot

text = st.text(max_size=12)
number_text = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda x: f"{x:.3f}")
parameter = st.fixed_dictionaries({"label": text, "value": st.one_of(text, st.integers(-10**6, 10**6),
                                                                     st.floats(allow_nan=False, allow_infinity=False))})
data_source = st.fixed_dictionaries({}, optional={"type": text, "dataset_id": text, "data_url": text})
volume = st.one_of(
    st.fixed_dictionaries({"nfs": st.fixed_dictionaries({"id": text, "src_path": text, "dest_path": text},
                                                         optional={"read_only": st.booleans()})}),
    st.fixed_dictionaries({"host_path": st.fixed_dictionaries({"src_path": text, "dest_path": text})}),
)
metric_class = st.fixed_dictionaries({
    "metric_values": st.fixed_dictionaries({"recall": st.floats(0, 1), "precision": st.floats(0, 1),
                                            "accuracy": st.floats(0, 1)}),
    "metric_meta": st.fixed_dictionaries({"class_id": st.integers(0, 999), "class_name": st.one_of(text, st.integers())}),
})
samples = st.dictionaries(st.sampled_from(["cpuUsage", "memUsage", "gpuUtil", "gpuMemUsage", "diskReadRate"]),
                          st.lists(st.one_of(number_text, st.integers(0, 100)), max_size=30), max_size=4)


@st.composite
def payloads(draw, job_id, version_id):
    metric_list = {"metric": draw(st.lists(metric_class, max_size=4)), "total_metric": {}}
    system = draw(samples)
    return {
        "is_success": True, "job_id": job_id, "version_id": version_id,
        "job_name": draw(text), "status": draw(st.integers(0, 22)), "create_time": draw(st.integers(0, 2 * 10**12)),
        "core": draw(st.one_of(st.integers(1, 64), text)), "gpu_num": draw(st.one_of(st.none(), st.integers(0, 8))),
        "parameter": draw(st.lists(parameter, max_size=8)),
        "data_source": draw(st.lists(data_source, max_size=3)),
        "volumes": draw(st.lists(volume, max_size=3)),
        "model_metric_list": json.dumps(metric_list),
        "system_metric_list": draw(st.one_of(st.just(system), st.just(json.dumps(system)))),
    }


@st.composite
def corpora(draw):
    n = draw(st.integers(1, 6))
    return [draw(payloads(job_id=i // 2, version_id=i)) for i in range(n)]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpus=corpora())
def test_child_rows_follow_list_lengths_and_reingest_is_a_no_op(corpus):
    root = Path(tempfile.mkdtemp()) / "wh"
    try:
        bodies = [(json.dumps(p).encode(), f"p{i}") for i, p in enumerate(corpus)]
        report = land(root, bodies)
        assert report.versions_loaded == len(corpus) and report.rejected == 0
        expected = {
            "parameters": sum(len(p["parameter"]) for p in corpus),
            "data_sources": sum(len(p["data_source"]) for p in corpus),
            "volumes": sum(len(p["volumes"]) for p in corpus),
            "class_metrics": sum(len(json.loads(p["model_metric_list"])["metric"]) for p in corpus),
            "system_metric_samples": sum(
                sum(len(v) for v in (s if isinstance(s, dict) else json.loads(s)).values())
                for s in (p["system_metric_list"] for p in corpus)),
            "job_versions": len(corpus),
            "jobs": len({p["job_id"] for p in corpus}),
        }
        with connect(root) as con:  # one connection: each costs ~0.3 s (loading DuckLake)
            for table, count in expected.items():
                assert con.execute(f"SELECT count(*) FROM {table}").fetchall() == [(count,)], table
        before = snapshot(root)
        land(root, bodies)
        assert snapshot(root) == before
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)
