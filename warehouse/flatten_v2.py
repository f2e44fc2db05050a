"""v2 bodies (job search pages, job details, task metrics, event pages) -> typed Arrow tables.

Driven by the contract in schema_v2.py: each column names its payload path and kind.
The typing rules are v1's (the same coercions and the same field_issues problems), so a
v2 field that cannot be typed is NULL plus a `v2_field_issues` row, and a body that
cannot be read at all is a `rejected_payloads` row, exactly as for v1.

Each body replaces what an earlier body of the same *scope* said: a detail replaces its
job's rows in every detail table, a metrics body its task's series, and each body the
field issues of its scope. Events have no id and are stored once each (see V2_EVENTS).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa

from pipelines.modelarts.records import V2_EVENTS, V2_JOB_DETAIL, V2_JOB_SEARCH, V2_METRICS, RawRecord
from warehouse import schema, schema_v2
from warehouse.flatten import (
    _INT32, RAW_VALUE_LIMIT, Rejection, _to_float, _to_int, _to_str, _to_ts_us, decode, json_text, parse_number,
    sha256_hex,
)
from warehouse.flatten import _typed as _v1_typed
from warehouse.redact import MASK, is_secret_label, redact_command, redact_url, redact_value
from warehouse.statuses import is_final_phase

UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_REQUEST = re.compile(r"/v2/[^/]+/training-jobs/(?P<job>[^/?]+)(?:/metrics/(?P<task>[^/?]+))?")
_MAX_S = 253402300799  # 9999-12-31 in epoch seconds
_TOKEN_COLUMNS = frozenset({"jupyter_lab_token", "tensorboard_token", "mindstudio_insight_token"})
_URL_COLUMNS = frozenset({"jupyter_lab_url", "tensorboard_url", "mindstudio_insight_url", "image_url", "obs_url",
                          "dataset_obs_url", "url", "code_dir", "boot_file", "log_export_obs_url"})
_COMMAND_COLUMNS = frozenset({"command", "message"})
# free-form maps and lists the contract reads itself (not field by field)
_OWN_PATHS = ("metadata.id", "metadata.annotations", "status.node_count_metrics", "algorithm.environments",
              "algorithm.summary.data_sources[].job.job_id", "tasks[].task_resource.attributes")
_FREE = frozenset({"metadata.annotations", "algorithm.environments[]", "tasks[].task_resource.attributes",
                   "status.node_count_metrics"})


@dataclass
class V2Batch:
    """One batch of v2 records, flattened: rows for every v2 table, and what they replace."""

    tables: dict[str, pa.Table]
    rejected: pa.Table
    detail_keys: pa.Table  # (project_id, training_job_id) whose detail rows are replaced
    metric_keys: pa.Table  # (project_id, training_job_id, task) whose series are replaced
    issue_scopes: pa.Table  # (project_id, training_job_id, scope) whose field issues are replaced

    @property
    def jobs_loaded(self) -> int:
        return self.detail_keys.num_rows


def _known_paths() -> frozenset[str]:
    """Every object path of the detail the contract reads, with '[]' for list items, and their prefixes."""
    paths = set(_OWN_PATHS) | {"kind"}
    for col in schema_v2.V2_JOBS.columns:
        if isinstance(col, schema_v2.Field) and col.path:
            paths.add(col.path)
    for name, sources in schema_v2.CHILD_SOURCES.items():
        for spec in sources:
            base = spec.list_path + "[]" + (f".{spec.nested}[]" if spec.nested else "")
            paths.add(base)
            for col in schema.TABLES[name].columns:
                if isinstance(col, schema_v2.Field) and col.path:
                    paths.add(f"{base}.{col.path}")
    out = set()
    for path in paths:
        parts = path.split(".")
        prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        out.update(prefixes)
        out.update(p.removesuffix("[]") for p in prefixes)  # the list itself, as its parent names it
    return frozenset(out)


KNOWN_PATHS = _known_paths()


class _Issues:
    def __init__(self, redact: bool):
        self.cols = {name: [] for name in schema_v2.V2_FIELD_ISSUES.column_names}
        self.redact = redact
        self.key: tuple[str, str, str] = ("", "", "")

    def add(self, table: str, field: str, value, problem: str) -> None:
        if self.redact and value is not None and not isinstance(value, (bool, int, float)):
            value = redact_value(field, value)
        text = value if isinstance(value, str) and len(value) <= RAW_VALUE_LIMIT else json_text(value)
        for name, item in zip(("project_id", "training_job_id", "scope", "table_name", "field", "raw_value",
                               "problem"), (*self.key, table, field, text, problem)):
            self.cols[name].append(item)


def _typed(value, kind: str, field: str, table: str, issues: _Issues):
    """v2's own kinds here (times in seconds, lists of strings); the rest as v1 types them."""
    if kind == "ts_s":
        seconds = _to_int(value, (0, _MAX_S), field, table, issues)
        return None if seconds is None else seconds * 1_000_000
    if kind == "strs":
        if value is None:
            return None
        if not isinstance(value, list):
            issues.add(table, field, value, "wrong_type")
            return None
        return [_to_str(v, f"{field}[{i}]", table, issues) for i, v in enumerate(value)]
    return _v1_typed(value, "ts" if kind == "ts_ms" else kind, field, table, issues)


