"""Issue 13 item 14: `--project-id "a b"` is a mistake, said in one line, not silently two projects."""
from __future__ import annotations

from click.testing import CliRunner

from pipelines.cli import main
from pipelines.modelarts.simulator import SimulatorServer, World

TOKEN = "project-id-token"


def _errors(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("Error:")]


def test_sync_refuses_a_project_id_flag_with_a_space_or_comma(tmp_path):
    env = {"MODELARTS_TOKEN": TOKEN, "MODELARTS_ENDPOINT": "http://127.0.0.1:9"}
    for value in ("a b", "a,b"):
        result = CliRunner().invoke(main, ["sync", "--project-id", value, "--warehouse", str(tmp_path / "w")],
                                    env=env)
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert _errors(result) == [f"Error: invalid project id {value!r}: one --project-id is one id, and this one "
                                   "has a space or comma; pass --project-id once per project"]
    assert not (tmp_path / "w").exists()  # refused before anything was opened


def test_ingest_refuses_a_project_id_with_a_space(tmp_path, seed_bytes):
    (tmp_path / "one.json").write_bytes(seed_bytes)
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "one.json"), "--project-id", "a b",
                                       "--warehouse", str(tmp_path / "w")])
    assert result.exit_code == 1 and len(_errors(result)) == 1 and "invalid project id 'a b'" in result.output


def test_the_environment_variable_still_names_several_projects(tmp_path):
    world = World(projects=["pa", "pb", "pc"], jobs=1, versions_per_job=1, seed=14)
    with SimulatorServer(world, token=TOKEN) as sim:
        env = {"MODELARTS_TOKEN": TOKEN, "MODELARTS_ENDPOINT": sim.url, "MODELARTS_PROJECT_ID": "pa pb,pc"}
        result = CliRunner().invoke(main, ["sync", "--warehouse", str(tmp_path / "w"), "--rate", "0"], env=env)
    assert result.exit_code == 0, result.output
    assert all(f"project {p}:" in result.output for p in ("pa", "pb", "pc"))
