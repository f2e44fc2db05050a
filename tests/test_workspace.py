"""The code location as the Dagster tools load it, from the repository root, in real processes.

- `dagster definitions validate -w workspace.yaml`: what `dagster dev -w workspace.yaml` loads;
  `dg check defs`: what `dg dev` loads, from `[tool.dg]` in pyproject.toml.
- two `dagster asset materialize` processes on two partitions at once, sharing one
  instance (pool limit 1) and one warehouse: parallel partitions must both succeed.
"""
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import yaml

from pipelines.modelarts.simulator import SimulatorServer, World
from warehouse import connect

ROOT = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).parent / "dagster")
DG = str(Path(sys.executable).parent / "dg")
PROJECTS = ["proj-a", "proj-b"]
POOL_LIMIT_1 = "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n"
SYNC_SELECTION = "modelarts/raw_payloads*"  # what sync_all_projects runs: the extract and all downstream, not maintenance


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(POOL_LIMIT_1)
    dg.DagsterInstance.from_config(str(home)).dispose()  # create the storage once, not racing in two processes
    return home


def _env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELARTS_", "HUAWEICLOUD_"))}
    return {**env, **extra}


def test_workspace_yaml_points_at_the_definitions_module_and_validates(tmp_path):
    (location,) = yaml.safe_load((ROOT / "workspace.yaml").read_text())["load_from"]
    assert location["python_module"]["module_name"] == "pipelines.definitions"

    done = subprocess.run([DAGSTER, "definitions", "validate", "-w", "workspace.yaml"], cwd=ROOT,
                          env=_env(DAGSTER_HOME=str(_home(tmp_path))), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful for code location modelarts_etl" in done.stdout + done.stderr


def test_dg_loads_the_same_definitions_from_pyproject(tmp_path):
    """`dg dev` is Dagster's documented way now; [tool.dg] in pyproject.toml points it at the same module."""
    env = _env(DAGSTER_HOME=str(_home(tmp_path)), VIRTUAL_ENV=str(Path(sys.executable).parents[1]))
    done = subprocess.run([DG, "check", "defs"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All definitions loaded successfully" in done.stdout + done.stderr
    listed = subprocess.run([DG, "list", "defs", "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=180)
    assert listed.returncode == 0, listed.stderr
    assert "modelarts/job_versions" in listed.stdout and "sync_all_projects_schedule" in listed.stdout


def test_two_partitions_materialized_at_once_from_the_cli_both_succeed(tmp_path):
    home, warehouse = _home(tmp_path), tmp_path / "wh"
    with SimulatorServer(World(projects=PROJECTS, jobs=5, seed=5), token="cli-t0k") as sim:
        env = _env(DAGSTER_HOME=str(home), MODELARTS_ENDPOINT=sim.url, MODELARTS_TOKEN="cli-t0k",
                   MODELARTS_PROJECT_IDS=",".join(PROJECTS), MODELARTS_WAREHOUSE=str(warehouse), MODELARTS_RATE="0")
        procs = [
            subprocess.Popen([DAGSTER, "asset", "materialize", "-m", "pipelines.definitions",
                              "--select", SYNC_SELECTION,
                              "--partition", project],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for project in PROJECTS
        ]
        outputs = [p.communicate(timeout=180)[0] for p in procs]
        truth = {p: len(sim.world.truth(p)) for p in PROJECTS}

    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-3000:]
        assert "RUN_SUCCESS" in out
    con = connect(warehouse)
    stored = dict(con.execute("SELECT project_id, count(*) FROM job_versions GROUP BY 1").fetchall())
    sources = {s for (s,) in con.execute(
        "SELECT DISTINCT source FROM loads WHERE step IN ('raw', 'derive')").fetchall()}
    con.close()
    assert stored == truth
    assert sources == {"dagster"}
    with dg.DagsterInstance.from_config(str(home)) as instance:  # both runs recorded in the shared instance
        runs = instance.get_runs()
        assert sorted(r.tags.get("dagster/partition") for r in runs) == PROJECTS



def _loaded(modules: str, prefixes: tuple[str, ...]) -> list[str]:
    probe = f"import sys, {modules}; print(sorted(m for m in sys.modules if m.startswith({prefixes!r})))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return eval(done.stdout)


def test_the_code_location_never_loads_the_simulator():
    """The simulator is a dev tool: the runtime (here, what a run worker imports) does without it."""
    assert _loaded("pipelines.definitions", ("pipelines.modelarts.simulator",)) == []


def test_the_api_client_never_loads_storage():
    client = "pipelines.modelarts.sync, pipelines.modelarts.v2.sync, pipelines.modelarts.auth"
    assert _loaded(client, ("warehouse", "duckdb", "pyarrow", "dagster")) == []
