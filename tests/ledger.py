"""The ledger: the simulator's truth against the warehouse, one version at a time.

For every version the simulator holds now, what the warehouse must show:
- a clean version: exactly one job_versions row with the simulator's status, exactly
  as many rows in each child table as its payload has items, and no field issue;
- a version whose payload has wrong types or unknown fields: the same row, the same
  child rows except where a list field itself was replaced (then none), and a
  field_issues row naming each corrupted field, nothing else;
- a version whose payload cannot be loaded (invalid JSON, is_success false): no row in
  any tidy table, and a rejected_payloads row saying why.
Anything else (a version the simulator does not have, a rejection of a loaded version
other than an HTTP error superseded by data) is an unexplained difference.

`ledger()` returns those differences as lines; the tests print them and assert there are none.
"""
from __future__ import annotations

from collections import Counter, defaultdict

import duckdb
import orjson

from warehouse import schema

CHILD_TABLES = ("parameters", "data_sources", "class_metrics", "system_metric_samples", "volumes")
UNLOADABLE = {"invalid_json": {"invalid_json", "truncated_json"}, "not_success": {"api_error"}}
WRONG_TYPE_PROBLEMS = {"wrong_type", "not_a_number", "coerced_from_string", "coerced_from_float"}
UNKNOWN_PROBLEMS = {"unknown_field"}
LIST_FIELDS = {"parameter": "parameters", "volumes": "volumes", "system_metric_list": "system_metric_samples"}


def _embedded(value):
    if isinstance(value, str) and value:
        return orjson.loads(value)
    return value or {}


def expected_children(payload: dict, replaced: set[str] = frozenset()) -> dict[str, int]:
    """Rows per child table for a payload; a list field in `replaced` (a wrong_types fault) gives none."""
    metrics = _embedded(payload.get("system_metric_list"))
    counts = {
        "parameters": len(payload.get("parameter") or []),
        "data_sources": len(payload.get("data_source") or []),
        "class_metrics": len(_embedded(payload.get("model_metric_list")).get("metric") or []),
        "system_metric_samples": sum(len(v) for k, v in metrics.items() if k != "interval" and isinstance(v, list)),
        "volumes": len(payload.get("volumes") or []),
    }
    for field, table in LIST_FIELDS.items():
        if field in replaced:
            counts[table] = 0
    return counts


def fault_fields(note: str) -> tuple[set[str], set[str]]:
    """(fields given a wrong type, unknown fields added) from a VersionTruth.fault_note."""
    wrong, unknown = set(), set()
    for part in filter(None, note.split(";")):
        kind, _, names = part.partition(":")
        if kind == "wrong_types":
            wrong.update(names.split(","))
        elif kind == "unknown_fields":
            unknown.update(names.split(","))
    return wrong, unknown


def _per_version(con, sql: str, project_id: str) -> dict:
    return {(job, version): value for job, version, value in con.execute(sql, [project_id]).fetchall()}


def ledger(con: duckdb.DuckDBPyConnection, world, project_id: str, *, complete: bool = True) -> list[str]:
    """Unexplained differences between `world` now and the warehouse behind `con`, one line each.

    complete=False (after a crash): versions not stored yet are fine, but every one stored must be whole.
    """
    truth = {(t.job_id, t.version_id): t for t in world.truth(project_id)}
    stored = {(j, v): (n, status) for j, v, n, status in con.execute(
        "SELECT job_id, version_id, count(*), any_value(status) FROM job_versions WHERE project_id = ? "
        "GROUP BY ALL", [project_id]).fetchall()}
    children = {table: _per_version(con, f"SELECT job_id, version_id, count(*) FROM {table} WHERE project_id = ? "
                                         "GROUP BY ALL", project_id) for table in CHILD_TABLES}
    issues: dict[tuple, dict[str, str]] = defaultdict(dict)
    for job, version, field, problem in con.execute(
            "SELECT job_id, version_id, field, problem FROM field_issues WHERE project_id = ?", [project_id]).fetchall():
        issues[(job, version)][field] = problem
    rejected: dict[tuple, list[tuple[str, str]]] = defaultdict(list)
    for job, version, kind, message in con.execute(
            "SELECT job_id, version_id, error_kind, error_message FROM rejected_payloads "
            "WHERE project_id = ? AND error_kind <> 'http_error'", [project_id]).fetchall():
        rejected[(job, version)].append((kind, message))

    out = []
    for key in sorted(set(stored) - set(truth)):
        out.append(f"job {key[0]} version {key[1]}: in job_versions but not at the source")
    for key, t in sorted(truth.items()):
        where = f"job {key[0]} version {key[1]} ({t.fault_note or 'clean'})"
        unloadable = [UNLOADABLE[f] for f in t.faults if f in UNLOADABLE]
        if not complete and key not in stored and not any(children[table].get(key) for table in CHILD_TABLES):
            continue  # not fetched (or not derived) yet
        if unloadable:
            if key in stored:
                out.append(f"{where}: unloadable, yet in job_versions")
            kinds = {kind for kind, _ in rejected.get(key, ())}
            if not kinds & set().union(*unloadable):
                out.append(f"{where}: unloadable, but rejected_payloads says {sorted(kinds) or 'nothing'}")
            code = t.fault_note.partition("not_success:")[2]
            if code and not any(code in message for _, message in rejected.get(key, ())):
                out.append(f"{where}: no rejection names the API error {code}")
            for table in CHILD_TABLES:
                if children[table].get(key):
                    out.append(f"{where}: unloadable, yet {children[table][key]} rows in {table}")
            continue
        if key not in stored:
            out.append(f"{where}: missing from job_versions")
            continue
        count, status = stored[key]
        if count != 1:
            out.append(f"{where}: {count} rows in job_versions")
        if status != t.status:
            out.append(f"{where}: status {status} stored, {t.status} at the source")
        if rejected.get(key):
            out.append(f"{where}: loaded, yet rejected as {rejected[key]}")
        wrong, unknown = fault_fields(t.fault_note)
        want = expected_children(world.payload(*t.key), wrong)
        for table in CHILD_TABLES:
            got = children[table].get(key, 0)
            if got != want[table]:
                out.append(f"{where}: {got} rows in {table}, the payload has {want[table]}")
        found = issues.get(key, {})
        if set(found) != wrong | unknown:
            out.append(f"{where}: field issues on {sorted(found)}, expected {sorted(wrong | unknown)}")
        for field, problem in found.items():
            if problem not in (UNKNOWN_PROBLEMS if field in unknown else WRONG_TYPE_PROBLEMS):
                out.append(f"{where}: field {field} flagged {problem}")
    per_job = Counter(job for job, _ in stored)
    jobs = {job: (n, count) for job, n, count in con.execute(
        "SELECT job_id, count(*), any_value(version_count) FROM jobs WHERE project_id = ? GROUP BY ALL",
        [project_id]).fetchall()}
    for job in sorted(set(per_job) | set(jobs)):
        if jobs.get(job) != (1, per_job.get(job)):
            out.append(f"job {job}: jobs says (rows, version_count) = {jobs.get(job)}, "
                       f"job_versions holds {per_job.get(job, 0)} versions")
    return out


def no_orphans(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Child rows without their job_versions row (a partial version), one line per table."""
    out = []
    for table in schema.TIDY_TABLES:
        orphans = con.execute(f"SELECT count(*) FROM {table.name} t ANTI JOIN job_versions v "
                              "USING (project_id, job_id, version_id)").fetchall()[0][0]
        if orphans:
            out.append(f"{orphans} rows of {table.name} without their version")
    return out
