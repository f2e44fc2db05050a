"""Issue 13 items 13 and 15: ingest never follows a link out of its folder, names every payload it rejected
(and why), can fail on them with --strict, and stores sources as absolute, normalised paths. A real process."""
from __future__ import annotations

import json
import os

from conftest import DATA, rows
from test_cli_ingest import cli


def test_links_inside_a_folder_are_skipped_and_named_never_landed(tmp_path, seed_bytes):
    folder, outside = tmp_path / "in", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (folder / "one.json").write_bytes(seed_bytes)
    (outside / "secret.json").write_text('{"job_id": 1, "version_id": 2, "password": "hunter2"}')
    os.symlink("/etc/passwd", folder / "passwd.json")
    os.symlink(outside / "secret.json", folder / "secret.json")
    os.symlink(outside, folder / "linked-folder")
    wh = tmp_path / "wh"
    done = cli("ingest", folder, "--project-id", "p1", "--warehouse", wh)
    assert done.returncode == 0, done.stderr
    assert "landed 1 payloads" in done.stdout
    assert rows(wh, "SELECT source FROM raw_payloads") == [(str(folder / "one.json"),)]
    skipped = [line for line in done.stderr.splitlines() if line.strip().startswith("skipped ")]
    assert sorted(line.split()[1].rstrip(":") for line in skipped) == sorted(
        str(folder / name) for name in ("passwd.json", "secret.json", "linked-folder"))
    assert any("/etc/passwd" in line and "not followed" in line for line in skipped)
    strict = cli("ingest", folder, "--project-id", "p1", "--warehouse", wh, "--strict")
    assert strict.returncode == 1 and "Traceback" not in strict.stderr
    assert [line for line in strict.stderr.splitlines() if line.startswith("Error:")] == [
        "Error: --strict: 0 payload(s) rejected, 3 link(s) skipped (listed above)"]


def _eleven_files(folder, seed_bytes) -> list:
    folder.mkdir()
    (folder / "good.json").write_bytes(seed_bytes)
    bad = []
    for n in range(10):
        path = folder / f"bad-{n}.json"
        path.write_text("{not json" if n % 2 else json.dumps([n]))
        bad.append(path)
    return bad


def test_every_rejected_file_is_named_with_its_reason_and_strict_fails_on_them(tmp_path, seed_bytes):
    bad = _eleven_files(tmp_path / "in", seed_bytes)
    wh = tmp_path / "wh"
    done = cli("ingest", tmp_path / "in", "--project-id", "p1", "--warehouse", wh)
    assert done.returncode == 0, done.stderr
    assert "rejected 10" in done.stdout
    listed = {line.split()[1].rstrip(":"): line for line in done.stderr.splitlines()
              if line.strip().startswith("rejected ")}
    assert set(listed) == {str(path) for path in bad}
    assert "invalid_json" in listed[str(bad[1])] and "not_an_object" in listed[str(bad[0])]
    more = tmp_path / "more"
    more.mkdir()
    (more / "broken.json").write_text("{")
    strict = cli("ingest", more, DATA / "seed_example.json", "--project-id", "p1", "--warehouse", wh, "--strict")
    assert strict.returncode == 1
    assert f"rejected {more / 'broken.json'}: truncated_json" in strict.stderr
    assert [line for line in strict.stderr.splitlines() if line.startswith("Error:")] == [
        "Error: --strict: 1 payload(s) rejected, 0 link(s) skipped (listed above)"]
    clean = cli("ingest", DATA / "seed_example.json", "--project-id", "p2", "--warehouse", wh, "--strict")
    assert clean.returncode == 0, clean.stderr


def test_sources_are_absolute_and_normalised_so_another_cwd_is_the_same_file(tmp_path, seed_bytes):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "one.json").write_bytes(seed_bytes)
    (tmp_path / "elsewhere").mkdir()
    wh = tmp_path / "wh"
    first = cli("ingest", "in/../in/./one.json", "--project-id", "p1", "--warehouse", wh, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert rows(wh, "SELECT source FROM raw_payloads") == [(str(tmp_path / "in" / "one.json"),)]
    again = cli("ingest", "../in", "--project-id", "p1", "--warehouse", wh, cwd=tmp_path / "elsewhere")
    assert "landed 0 payloads (1 already stored)" in again.stdout
