"""The data-quality rules of the warehouse, as plain SQL over a read-only lake connection.

No Dagster here: `checks.py` wraps these in asset checks, and anything else (a CLI
command, a notebook) can run the same rules. Every rule takes an optional project
id: a partitioned run checks its project, an ad-hoc run from the UI checks all.
Each returns a `Finding`: how many rows break the rule, and a few of them to look at.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb

from warehouse import schema, schema_v2

SAMPLE_ROWS = 5
CHILD_TABLES = ("parameters", "data_sources", "class_metrics", "system_metric_samples", "volumes", "field_issues")
UNIT_INTERVAL_COLUMNS = ("recall", "precision", "accuracy")
# The lake serves system_metric_samples as a view that unnests the stored system_metric_series (a
# row per metric array), where each sample_index is unique within its array by construction: its
# key and its versions are checked on the series, a fiftieth of the rows. Over the samples, at
# 200,000 versions, the key check alone took 23 s and 9 GB of RAM.
CHECKED_AS = {schema.SYSTEM_METRIC_SAMPLES.name: schema.SYSTEM_METRIC_SERIES,
              schema_v2.V2_METRIC_SAMPLES.name: schema_v2.V2_METRIC_SERIES}


@dataclass
class Finding:
    bad: int
    samples: list[dict] = field(default_factory=list)
    detail: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.bad == 0


def _scope(project_id: str | None, alias: str = "") -> tuple[str, list]:
    prefix = f"{alias}." if alias else ""
    return (f"{prefix}project_id = ?", [project_id]) if project_id else ("TRUE", [])


def _finding(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> Finding:
    """Count the rows `sql` returns and keep a few; the count is what passes or fails."""
    cur = con.execute(f"SELECT *, count(*) OVER () AS _bad_rows FROM ({sql}) LIMIT {SAMPLE_ROWS}", params)
    names = [d[0] for d in cur.description][:-1]
    rows = cur.fetchall()
    if not rows:
        return Finding(0)
    return Finding(rows[0][-1], [{n: _plain(v) for n, v in zip(names, row)} for row in rows])


def _plain(value):
    """Metadata must be JSON: keep numbers and text, spell the rest (timestamps) as text."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def duplicate_keys(con: duckdb.DuckDBPyConnection, table_name: str, project_id: str | None = None) -> Finding:
    """Key values stored more than once: an upsert that did not replace, or two writers that raced."""
    table = CHECKED_AS.get(table_name, schema.TABLES[table_name])
    key = ", ".join(f'"{k}"' for k in table.key)
    where, params = _scope(project_id)
    return _finding(con, f'SELECT {key}, count(*) AS copies FROM "{table.name}" WHERE {where} '
                         f"GROUP BY ALL HAVING count(*) > 1", params)


def orphans(con: duckdb.DuckDBPyConnection, table_name: str, project_id: str | None = None) -> Finding:
    """Child rows whose version is not in job_versions (or a job with no versions): a half-applied write."""
    where, params = _scope(project_id, "c")
    if table_name == "jobs":
        sql = (f"SELECT c.project_id, c.job_id FROM jobs c WHERE {where} AND NOT EXISTS (SELECT 1 FROM job_versions v "
               "WHERE v.project_id = c.project_id AND v.job_id = c.job_id)")
    else:
        stored = CHECKED_AS.get(table_name, schema.TABLES[table_name]).name
        sql = (f'SELECT c.project_id, c.job_id, c.version_id FROM "{stored}" c WHERE {where} AND NOT EXISTS '
               "(SELECT 1 FROM job_versions v WHERE v.project_id = c.project_id AND v.job_id = c.job_id "
               "AND v.version_id = c.version_id)")
    return _finding(con, sql, params)


def v2_orphans(con: duckdb.DuckDBPyConnection, table_name: str, project_id: str | None = None) -> Finding:
    """Rows of a v2 child table whose job is not in v2_jobs: a half-applied write."""
    where, params = _scope(project_id, "c")
    stored = CHECKED_AS.get(table_name, schema.TABLES[table_name]).name
    return _finding(con, f'SELECT c.project_id, c.training_job_id FROM "{stored}" c WHERE {where} AND NOT EXISTS '
                         "(SELECT 1 FROM v2_jobs j WHERE j.project_id = c.project_id "
                         "AND j.training_job_id = c.training_job_id)", params)


def across(tables: Sequence[str], score) -> Finding:
    """One rule over several tables (a job's detail tables): the bad rows summed, samples named by table."""
    total = Finding(0)
    for table in tables:
        found = score(table)
        total.bad += found.bad
        total.samples += [{"table": table, **row} for row in found.samples][:SAMPLE_ROWS - len(total.samples)]
        if found.bad:
            total.detail[table] = found.bad
    return total


def class_metrics_out_of_range(con: duckdb.DuckDBPyConnection, project_id: str | None = None) -> Finding:
    """Recall, precision and accuracy are fractions; anything outside [0, 1] is a parsing or source bug."""
    where, params = _scope(project_id)
    outside = " OR ".join(f"NOT ({c} BETWEEN 0 AND 1)" for c in UNIT_INTERVAL_COLUMNS)
    return _finding(con, f"SELECT project_id, job_id, version_id, class_name, {', '.join(UNIT_INTERVAL_COLUMNS)} "
                         f"FROM class_metrics WHERE {where} AND ({outside})", params)


