"""`make demo`'s command, run as a user runs it: a fresh folder, a subprocess, stdout read back."""
import os
import re
import subprocess
import sys

import dagster as dg

from warehouse import connect, schema


def test_demo_runs_the_dagster_job_against_the_simulator_and_prints_a_summary(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELARTS_", "HUAWEICLOUD_", "DAGSTER_"))}
    done = subprocess.run([sys.executable, "-m", "pipelines.demo"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]

    assert re.search(r"simulator: http://127\.0\.0\.1:\d+ \(loopback\)", out)
    first, second = re.findall(r"listed (\d+), fetched (\d+), skipped as final (\d+), rejected (\d+)", out)
    assert first[0] == first[1] and first[2] == "0" and int(first[3]) > 0  # first sync fetches everything
    assert int(second[2]) > 0 and int(second[1]) < int(second[0])  # the second skips final versions
    assert "0 failed" in out and "asset checks:" in out

    # every table with the count that is really stored
    con = connect(tmp_path / "warehouse_data")
    for table in schema.ALL_TABLES:
        stored = con.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()[0]
        assert re.search(rf"^  {table.name} +{stored:,}$", out, re.M), table.name
    rejected = con.execute("SELECT count(*) FROM rejected_payloads").fetchone()[0]
    con.close()
    assert f"Rejected payloads: {rejected} " in out
    assert "Example query" in out and "avg_gpu_util_pct" in out
    assert re.search(r"^version_summary, the run with the most GPU-hours: .+ GPU-hours", out, re.M)
    report = (tmp_path / "report.html").read_text()
    assert f"Report: {tmp_path / 'report.html'}" in out and report.count("data:image/png;base64,") == 4

    # run history in the project-local DAGSTER_HOME, where `dagster dev` will find it
    home = tmp_path / ".dagster_home"
    assert (home / "dagster.yaml").exists()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 3 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        assert sorted(r.job_name for r in runs) == ["__ASSET_JOB", "sync_all_projects", "sync_all_projects"]
        summary = instance.get_latest_materialization_event(dg.AssetKey(["modelarts", "version_summary"]))
        assert "data:image/png;base64," in summary.asset_materialization.metadata["utilisation_chart"].value