def _get(obj: dict, path: str, where: str, table: str, issues: _Issues):
    """The value at a dotted path, or None; an object that is not one on the way is a wrong_type issue."""
    for part in path.split("."):
        if obj is None:
            return None
        if not isinstance(obj, dict):
            issues.add(table, where, obj, "wrong_type")
            return None
        where = f"{where}.{part}" if where else part
        obj = obj.get(part)
    return obj


def _masked(column: str, value, redact: bool):
    if not redact or not isinstance(value, str):
        return value
    if column in _TOKEN_COLUMNS:
        return MASK
    if column in _URL_COLUMNS:
        return redact_url(value)
    if column in _COMMAND_COLUMNS:
        return redact_command(value)
    return value


def _ts_text(text) -> int | None:
    """An event time (ISO 8601 with an offset) as UTC microseconds, or None."""
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return int((when - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds() * 1_000_000)


class _Builder:
    def __init__(self, redact: bool):
        self.redact = redact
        self.cols = {t.name: {c: [] for c in t.column_names} for t in schema_v2.STORED}
        self.issues = _Issues(redact)
        self.rejected = {c: [] for c in schema.REJECTED_PAYLOADS.column_names}
        self.detail_keys: dict[tuple, None] = {}
        self.metric_keys: dict[tuple, None] = {}
        self.scopes: dict[tuple, None] = {}

    # -- the four kinds of body ------------------------------------------------------------
    def add(self, record: RawRecord, sha: str) -> None:
        if record.kind == V2_JOB_SEARCH:
            try:
                return self._search(decode(record), record)
            except Rejection:
                return  # a list page, as v1's: landed for the record; the sync reports why it failed
        try:
            payload = decode(record)
            job_id, task = _request_ids(record)
            if record.kind == V2_JOB_DETAIL:
                return self._detail(payload, record, sha, job_id)
            if job_id is None:
                raise Rejection("validate", "missing_key", "the request names no training job id")
            if record.kind == V2_METRICS:
                return self._metrics(payload, record, sha, job_id, task)
            return self._events(payload, record, job_id)
        except Rejection as rej:
            self._reject(record, sha, rej)

    def _search(self, payload: dict, record: RawRecord) -> None:
        items = payload.get("items")
        for item in items if isinstance(items, list) else ():
            meta = item.get("metadata") if isinstance(item, dict) else None
            job_id = meta.get("id") if isinstance(meta, dict) else None
            if not (isinstance(job_id, str) and UUID.match(job_id)):
                continue
            self.issues.key = (record.project_id, job_id, "search")
            status = item.get("status") if isinstance(item.get("status"), dict) else {}
            row = {"project_id": record.project_id, "training_job_id": job_id,
                   "name": _to_str(meta.get("name"), "metadata.name", "v2_job_listings", _Ignore),
                   "create_time": _to_ts_us(meta.get("create_time"), "metadata.create_time", "v2_job_listings",
                                            _Ignore),
                   "phase": _to_str(status.get("phase"), "status.phase", "v2_job_listings", _Ignore),
                   "listed_at": record.fetched_at}
            _append(self.cols["v2_job_listings"], row)

    def _detail(self, payload: dict, record: RawRecord, sha: str, hint: str | None) -> None:
        meta = payload.get("metadata")
        if "error_code" in payload and meta is None:
            raise Rejection("validate", "api_error", f"API error {payload.get('error_code')}: "
                            f"{payload.get('error_msg', payload.get('error_message'))}")
        if not isinstance(meta, dict):
            raise Rejection("validate", "missing_key", "the detail has no `metadata` object")
        own = meta.get("id") if isinstance(meta, dict) else None
        own = own if isinstance(own, str) and UUID.match(own) else None
        job_id = own or hint
        if job_id is None:
            raise Rejection("validate", "missing_key", "no usable metadata.id and no job id in the request")
        key = (record.project_id, job_id)
        issues, table = self.issues, "v2_jobs"
        issues.key = (*key, "detail")
        if own is None and isinstance(meta, dict) and meta.get("id") is not None:
            issues.add(table, "metadata.id", meta.get("id"), "wrong_type")
        elif hint is not None and own is not None and own != hint:
            issues.add(table, "metadata.id", f"payload {own}, request {hint}", "key_mismatch")
        self.detail_keys[key] = None
        self.scopes[issues.key] = None
        self._unknown(payload, "", table)
        row = {"project_id": key[0], "training_job_id": key[1], "extracted_at": record.fetched_at,
               "payload_sha256": sha}
        for col in schema_v2.V2_JOBS.columns:
            if isinstance(col, schema_v2.Field) and col.path and col.name not in row:
                value = _typed(_get(payload, col.path, "", table, issues), col.kind, col.path, table, issues)
                row[col.name] = _masked(col.name, value, self.redact)
        if row["start_time"] == 0:
            row["start_time"] = None  # documented: 0 until the job starts
        row["is_final"] = is_final_phase(row["phase"])
        sources = _get(payload, "algorithm.summary.data_sources", "", table, issues)
        row["summary_data_source_job_ids"] = self._summary_jobs(sources)
        _append(self.cols[table], row)
        for name, specs in schema_v2.CHILD_SOURCES.items():
            for spec in specs:
                self._children(name, spec, payload, key)
        self._environments(payload, key)
        self._node_counts(payload, key)
        self._maps(payload, key)

    def _metrics(self, payload: dict, record: RawRecord, sha: str, job_id: str, task: str | None) -> None:
        if task is None:
            raise Rejection("validate", "missing_key", "the request names no task")
        table, issues = "v2_metric_series", self.issues
        issues.key = (record.project_id, job_id, f"metrics/{task}")
        self.scopes[issues.key] = None
        self.metric_keys[(record.project_id, job_id, task)] = None
        metrics = payload.get("metrics")
        for extra in payload.keys() - {"metrics"}:
            issues.add(table, extra, payload[extra], "unknown_field")
        if metrics is not None and not isinstance(metrics, list):
            issues.add(table, "metrics", metrics, "wrong_type")
            return
        seen = set()
        for i, item in enumerate(metrics or ()):
            where = f"metrics[{i}]"
            if not isinstance(item, dict):
                issues.add(table, where, item, "wrong_type")
                continue
            for extra in item.keys() - {"metric", "value"}:
                issues.add(table, f"{where}.{extra}", item[extra], "unknown_field")
            name = _to_str(item.get("metric"), f"{where}.metric", table, issues)
            if name is None or name in seen:
                issues.add(table, f"{where}.metric", name, "missing_key" if name is None else "duplicate")
                continue
            seen.add(name)
            values = item.get("value")
            if values is not None and not isinstance(values, list):
                issues.add(table, f"{where}.value", values, "wrong_type")
                values = None
            samples = [_to_float(v, f"{where}.value[{j}]", table, issues) for j, v in enumerate(values or ())]
            _append(self.cols[table], {"project_id": record.project_id, "training_job_id": job_id, "task": task,
                                       "metric": name, "samples": samples, "extracted_at": record.fetched_at,
                                       "payload_sha256": sha})

    def _events(self, payload: dict, record: RawRecord, job_id: str) -> None:
        table, issues = "v2_events", self.issues
        offset = parse_qs(urlsplit(record.source).query).get("offset", ["0"])[-1]
        issues.key = (record.project_id, job_id, f"events/{offset}")
        self.scopes[issues.key] = None
        for extra in payload.keys() - {"total", "limit", "offset", "order", "start_time", "end_time", "events"}:
            issues.add(table, extra, payload[extra], "unknown_field")
        events = payload.get("events")
        if events is not None and not isinstance(events, list):
            issues.add(table, "events", events, "wrong_type")
            return
        for i, item in enumerate(events or ()):
            where = f"events[{i}]"
            if not isinstance(item, dict):
                issues.add(table, where, item, "wrong_type")
                continue
            for extra in item.keys() - {"time", "level", "message", "source"}:
                issues.add(table, f"{where}.{extra}", item[extra], "unknown_field")
            text = _to_str(item.get("time"), f"{where}.time", table, issues)
            when = _ts_text(text)
            if text is not None and when is None:
                issues.add(table, f"{where}.time", text, "not_a_time")
            message = _to_str(item.get("message"), f"{where}.message", table, issues)
            _append(self.cols[table], {
                "project_id": record.project_id, "training_job_id": job_id, "time": when, "time_text": text,
                "level": _to_str(item.get("level"), f"{where}.level", table, issues),
                "source": _to_str(item.get("source"), f"{where}.source", table, issues),
                "message": _masked("message", message, self.redact), "extracted_at": record.fetched_at})

    # -- the detail's lists and maps -------------------------------------------------------
    def _children(self, name: str, spec: schema_v2.ChildSpec, payload: dict, key: tuple) -> None:
        issues = self.issues
        items = _get(payload, spec.list_path, "", name, issues)
        if items is None:
            return
        if not isinstance(items, list):
            issues.add(name, spec.list_path, items, "wrong_type")
            return
        table = schema.TABLES[name]
        for i, item in enumerate(items):
            where = f"{spec.list_path}[{i}]"
            if not isinstance(item, dict):
                issues.add(name, where, item, "wrong_type")
                continue
            if spec.nested is None:
                self._child_row(table, spec, item, where, key, {"position": i})
                continue
            inner = item.get(spec.nested)
            if inner is not None and not isinstance(inner, list):
                issues.add(name, f"{where}.{spec.nested}", inner, "wrong_type")
                continue
            for j, sub in enumerate(inner or ()):
                sub_where = f"{where}.{spec.nested}[{j}]"
                if isinstance(sub, dict):
                    self._child_row(table, spec, sub, sub_where, key, {"parent_position": i, "position": j})
                else:
                    issues.add(name, sub_where, sub, "wrong_type")

    def _child_row(self, table, spec, item: dict, where: str, key: tuple, row: dict) -> None:
        row.update(project_id=key[0], training_job_id=key[1], **dict(spec.fixed))
        for col in table.columns:
            if isinstance(col, schema_v2.Field) and col.path:
                value = _get(item, col.path, where, table.name, self.issues)
                row[col.name] = _masked(col.name, _typed(value, col.kind, f"{where}.{col.path}", table.name,
                                                         self.issues), self.redact)
        if table is schema_v2.V2_PARAMETERS:
            row["value_number"] = parse_number(row["value"]) if row["value"] else None
            if self.redact and row["value"] is not None and (row["sensitive"] or is_secret_label(row["name"])):
                row["value"], row["value_number"] = MASK, None
        if table is schema_v2.V2_DATA_CHANNELS:
            remote = item.get("remote") if isinstance(item.get("remote"), dict) else {}
            row["remote_type"] = next((k for k in ("dataset", "obs") if remote.get(k) is not None), None)
        _append(self.cols[table.name], row)

    def _environments(self, payload: dict, key: tuple) -> None:
        name, issues = "v2_environments", self.issues
        envs = _get(payload, "algorithm.environments", "", name, issues)
        if envs is not None and not isinstance(envs, list):
            envs = [envs]  # one map where a list of maps is documented: still its variables
        for i, env in enumerate(envs or ()):
            if not isinstance(env, dict):
                issues.add(name, f"algorithm.environments[{i}]", env, "wrong_type")
                continue
            for var, value in env.items():
                text = _to_str(value, f"algorithm.environments[{i}].{var}", name, issues)
                if self.redact and text is not None:
                    text = MASK if is_secret_label(var) else redact_url(redact_command(text))
                _append(self.cols[name], {"project_id": key[0], "training_job_id": key[1], "position": i,
                                          "name": var, "value": text})

    def _node_counts(self, payload: dict, key: tuple) -> None:
        name, issues = "v2_node_counts", self.issues
        pairs = _get(payload, "status.node_count_metrics", "", name, issues)
        if pairs is not None and not isinstance(pairs, list):
            issues.add(name, "status.node_count_metrics", pairs, "wrong_type")
            return
        for i, pair in enumerate(pairs or ()):
            where = f"status.node_count_metrics[{i}]"
            if not (isinstance(pair, list) and len(pair) == 2):
                issues.add(name, where, pair, "wrong_type")
                continue
            _append(self.cols[name], {"project_id": key[0], "training_job_id": key[1], "position": i,
                                      "time": _to_ts_us(pair[0], f"{where}[0]", name, issues),
                                      "node_count": _to_int(pair[1], _INT32, f"{where}[1]", name, issues)})

    def _maps(self, payload: dict, key: tuple) -> None:
        maps = [("metadata.annotations", _get(payload, "metadata.annotations", "", "v2_annotations", self.issues))]
        tasks = payload.get("tasks")
        for i, task in enumerate(tasks if isinstance(tasks, list) else ()):
            resource = task.get("task_resource") if isinstance(task, dict) else None
            if isinstance(resource, dict):
                maps.append((f"tasks[{i}].task_resource.attributes", resource.get("attributes")))
        for path, entries in maps:
            if entries is None:
                continue
            if not isinstance(entries, dict):
                self.issues.add("v2_annotations", path, entries, "wrong_type")
                continue
            for k, v in entries.items():
                text = v if isinstance(v, str) or v is None else json_text(v)  # Map<String,String>: numbers as text
                if self.redact and text is not None:
                    text = MASK if is_secret_label(k) else redact_url(redact_command(text))
                _append(self.cols["v2_annotations"], {"project_id": key[0], "training_job_id": key[1],
                                                      "map": path, "key": k, "value": text})

    def _summary_jobs(self, sources) -> list | None:
        if not isinstance(sources, list):
            return None
        ids = []
        for i, source in enumerate(sources):
            job = source.get("job") if isinstance(source, dict) else None
            ids.append(_to_str(job.get("job_id") if isinstance(job, dict) else None,
                               f"algorithm.summary.data_sources[{i}].job.job_id", "v2_jobs", self.issues))
        return ids

    def _unknown(self, obj, path: str, table: str) -> None:
        """An unknown_field issue for every key of the detail the contract does not know."""
        if isinstance(obj, list):
            for item in obj:
                self._unknown(item, f"{path}[]", table)
            return
        if not isinstance(obj, dict) or path in _FREE:
            return
        for name, value in obj.items():
            child = f"{path}.{name}" if path else name
            if child not in KNOWN_PATHS:
                self.issues.add(table, child, value, "unknown_field")
            elif child not in _FREE:
                self._unknown(value, child, table)

    def _reject(self, record: RawRecord, sha: str, rej: Rejection) -> None:
        _append(self.rejected, {
            "project_id": record.project_id, "job_id": None, "version_id": None, "source": record.source,
            "payload_sha256": sha, "stage": rej.stage, "error_kind": rej.kind,
            "error_message": rej.message[:RAW_VALUE_LIMIT], "rejected_at": record.fetched_at, "load_id": None})

    def finish(self) -> V2Batch:
        self.cols["v2_field_issues"] = self.issues.cols
        self.cols["v2_events"] = _distinct(self.cols["v2_events"], schema_v2.V2_EVENTS.key)
        tables = {t.name: pa.Table.from_pydict(self.cols[t.name], schema=t.schema) for t in schema_v2.STORED}
        return V2Batch(
            tables=tables,
            rejected=pa.Table.from_pydict(self.rejected, schema=schema.REJECTED_PAYLOADS.schema),
            detail_keys=_keys(self.detail_keys, ("project_id", "training_job_id")),
            metric_keys=_keys(self.metric_keys, ("project_id", "training_job_id", "task")),
            issue_scopes=_keys(self.scopes, ("project_id", "training_job_id", "scope")),
        )


class _NoIssues:
    """For the search listing: what is typed there is checked again in the detail."""

    @staticmethod
    def add(*args) -> None:
        pass


_Ignore = _NoIssues()


def _append(cols: dict[str, list], row: dict) -> None:
    for name, values in cols.items():
        values.append(row.get(name))


def _distinct(cols: dict[str, list], key: tuple[str, ...]) -> dict[str, list]:
    """The rows with distinct keys, the last of each kept (an event seen on two pages is one event)."""
    rows = {tuple(cols[k][i] for k in key): i for i in range(len(cols[key[0]]))}
    keep = sorted(rows.values())
    return {name: [values[i] for i in keep] for name, values in cols.items()}


def _keys(keys: dict, names: tuple[str, ...]) -> pa.Table:
    return pa.Table.from_pylist([dict(zip(names, k)) for k in keys], schema=pa.schema([(n, pa.string())
                                                                                         for n in names]))


def _request_ids(record: RawRecord) -> tuple[str | None, str | None]:
    """(training job id, task) of the request: the record's own, else read back from its URL (which we built)."""
    match = _REQUEST.search(urlsplit(record.source).path)
    job = record.training_job_id or (match["job"] if match else None)
    return (job if job and UUID.match(job) else None), (match["task"] if match else None)


def flatten_v2(records: list[RawRecord], *, redact: bool = True, shas: list[str] | None = None) -> V2Batch:
    """Flatten the batch's v2 records (others are skipped). A later body of a scope replaces an earlier one."""
    builder = _Builder(redact)
    latest = {}
    for n, record in enumerate(records):
        if record.kind in (V2_JOB_DETAIL, V2_METRICS):
            latest[(record.kind, record.project_id, record.source)] = n
    for n, record in enumerate(records):
        if record.kind not in (V2_JOB_SEARCH, V2_JOB_DETAIL, V2_METRICS, V2_EVENTS):
            continue
        if latest.get((record.kind, record.project_id, record.source), n) != n:
            continue  # the same detail or metrics again later in this batch: the later one wins
        builder.add(record, shas[n] if shas is not None else sha256_hex(record.body))
    return builder.finish()


def has_v2(records: list[RawRecord]) -> bool:
    return any(r.kind in (V2_JOB_SEARCH, V2_JOB_DETAIL, V2_METRICS, V2_EVENTS) for r in records)