NO_DATA = {"v2_metric_samples": -1}  # the sample value a generation sends for "no data" (flagged, not a slip)


def negative_samples(con: duckdb.DuckDBPyConnection, table_name: str, project_id: str | None = None) -> Finding:
    """Usage and rates cannot be negative; a negative sample means a sign or unit slip upstream.

    Only the series holding a negative value are unnested (the same rows the samples view
    would give), so a clean lake costs one scan of the series.
    """
    where, params = _scope(project_id)
    series = CHECKED_AS[table_name]
    no_data = f" AND value <> {NO_DATA[table_name]}" if table_name in NO_DATA else ""
    return _finding(con, f"SELECT * FROM (SELECT {', '.join(series.key)}, "
                         "CAST(unnest(range(len(samples))) AS INTEGER) AS sample_index, unnest(samples) AS value "
                         f'FROM "{series.name}" WHERE {where} AND list_min(samples) < 0) WHERE value < 0{no_data}',
                    params)


def new_rejections(con: duckdb.DuckDBPyConnection, load_ids: Sequence[str]) -> Finding:
    """Payloads of these loads that could not become a version row."""
    if not load_ids:
        return Finding(0)
    found = _finding(con, "SELECT project_id, job_id, version_id, stage, error_kind, error_message, source "
                          "FROM rejected_payloads WHERE load_id IN (SELECT unnest(?::VARCHAR[])) "
                          "ORDER BY rejected_at", [list(load_ids)])
    found.detail = _counts(con, "SELECT error_kind, count(*) FROM rejected_payloads "
                                "WHERE load_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY 1 ORDER BY 2 DESC", load_ids)
    return found


GENERATIONS = {  # per API generation: its field issues, its row per body, and that row's key
    "v1": ("field_issues", "job_versions", ("job_id", "version_id")),
    "v2": ("v2_field_issues", "v2_jobs", ("training_job_id",)),
}


def new_unknown_fields(con: duckdb.DuckDBPyConnection, load_ids: Sequence[str], generation: str = "v1") -> Finding:
    """Fields the contract does not know, in versions (v2: jobs) whose payload arrived in these loads: the
    API grew."""
    issues, rows, key = GENERATIONS[generation]
    joined = (f"FROM {issues} f JOIN {rows} v USING (project_id, {', '.join(key)}) "
              "JOIN raw_payloads r ON r.project_id = v.project_id AND r.payload_sha256 = v.payload_sha256 "
              "WHERE f.problem = 'unknown_field' AND r.load_id IN (SELECT unnest(?::VARCHAR[]))")
    if not load_ids:
        return Finding(0)
    keys = ", ".join(f"f.{k}" for k in key)
    found = _finding(con, f"SELECT DISTINCT f.project_id, {keys}, f.table_name, f.field {joined}", [list(load_ids)])
    found.detail = _counts(con, f"SELECT f.field, count(DISTINCT ({keys}, NULL)) {joined} "
                                "GROUP BY 1 ORDER BY 2 DESC LIMIT 20", load_ids)
    return found


def _counts(con: duckdb.DuckDBPyConnection, sql: str, load_ids: Sequence[str]) -> dict:
    return {str(k): int(n) for k, n in con.execute(sql, [list(load_ids)]).fetchall()}


def schema_drift(con: duckdb.DuckDBPyConnection, table_name: str) -> Finding:
    """Columns of the lake's table or view that differ from schema.py.

    The writer adds the contract's new columns to stored tables, but never drops,
    retypes, or redefines a view that exists already: a lake made by an older version
    of the code keeps its old views (jobs, system_metric_samples) and any extra or
    retyped column until it is rebuilt; this is where that shows. A view is checked
    as it resolves now, so it also shows what its stored table changed under it.
    """
    expected = {c.name: c.duckdb_type for c in schema.TABLES[table_name].columns}
    actual = dict(con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog = current_database() "
        "AND table_schema = 'main' AND table_name = ? ORDER BY ordinal_position", [table_name]).fetchall())
    if not actual:
        return Finding(1, detail={"missing_table": table_name})
    detail = {
        "missing": sorted(expected.keys() - actual.keys()),
        "unexpected": sorted(actual.keys() - expected.keys()),
        "retyped": {n: f"{actual[n]} (schema.py: {expected[n]})" for n in expected.keys() & actual.keys()
                    if _normal_type(actual[n]) != _normal_type(expected[n])},
    }
    detail = {k: v for k, v in detail.items() if v}
    bad = sum(len(v) for v in detail.values())
    return Finding(bad, detail=detail)


def _normal_type(duckdb_type: str) -> str:
    """information_schema spells TIMESTAMPTZ as 'TIMESTAMP WITH TIME ZONE'."""
    return {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"}.get(duckdb_type.upper(), duckdb_type.upper())
