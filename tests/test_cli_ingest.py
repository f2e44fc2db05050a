"""The `modelarts-etl ingest` / `rebuild` commands, run as a user would: in a real process."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import DATA, rows


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def _corpus(folder, seed_bytes):
    folder.mkdir()
    (folder / "one.json").write_bytes(seed_bytes)
    lines = []
    for v in range(3):
        payload = json.loads(seed_bytes)
        payload["version_id"] = 100 + v
        lines.append(json.dumps(payload))
    lines += ["", '{"is_success": false, "error_code": "ModelArts.2775", "error_message": "not found"}', "{trunc"]
    (folder / "more.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "notes.txt").write_text("ignored")


def test_ingest_a_folder_prints_a_summary_and_succeeds_despite_rejections(tmp_path, seed_bytes):
    _corpus(tmp_path / "in", seed_bytes)
    wh = tmp_path / "wh"
    done = cli("ingest", tmp_path / "in", "--project-id", "p1", "--warehouse", wh)
    assert done.returncode == 0, done.stderr
    assert "landed 6 payloads" in done.stdout and "versions loaded 4" in done.stdout and "rejected 2" in done.stdout
    assert rows(wh, "SELECT count(*) FROM job_versions") == [(4,)]
    assert rows(wh, "SELECT source FROM rejected_payloads ORDER BY source") == [
        (f"{tmp_path / 'in' / 'more.jsonl'}:5",), (f"{tmp_path / 'in' / 'more.jsonl'}:6",)]
    again = cli("ingest", tmp_path / "in", "--project-id", "p1", "--warehouse", wh)
    assert "landed 0 payloads (6 already stored)" in again.stdout


def test_rebuild_command(tmp_path, seed_bytes):
    wh = tmp_path / "wh"
    cli("ingest", DATA / "seed_example.json", "--project-id", "p1", "--warehouse", wh)
    done = cli("rebuild", "--warehouse", wh)
    assert done.returncode == 0 and "versions loaded 1" in done.stdout
    assert rows(wh, "SELECT job_name FROM job_versions") == [("TestModelArtsJob",)]


def test_user_mistakes_are_one_line_errors(tmp_path):
    for args, needle in [
        (("ingest", tmp_path / "missing.json", "--project-id", "p1", "--warehouse", tmp_path / "wh"),
         "no such file or folder"),
        (("ingest", DATA / "seed_example.json", "--project-id", "../../etc", "--warehouse", tmp_path / "wh"),
         "invalid project id"),
    ]:
        done = cli(*args)
        assert done.returncode != 0
        assert needle in done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path.parent / "etc").exists()


def test_cli_does_not_import_dagster():
    code = ("import sys; from pipelines.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('dagster' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "False"
