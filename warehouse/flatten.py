"""Job-version payloads -> typed Arrow tables, field issues and rejections.

Input shape is trusted for nothing: every value is checked against the contract in
schema.py, and whatever cannot be typed becomes NULL plus a `field_issues` row.
Rows are built column-wise (one Python list per column) and the metric samples,
which are most of the data, are converted to doubles in one vectorised Arrow cast.
"""
from __future__ import annotations

import gc
import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from warehouse import schema
from pipelines.modelarts.records import VERSION_DETAIL, RawRecord
from warehouse.redact import MASK, is_secret_label, redact_command, redact_value
from warehouse.statuses import STATUS_NAMES, is_final

RAW_VALUE_LIMIT = 1000
_MIN_MS, _MAX_MS = -62135596800000, 253402300799999  # years 1..9999
_INT64 = (-(2**63), 2**63 - 1)
_INT32 = (-(2**31), 2**31 - 1)

# (payload field, job_versions column, kind)
_SCALARS: tuple[tuple[str, str, str], ...] = (
    ("job_name", "job_name", "str"),
    ("job_desc", "job_desc", "str"),
    ("version_name", "version_name", "str"),
    ("pre_version_id", "pre_version_id", "int64"),
    ("engine_type", "engine_type", "int32"),
    ("engine_name", "engine_name", "str"),
    ("engine_id", "engine_id", "int64"),
    ("engine_version", "engine_version", "str"),
    ("status", "status", "int32"),
    ("app_url", "app_url", "str"),
    ("boot_file_url", "boot_file_url", "str"),
    ("create_time", "create_time", "ts"),
    ("start_time", "start_time", "ts"),
    ("duration", "duration_ms", "int64"),
    ("spec_id", "spec_id", "int64"),
    ("core", "core", "str"),
    ("cpu", "cpu", "str"),
    ("gpu_num", "gpu_num", "int32"),
    ("gpu_type", "gpu_type", "str"),
    ("gpu", "gpu", "bool"),
    ("worker_server_num", "worker_server_num", "int32"),
    ("data_url", "data_url", "str"),
    ("train_url", "train_url", "str"),
    ("log_url", "log_url", "str"),
    ("dataset_version_id", "dataset_version_id", "str"),
    ("dataset_id", "dataset_id", "str"),
    ("model_id", "model_id", "int64"),
    ("user_image_url", "user_image_url", "str"),
    ("user_command", "user_command", "str"),
    ("resource_id", "resource_id", "str"),
    ("dataset_name", "dataset_name", "str"),
    ("spec_code", "spec_code", "str"),
    ("dataset_version_name", "dataset_version_name", "str"),
    ("pool_name", "pool_name", "str"),
    ("pool_id", "pool_id", "str"),
    ("nas_mount_path", "nas_mount_path", "str"),
    ("nas_share_addr", "nas_share_addr", "str"),
    ("nas_type", "nas_type", "str"),
)
_SCALAR_FIELDS = tuple(f for f, _, _ in _SCALARS)
_PLAIN_TYPE = {"str": str, "int64": int, "int32": int, "ts": int, "bool": bool}
_BOUNDS = {"int64": _INT64, "int32": _INT32, "ts": (_MIN_MS, _MAX_MS)}
_SCALAR_RANGES = tuple((i, *_BOUNDS[kind]) for i, (_, _, kind) in enumerate(_SCALARS) if kind in _BOUNDS)
_SCALAR_TS = tuple(i for i, (_, _, kind) in enumerate(_SCALARS) if kind == "ts")
_USER_COMMAND = _SCALAR_FIELDS.index("user_command")
_STATUS = _SCALAR_FIELDS.index("status")
_PLAIN_SIGNATURES: dict[tuple, tuple[int, ...] | None] = {}


def _remember_signature(signature: tuple) -> tuple[int, ...] | None:
    """For a row with these value types: None if some value needs _typed (a coercion that is
    reported, or a wrong type), else the positions of numbers sent for documented strings,
    which become their JSON text without an issue (`core`: 8 -> "8")."""
    as_text = []
    plain = True
    for i, (t, (_, _, kind)) in enumerate(zip(signature, _SCALARS)):
        if t is type(None) or t is _PLAIN_TYPE.get(kind):
            continue
        if kind == "str" and (t is int or t is float):
            as_text.append(i)
            continue
        plain = False
        break
    result = tuple(as_text) if plain else None
    if len(_PLAIN_SIGNATURES) < 4096:
        _PLAIN_SIGNATURES[signature] = result
    return result
_SAMPLE_FLUSH = 65_536
_STRUCTURED = frozenset({"parameter", "data_source", "volumes", "model_metric_list", "system_metric_list"})
_ENVELOPE = frozenset({"is_success", "job_id", "version_id", "error_code", "error_message", "error_msg"})
KNOWN_FIELDS = frozenset(f for f, _, _ in _SCALARS) | _STRUCTURED | _ENVELOPE

_PARAMETER_KEYS = frozenset({"label", "value"})
_DATA_SOURCE_KEYS = frozenset({"type", "dataset_id", "dataset_version", "data_url"})
_NFS_KEYS = frozenset({"id", "src_path", "dest_path", "read_only"})
_HOST_PATH_KEYS = frozenset({"src_path", "dest_path", "read_only"})


class Rejection(Exception):
    """A payload that cannot become a version row; becomes a `rejected_payloads` row."""

    def __init__(self, stage: str, kind: str, message: str):
        super().__init__(message)
        self.stage, self.kind, self.message = stage, kind, message


# system_metric_samples as the flattener hands it over: project_id and metric dictionary-encoded
# (same values as schema.py's strings). Millions of repeated short strings cost DuckDB's
# insert and the Parquet writer far more as plain strings than as a dictionary.
_DICT = pa.dictionary(pa.int32(), pa.string())
SAMPLE_ARROW_SCHEMA = pa.schema([
    pa.field(f.name, _DICT if f.name in ("project_id", "metric") else f.type)
    for f in schema.SYSTEM_METRIC_SAMPLES.schema
])
SERIES_ARROW_SCHEMA = pa.schema([
    pa.field(f.name, _DICT if f.name in ("project_id", "metric") else f.type)
    for f in schema.SYSTEM_METRIC_SERIES.schema
])


@dataclass
class FlatBatch:
    """One batch of records, flattened. `tables` holds every version-scoped table but
    system_metric_samples, which is kept as one list per metric array (`series`, what
    DuckDB stores) and unnested into rows only for whoever asks (the Parquet writer)."""

    raw_keys: pa.Table  # per record: project_id, source, payload_sha256, job_id, version_id
    rejected: pa.Table
    tables: dict[str, pa.Table]
    keys: pa.Table  # (project_id, job_id, version_id) of the versions loaded in this batch
    series: pa.Table  # system_metric_series rows, SERIES_ARROW_SCHEMA
    series_rows: np.ndarray  # per series row: its version's row in job_versions
    # per row of parameters, data_sources, class_metrics and volumes: its version's row in job_versions
    version_rows: dict[str, np.ndarray]

    @property
    def versions_loaded(self) -> int:
        return self.keys.num_rows

    def table(self, name: str) -> pa.Table:
        """A version-scoped table as Parquet stores it (system_metric_samples with SAMPLE_ARROW_SCHEMA)."""
        return self.samples() if name == schema.SYSTEM_METRIC_SAMPLES.name else self.tables[name]

    def samples(self, series_mask: np.ndarray | None = None) -> pa.Table:
        """The series (those where `series_mask` is true, if given) as one row per sample."""
        series = self.series if series_mask is None else self.series.filter(pa.array(series_mask))
        if series.num_rows == 0:
            return SAMPLE_ARROW_SCHEMA.empty_table()
        lists = series.column("samples").combine_chunks()
        offsets = lists.offsets.to_numpy()
        rows = np.repeat(np.arange(series.num_rows, dtype=np.int32), np.diff(offsets))
        index = np.arange(offsets[0], offsets[-1], dtype=np.int32) - offsets[rows]
        columns = [_repeat(series.column(name), rows) for name in ("project_id", "job_id", "version_id", "metric")]
        return pa.Table.from_arrays(columns + [pa.array(index), lists.flatten()], schema=SAMPLE_ARROW_SCHEMA)


def _repeat(column: pa.ChunkedArray, rows: np.ndarray) -> pa.Array:
    """column[rows], with numpy (Arrow's take costs twice as much here)."""
    array = column.combine_chunks()
    if pa.types.is_dictionary(array.type):
        return pa.DictionaryArray.from_arrays(pa.array(array.indices.to_numpy()[rows]), array.dictionary)
    return pa.array(array.to_numpy()[rows])


def sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def json_text(value) -> str:
    """A value as compact JSON text, capped so one hostile field cannot bloat field_issues."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= RAW_VALUE_LIMIT else text[:RAW_VALUE_LIMIT] + "…"


def number_text(value) -> str:
    """JSON number -> its text (0.01 -> '0.01'); bool -> 'true'/'false'."""
    if value is True or value is False:
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def parse_number(text: str) -> float | None:
    try:
        number = float(text)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


_NUMBER_CACHE: dict[str, float | None] = {}


def _cached_number(text: str) -> float | None:
    """parse_number, remembered: parameter values repeat a lot ("0.01", "32", "adam")."""
    try:
        return _NUMBER_CACHE[text]
    except KeyError:
        pass
    if len(_NUMBER_CACHE) >= 65536:
        _NUMBER_CACHE.clear()
    number = _NUMBER_CACHE[text] = parse_number(text)
    return number


_COMMAND_CACHE: dict[str, str] = {}


def _redacted_command(command: str) -> str:
    """redact_command, remembered: a job's versions usually share one command line, and the
    regular expressions cost ~10 us a command. Long commands are not kept."""
    try:
        return _COMMAND_CACHE[command]
    except KeyError:
        pass
    redacted = redact_command(command)
    if len(command) <= 4096:
        if len(_COMMAND_CACHE) >= 1024:
            _COMMAND_CACHE.clear()
        _COMMAND_CACHE[command] = redacted
    return redacted


class _Issues:
    """Collects field_issues rows for the payload being flattened."""

    def __init__(self, cols: dict[str, list], redact: bool = True):
        self.cols = cols
        self.key: tuple = ()
        self.redact = redact

    def add(self, table: str, field: str, value, problem: str) -> None:
        if isinstance(value, str):
            text = value if len(value) <= RAW_VALUE_LIMIT else json_text(value)  # cut first: cheap to mask
            if self.redact:
                text = redact_value(field, text)
        else:
            if self.redact and value is not None and not isinstance(value, (bool, int, float)):
                value = redact_value(field, value)  # what could not be typed may hold secrets (a parameter object)
            text = json_text(value)
        c = self.cols
        c["project_id"].append(self.key[0])
        c["job_id"].append(self.key[1])
        c["version_id"].append(self.key[2])
        c["table_name"].append(table)
        c["field"].append(field)
        c["raw_value"].append(text)
        c["problem"].append(problem)


def _to_int(value, bounds, field, table, issues):
    if type(value) is int:
        if bounds[0] <= value <= bounds[1]:
            return value
        issues.add(table, field, value, "out_of_range")
        return None
    if value is None:
        return None
    if isinstance(value, float):
        if not (math.isfinite(value) and bounds[0] <= value <= bounds[1]):
            issues.add(table, field, repr(value), "out_of_range")
            return None
        if value.is_integer():
            issues.add(table, field, value, "coerced_from_float")
            return int(value)
    if isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            issues.add(table, field, value, "not_a_number")
            return None
        if bounds[0] <= number <= bounds[1]:
            issues.add(table, field, value, "coerced_from_string")
            return number
        issues.add(table, field, value, "out_of_range")
        return None
    issues.add(table, field, value, "wrong_type")
    return None


def _to_str(value, field, table, issues):
    if type(value) is str or value is None:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return number_text(value)  # documented String, sent as a number: lossless as text
    issues.add(table, field, value, "wrong_type")
    return None


def _to_float(value, field, table, issues):
    if value is None:
        return None
    if type(value) is float:
        if math.isfinite(value):
            return value
        issues.add(table, field, repr(value), "out_of_range")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        number = parse_number(value)
        if number is None:
            issues.add(table, field, value, "not_a_number")
        return number
    issues.add(table, field, value, "wrong_type")
    return None


def _to_bool(value, field, table, issues):
    if value is True or value is False or value is None:
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        issues.add(table, field, value, "coerced_from_string")
        return value.lower() == "true"
    issues.add(table, field, value, "wrong_type")
    return None


def _to_ts_us(value, field, table, issues):
    ms = _to_int(value, _INT64, field, table, issues)
    if ms is None:
        return None
    if _MIN_MS <= ms <= _MAX_MS:
        return ms * 1000
    issues.add(table, field, value, "out_of_range")
    return None


def _typed(value, kind, field, table, issues):
    if kind == "str":
        return _to_str(value, field, table, issues)
    if kind == "int64":
        return _to_int(value, _INT64, field, table, issues)
    if kind == "int32":
        return _to_int(value, _INT32, field, table, issues)
    if kind == "ts":
        return _to_ts_us(value, field, table, issues)
    if kind == "bool":
        return _to_bool(value, field, table, issues)
    return _to_float(value, field, table, issues)


def _key_id(value) -> int | None:
    if type(value) is int and _INT64[0] <= value <= _INT64[1]:
        return value
    # ASCII digits only, and few: "²".isdigit() is True but int("²") raises, and so does int() of 5,000 digits
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value.strip()) <= 19:
        number = int(value.strip())
        return number if number <= _INT64[1] else None
    return None


def decode(record: RawRecord) -> dict:
    """Bytes -> the payload object, or a Rejection saying why not."""
    if record.http_status is not None and not 200 <= record.http_status < 300:
        raise Rejection("fetch", "http_error", f"HTTP {record.http_status}{_api_error_suffix(record.body)}")
    payload = _loads(record.body)
    if not isinstance(payload, dict):
        raise Rejection("decode", "not_an_object", f"expected a JSON object, got {type(payload).__name__}")
    if payload.get("is_success") is False:
        code, message = _api_error(payload)
        raise Rejection("validate", "api_error", f"API error {code}: {message}")
    return payload


def _loads(body: bytes):
    """orjson, falling back to the stdlib for valid JSON orjson refuses (integers past 64 bits, 1e400)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        reason = str(exc)
    if not body.strip():
        raise Rejection("decode", "empty_body", "empty body")
    if "utf-8" in reason.lower():
        raise Rejection("decode", "invalid_utf8", f"invalid utf-8: {reason}")
    if "recursion" not in reason:
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            pass
    kind = "truncated_json" if "end of data" in reason or "EOF" in reason else "invalid_json"
    raise Rejection("decode", kind, f"{kind.replace('_', ' ')}: {reason}")


def _api_error_suffix(body: bytes) -> str:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(payload, dict):
        return ""
    code, message = _api_error(payload)
    return f" ({code}: {message})" if code or message else ""


def _api_error(payload: dict) -> tuple:
    """(error_code, message) of an error body; older API editions name the message `error_msg`."""
    return payload.get("error_code"), payload.get("error_message", payload.get("error_msg"))


_CLASS_METRIC_KEYS = frozenset({"metric_values", "metric_meta", "reserved_data"})
_TOTAL_COLUMNS = (("recall", "total_recall"), ("precision", "total_precision"), ("accuracy", "total_accuracy"))


def _plain_float(value) -> bool:
    return value is None or (type(value) is float and math.isfinite(value))


def _plain_class_metrics(items: list) -> tuple[list, list, list, list, list] | None:
    """(class_id, class_name, recall, precision, accuracy) columns when no `metric[]` item needs a
    coercion or raises an issue (the usual case); None sends the list down the careful path."""
    ids, names, recalls, precisions, accuracies = [], [], [], [], []
    for item in items:
        if type(item) is not dict or not item.keys() <= _CLASS_METRIC_KEYS:
            return None
        values, meta = item.get("metric_values"), item.get("metric_meta")
        if type(values) is not dict or type(meta) is not dict:
            return None
        class_id, name = meta.get("class_id"), meta.get("class_name")
        if class_id is not None and not (type(class_id) is int and _INT64[0] <= class_id <= _INT64[1]):
            return None
        if type(name) is int:
            name = str(name)
        elif name is not None and type(name) is not str:
            return None
        recall, precision, accuracy = values.get("recall"), values.get("precision"), values.get("accuracy")
        if not (_plain_float(recall) and _plain_float(precision) and _plain_float(accuracy)):
            return None
        ids.append(class_id)
        names.append(name)
        recalls.append(recall)
        precisions.append(precision)
        accuracies.append(accuracy)
    return ids, names, recalls, precisions, accuracies


def _plain_parameters(items: list, redact: bool) -> tuple[list, list, list] | None:
    """(label, value, value_number) columns when every item is a {label, value} object with a
    string (or null) label and a string, number or null value: nothing to report, so no issue
    paths to build. None sends the list down the careful path in _Builder._parameters."""
    labels, texts, numbers = [], [], []
    for item in items:
        if type(item) is not dict or len(item) != 2 or "label" not in item or "value" not in item:
            return None
        label, text = item["label"], item["value"]
        if type(label) is not str and label is not None:
            return None
        if type(text) is str:
            number = _cached_number(text) if text else None
        elif type(text) is int:
            text, number = str(text), float(text)
        elif type(text) is float:
            text, number = repr(text), (text if math.isfinite(text) else None)
        elif text is None:
            number = None
        else:
            return None
        if redact and text is not None and is_secret_label(label):
            text, number = MASK, None
        labels.append(label)
        texts.append(text)
        numbers.append(number)
    return labels, texts, numbers


def _plain_volumes(items: list) -> list[tuple[str, dict]] | None:
    """(kind, body) per item when each is {"nfs": {...}} or {"host_path": {...}} with only known
    keys, string (or null) ids and paths and a boolean (or null) read_only; None otherwise."""
    out = []
    for item in items:
        if type(item) is not dict or len(item) != 1:
            return None
        kind = "nfs" if "nfs" in item else "host_path"
        body = item.get(kind)
        if type(body) is not dict or not body.keys() <= (_NFS_KEYS if kind == "nfs" else _HOST_PATH_KEYS):
            return None
        read_only = body.get("read_only")
        if read_only is not None and read_only is not True and read_only is not False:
            return None
        for field in ("id", "src_path", "dest_path"):
            value = body.get(field)
            if type(value) is not str and value is not None:
                return None
        out.append((kind, body))
    return out


def _extend_keys(cols: dict[str, list], key: tuple, count: int) -> None:
    """Key and position columns for `count` child rows at positions 0..count-1."""
    if not count:
        return
    project_id, job_id, version_id = key
    cols["project_id"].extend([project_id] * count)
    cols["job_id"].extend([job_id] * count)
    cols["version_id"].extend([version_id] * count)
    cols["position"].extend(range(count))


def _empty_cols(table: schema.Table) -> dict[str, list]:
    return {name: [] for name in table.column_names}


class _Builder:
    """Column lists for one batch; `add_payload` appends one version to every table."""

    def __init__(self, redact: bool):
        self.redact = redact
        self.versions = _empty_cols(schema.JOB_VERSIONS)
        self.parameters = _empty_cols(schema.PARAMETERS)
        self.data_sources = _empty_cols(schema.DATA_SOURCES)
        self.class_metrics = _empty_cols(schema.CLASS_METRICS)
        self.volumes = _empty_cols(schema.VOLUMES)
        self.children = {"parameters": self.parameters, "data_sources": self.data_sources,
                         "class_metrics": self.class_metrics, "volumes": self.volumes}
        self.child_ends: dict[str, list[int]] = {name: [] for name in self.children}  # row count after each version
        self.issue_cols = _empty_cols(schema.FIELD_ISSUES)
        self.issues = _Issues(self.issue_cols, redact)
        # metric samples are kept as flat value lists plus one (key, metric, length) run per array
        self.sample_values: list = []
        self.sample_runs: list[tuple[int, str, int]] = []  # (version row, metric, length)
        self.series_rows: np.ndarray | None = None
        # sample strings are turned into doubles every _SAMPLE_FLUSH values, so a batch never
        # holds more than that many of them as Python objects (they are ~56 bytes each)
        self.sample_arrays: list[pa.Array] = []
        self._unconverted_runs = 0  # sample_runs[_unconverted_runs:] are still in sample_values
        self.scalar_rows: list[list] = []  # per version, the _SCALARS values as typed

    def add_payload(self, payload: dict, key: tuple[str, int, int], record: RawRecord, sha: str) -> None:
        if len(self.sample_values) >= _SAMPLE_FLUSH:
            self._flush_samples()
        self.issues.key = key
        row = len(self.versions["job_id"])
        v = self.versions
        v["project_id"].append(key[0])
        v["job_id"].append(key[1])
        v["version_id"].append(key[2])
        issues = self.issues
        # The scalar fields in one go: when every value already has the contract's type (the
        # type signature is checked once per distinct signature) and the integers are in
        # range, the row is taken as it is; otherwise each field goes through _typed, which
        # coerces or records a field issue. Rows are turned into columns in tables().
        values = list(map(payload.get, _SCALAR_FIELDS))
        signature = tuple(map(type, values))
        as_text = _PLAIN_SIGNATURES[signature] if signature in _PLAIN_SIGNATURES else _remember_signature(signature)
        plain = as_text is not None
        if plain:
            for i, low, high in _SCALAR_RANGES:
                value = values[i]
                if value is not None and not low <= value <= high:
                    plain = False
                    break
        if plain:
            for i in _SCALAR_TS:
                if values[i] is not None:
                    values[i] *= 1000
            for i in as_text:
                values[i] = number_text(values[i])
        else:
            values = [_typed(value, kind, field, "job_versions", issues)
                      for value, (field, _, kind) in zip(values, _SCALARS)]
        if self.redact and values[_USER_COMMAND]:
            values[_USER_COMMAND] = _redacted_command(values[_USER_COMMAND])
        self.scalar_rows.append(values)
        status = values[_STATUS]
        v["status_name"].append(STATUS_NAMES.get(status) if status is not None else None)
        v["is_final"].append(is_final(status))
        v["extracted_at"].append(record.fetched_at)
        v["payload_sha256"].append(sha)
        if not payload.keys() <= KNOWN_FIELDS:
            for field in payload:  # in payload order, so the rows come out the same in every process
                if field not in KNOWN_FIELDS:
                    issues.add("job_versions", field, payload[field], "unknown_field")
        self._parameters(payload.get("parameter"), key)
        self._data_sources(payload.get("data_source"), key)
        self._volumes(payload.get("volumes"), key)
        self._model_metrics(payload.get("model_metric_list"), key)
        self._system_metrics(payload.get("system_metric_list"), row)
        for name, cols in self.children.items():
            self.child_ends[name].append(len(cols["job_id"]))

    def _list(self, value, field, table) -> list:
        if value is None:
            return []
        if isinstance(value, list):
            return value
        self.issues.add(table, field, value, "wrong_type")
        return []

    def _items(self, value, field, table, known):
        """(position, item) for each object of a list field; flags non-objects and unknown keys."""
        for pos, item in enumerate(self._list(value, field, table)):
            path = f"{field}[{pos}]"
            if not isinstance(item, dict):
                self.issues.add(table, path, item, "wrong_type")
                continue
            for extra in item.keys() - known:
                self.issues.add(table, f"{path}.{extra}", item[extra], "unknown_field")
            yield pos, path, item

    def _append_key(self, cols, key, pos):
        cols["project_id"].append(key[0])
        cols["job_id"].append(key[1])
        cols["version_id"].append(key[2])
        cols["position"].append(pos)

    def _parameters(self, value, key):
        # The hottest child table (~12 per version): the usual shape takes _plain_parameters; the
        # careful loop below is inlined, with paths only built for issues.
        if value is None:
            return
        if type(value) is list:
            plain = _plain_parameters(value, self.redact)
            if plain is not None:
                cols = self.parameters
                _extend_keys(cols, key, len(value))
                cols["label"].extend(plain[0])
                cols["value"].extend(plain[1])
                cols["value_number"].extend(plain[2])
                return
        items = value if type(value) is list else self._list(value, "parameter", "parameters")
        cols, issues = self.parameters, self.issues
        redact = self.redact
        project_id, job_id, version_id = key
        add_project, add_job, add_version = cols["project_id"].append, cols["job_id"].append, cols["version_id"].append
        add_position, add_label = cols["position"].append, cols["label"].append
        add_value, add_number = cols["value"].append, cols["value_number"].append
        for pos, item in enumerate(items):
            if not isinstance(item, dict):
                issues.add("parameters", f"parameter[{pos}]", item, "wrong_type")
                continue
            if not item.keys() <= _PARAMETER_KEYS:
                for extra in item.keys() - _PARAMETER_KEYS:
                    issues.add("parameters", f"parameter[{pos}].{extra}", item[extra], "unknown_field")
            add_project(project_id)
            add_job(job_id)
            add_version(version_id)
            add_position(pos)
            label = item.get("label")
            if label is not None and type(label) is not str:
                label = _to_str(label, f"parameter[{pos}].label", "parameters", issues)
            raw = item.get("value")
            if type(raw) is str:
                text, number = raw, (_cached_number(raw) if raw else None)
            else:
                text, number = self._parameter_value(raw, pos, redact and is_secret_label(label))
            if redact and text is not None and is_secret_label(label):
                text, number = MASK, None
            add_label(label)
            add_value(text)
            add_number(number)

    def _parameter_value(self, raw, pos, secret: bool = False):
        """A parameter value that is not a plain string: (text, number); `secret` masks it in field_issues."""
        issues = self.issues
        if raw is None or isinstance(raw, str):
            text, number = raw, (parse_number(raw) if raw else None)
        elif isinstance(raw, (int, float)):
            text = number_text(raw)
            number = None if isinstance(raw, bool) or not math.isfinite(raw) else float(raw)
        else:
            issues.add("parameters", f"parameter[{pos}].value", MASK if secret else raw, "wrong_type")
            text = number = None
        return text, number

    def _data_sources(self, value, key):
        cols, issues = self.data_sources, self.issues
        for pos, path, item in self._items(value, "data_source", "data_sources", _DATA_SOURCE_KEYS):
            self._append_key(cols, key, pos)
            for field in ("type", "dataset_id", "dataset_version", "data_url"):
                cols[field].append(_to_str(item.get(field), f"{path}.{field}", "data_sources", issues))

    def _volumes(self, value, key):
        cols, issues = self.volumes, self.issues
        plain = _plain_volumes(value) if type(value) is list else None
        if plain is not None:
            _extend_keys(cols, key, len(plain))
            for kind, body in plain:
                cols["volume_type"].append(kind)
                cols["nfs_id"].append(body.get("id") if kind == "nfs" else None)
                cols["src_path"].append(body.get("src_path"))
                cols["dest_path"].append(body.get("dest_path"))
                cols["read_only"].append(body.get("read_only") is True)
            return
        for pos, path, item in self._items(value, "volumes", "volumes", frozenset({"nfs", "host_path"})):
            kinds = [k for k in ("nfs", "host_path") if isinstance(item.get(k), dict)]
            if len(kinds) != 1:
                issues.add("volumes", path, item, "wrong_type")
                continue
            kind = kinds[0]
            body = item[kind]
            known = _NFS_KEYS if kind == "nfs" else _HOST_PATH_KEYS
            for extra in body.keys() - known:
                issues.add("volumes", f"{path}.{kind}.{extra}", body[extra], "unknown_field")
            self._append_key(cols, key, pos)
            cols["volume_type"].append(kind)
            cols["nfs_id"].append(_to_str(body.get("id"), f"{path}.{kind}.id", "volumes", issues) if kind == "nfs" else None)
            cols["src_path"].append(_to_str(body.get("src_path"), f"{path}.{kind}.src_path", "volumes", issues))
            cols["dest_path"].append(_to_str(body.get("dest_path"), f"{path}.{kind}.dest_path", "volumes", issues))
            read_only = _to_bool(body.get("read_only"), f"{path}.{kind}.read_only", "volumes", issues)
            cols["read_only"].append(False if read_only is None and body.get("read_only") is None else read_only)

    def _model_metrics(self, value, key):
        v, issues = self.versions, self.issues
        totals = {}
        parsed = self._decode_embedded(value, "model_metric_list", "class_metrics")
        if parsed is not None:
            cols = self.class_metrics
            metric = parsed.get("metric")
            plain = _plain_class_metrics(metric) if type(metric) is list else None
            if plain is not None:
                _extend_keys(cols, key, len(metric))
                for name, column in zip(("class_id", "class_name", "recall", "precision", "accuracy"), plain):
                    cols[name].extend(column)
                metric = None
            for pos, path, item in self._items(metric, "model_metric_list.metric", "class_metrics",
                                               _CLASS_METRIC_KEYS):
                values = self._object(item.get("metric_values"), f"{path}.metric_values")
                meta = self._object(item.get("metric_meta"), f"{path}.metric_meta")
                self._append_key(cols, key, pos)
                cols["class_id"].append(_to_int(meta.get("class_id"), _INT64, f"{path}.metric_meta.class_id", "class_metrics", issues))
                cols["class_name"].append(_to_str(meta.get("class_name"), f"{path}.metric_meta.class_name", "class_metrics", issues))
                for name in ("recall", "precision", "accuracy"):
                    cols[name].append(_to_float(values.get(name), f"{path}.metric_values.{name}", "class_metrics", issues))
            total = self._object(parsed.get("total_metric"), "model_metric_list.total_metric")
            totals = self._object(total.get("total_metric_values"), "model_metric_list.total_metric.total_metric_values")
        for name, column in _TOTAL_COLUMNS:
            total = totals.get(name)
            if not _plain_float(total):
                total = _to_float(total, f"model_metric_list.total_metric.total_metric_values.{name}", "job_versions", issues)
            v[column].append(total)

    def _object(self, value, field) -> dict:
        if isinstance(value, dict):
            return value
        if value is not None:
            self.issues.add("class_metrics", field, value, "wrong_type")
        return {}

    def _decode_embedded(self, value, field, table) -> dict | None:
        """A JSON document sent as a string (or, in some editions, as an object)."""
        if value is None or value == "":
            return None
        if isinstance(value, dict):
            return value
        if not isinstance(value, str):
            self.issues.add(table, field, value, "wrong_type")
            return None
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            self.issues.add(table, field, value, "invalid_json")
            return None
        if not isinstance(parsed, dict):
            self.issues.add(table, field, value, "wrong_type")
            return None
        return parsed

    def _system_metrics(self, value, row):
        v = self.versions
        interval = None
        metrics = self._decode_embedded(value, "system_metric_list", "system_metric_samples")
        for name, samples in (metrics or {}).items():
            if name == "interval":
                interval = _to_str(samples, "system_metric_list.interval", "job_versions", self.issues)
            elif isinstance(samples, list):
                if samples:
                    self.sample_values.extend(samples)
                    self.sample_runs.append((row, name, len(samples)))
            elif samples is not None:
                self.issues.add("system_metric_samples", f"system_metric_list.{name}", samples, "wrong_type")
        v["system_metric_interval"].append(interval)

    def series_table(self) -> pa.Table:
        """One row per metric array, its samples as a list of doubles (what DuckDB stores)."""
        runs = self.sample_runs
        if not runs:
            self.series_rows = np.zeros(0, dtype=np.int64)
            return SERIES_ARROW_SCHEMA.empty_table()
        run_rows, run_names, run_lengths = zip(*runs)
        rows = np.array(run_rows, dtype=np.int64)
        lengths = np.array(run_lengths, dtype=np.int64)
        names = sorted(set(run_names))
        name_index = {n: i for i, n in enumerate(names)}
        name_ids = np.array([name_index[name] for name in run_names], dtype=np.int32)
        self.series_rows = rows
        v = self.versions
        projects = pc.dictionary_encode(pa.array(v["project_id"], pa.string()))
        project = pa.DictionaryArray.from_arrays(pa.array(projects.indices.to_numpy()[rows]), projects.dictionary)
        job = pa.array(np.asarray(v["job_id"], dtype=np.int64)[rows])
        version = pa.array(np.asarray(v["version_id"], dtype=np.int64)[rows])
        metric = pa.DictionaryArray.from_arrays(pa.array(name_ids), pa.array(names, pa.string()))
        self._flush_samples()
        values = self.sample_arrays[0] if len(self.sample_arrays) == 1 else pa.concat_arrays(self.sample_arrays)
        offsets = np.zeros(len(runs) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        samples = pa.ListArray.from_arrays(pa.array(offsets), values)
        return pa.Table.from_arrays([project, job, version, metric, samples], schema=SERIES_ARROW_SCHEMA)

    def _flush_samples(self) -> None:
        runs = self.sample_runs[self._unconverted_runs:]
        if runs:
            self.sample_arrays.append(self._sample_values(self.sample_values, runs))
        self.sample_values = []
        self._unconverted_runs = len(self.sample_runs)

    def _sample_values(self, values: list, runs: list) -> pa.Array:
        """Numeric strings -> doubles in one cast; element by element only if that fails.

        Arrow's cast also reads "nan", "inf" and 1e400; those go the element-by-element way too,
        so they become NULL plus a field issue whichever values share their batch."""
        try:
            cast = pc.cast(pa.array(values, pa.string()), pa.float64())
            if not pc.any(pc.invert(pc.is_finite(cast))).as_py():
                return cast
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
        out = []
        v = self.versions
        current = self.issues.key
        i = 0
        for row, name, length in runs:
            self.issues.key = (v["project_id"][row], v["job_id"][row], v["version_id"][row])
            for idx in range(length):
                out.append(self._sample(values[i], name, idx))
                i += 1
        self.issues.key = current
        return pa.array(out, pa.float64())

    def _sample(self, value, name, idx):
        if type(value) is str:
            number = parse_number(value)
            if number is None:
                self.issues.add("system_metric_samples", f"system_metric_list.{name}[{idx}]", value, "not_a_number")
            return number
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value) if math.isfinite(value) else None
        if value is not None:
            self.issues.add("system_metric_samples", f"system_metric_list.{name}[{idx}]", value, "wrong_type")
        return None

    def tables(self) -> tuple[dict[str, pa.Table], pa.Table]:
        series = self.series_table()  # before field_issues: it may add issues
        scalar_columns = list(zip(*self.scalar_rows)) if self.scalar_rows else [()] * len(_SCALARS)
        for (_, column, _), values in zip(_SCALARS, scalar_columns):
            self.versions[column] = values
        self.versions["deleted_upstream_at"] = [None] * len(self.versions["job_id"])  # set by syncs, not payloads
        built = {
            "job_versions": (schema.JOB_VERSIONS, self.versions),
            "parameters": (schema.PARAMETERS, self.parameters),
            "data_sources": (schema.DATA_SOURCES, self.data_sources),
            "class_metrics": (schema.CLASS_METRICS, self.class_metrics),
            "volumes": (schema.VOLUMES, self.volumes),
            "field_issues": (schema.FIELD_ISSUES, self.issue_cols),
        }
        out = {name: pa.Table.from_pydict(cols, schema=table.schema) for name, (table, cols) in built.items()}
        return out, series


def payload_key(payload: dict, record: RawRecord) -> tuple[str, int, int]:
    """The version's key: the payload's ids when usable, else the request's; else a Rejection."""
    ids = []
    for field, hint in (("job_id", record.job_id), ("version_id", record.version_id)):
        own = _key_id(payload.get(field))
        if own is None and hint is None:
            raise Rejection("validate", "missing_key", f"no usable {field} (got {json_text(payload.get(field))})")
        ids.append(own if own is not None else hint)
    return (record.project_id, ids[0], ids[1])


_RAW_KEY_SCHEMA = pa.schema([
    ("project_id", pa.string()), ("source", pa.string()), ("payload_sha256", pa.string()),
    ("job_id", pa.int64()), ("version_id", pa.int64()),
])


def flatten(records: list[RawRecord], *, redact: bool = True, shas: list[str] | None = None) -> FlatBatch:
    """Flatten a batch. Later records for the same version replace earlier ones."""
    # Decoded payloads are millions of acyclic objects: the cyclic collector would walk
    # them over and over (~20% of the time) for nothing, so it pauses while we flatten.
    paused = gc.isenabled()
    gc.disable()
    try:
        return _flatten(records, redact, shas)
    finally:
        if paused:
            gc.enable()


class _SameVersionTwice(Exception):
    """A batch holds two copies of one version: it is flattened in two passes so the last wins."""


def _flatten(records: list[RawRecord], redact: bool, shas: list[str] | None) -> FlatBatch:
    try:
        return _flatten_streaming(records, redact, shas)
    except _SameVersionTwice:
        return _flatten_two_pass(records, redact, shas)


def _decoded(records: list[RawRecord], shas: list[str] | None, raw: dict, rejected: dict) -> Iterator[tuple]:
    """(payload, key, record, sha) of each usable version record, in order; records every
    body's raw key and every rejection on the way."""
    for n, record in enumerate(records):
        sha = shas[n] if shas is not None else sha256_hex(record.body)
        _append_raw(raw, record, sha)
        if record.kind != VERSION_DETAIL:
            continue
        try:
            payload = decode(record)
            key = payload_key(payload, record)
        except Rejection as rej:
            _append_rejected(rejected, record, sha, rej)
            continue
        raw["job_id"][-1], raw["version_id"][-1] = key[1], key[2]
        yield payload, key, record, sha


def _flatten_streaming(records: list[RawRecord], redact: bool, shas: list[str] | None) -> FlatBatch:
    """One pass, each payload dropped as soon as it is flattened: a batch never holds all its
    decoded payloads at once (they are ~10x the JSON in Python objects)."""
    builder = _Builder(redact)
    raw = {name: [] for name in _RAW_KEY_SCHEMA.names}
    rejected = _empty_cols(schema.REJECTED_PAYLOADS)
    seen: set[tuple] = set()
    for payload, key, record, sha in _decoded(records, shas, raw, rejected):
        if key in seen:
            raise _SameVersionTwice
        seen.add(key)
        _add_version(builder, payload, key, record, sha)
        del payload
    return _finish(builder, raw, rejected)


def _flatten_two_pass(records: list[RawRecord], redact: bool, shas: list[str] | None) -> FlatBatch:
    builder = _Builder(redact)
    raw = {name: [] for name in _RAW_KEY_SCHEMA.names}
    rejected = _empty_cols(schema.REJECTED_PAYLOADS)
    decoded = list(_decoded(records, shas, raw, rejected))
    latest = {key: i for i, (_, key, _, _) in enumerate(decoded)}
    for i, (payload, key, record, sha) in enumerate(decoded):
        if latest[key] == i:
            _add_version(builder, payload, key, record, sha)
    return _finish(builder, raw, rejected)


def _add_version(builder: _Builder, payload: dict, key: tuple, record: RawRecord, sha: str) -> None:
    builder.add_payload(payload, key, record, sha)
    if record.job_id is None and record.version_id is None:
        return  # ids from the payload alone, both usable (else payload_key rejected it): nothing to flag
    for field, hint in (("job_id", record.job_id), ("version_id", record.version_id)):
        own = _key_id(payload.get(field))
        if hint is not None and own is not None and own != hint:
            builder.issues.add("job_versions", field, f"payload {own}, request {hint}", "key_mismatch")
        elif payload.get(field) is not None and own is None:
            builder.issues.add("job_versions", field, payload.get(field), "wrong_type")


def _finish(builder: _Builder, raw: dict, rejected: dict) -> FlatBatch:
    tables, series = builder.tables()
    keys = tables["job_versions"].select(list(schema.VERSION_KEY))
    return FlatBatch(
        raw_keys=pa.Table.from_pydict(raw, schema=_RAW_KEY_SCHEMA),
        rejected=pa.Table.from_pydict(rejected, schema=schema.REJECTED_PAYLOADS.schema),
        tables=tables,
        keys=keys,
        series=series,
        series_rows=builder.series_rows,
        version_rows={name: np.repeat(np.arange(len(ends), dtype=np.int32),
                                      np.diff(np.asarray(ends, dtype=np.int64), prepend=0))
                      for name, ends in builder.child_ends.items()},
    )


def _append_raw(raw: dict, record: RawRecord, sha: str) -> None:
    raw["project_id"].append(record.project_id)
    raw["source"].append(record.source)
    raw["payload_sha256"].append(sha)
    raw["job_id"].append(record.job_id)
    raw["version_id"].append(record.version_id)


def _append_rejected(rejected: dict, record: RawRecord, sha: str, rej: Rejection) -> None:
    rejected["project_id"].append(record.project_id)
    rejected["job_id"].append(record.job_id)
    rejected["version_id"].append(record.version_id)
    rejected["source"].append(record.source)
    rejected["payload_sha256"].append(sha)
    rejected["stage"].append(rej.stage)
    rejected["error_kind"].append(rej.kind)
    rejected["error_message"].append(rej.message[:RAW_VALUE_LIMIT])
    rejected["rejected_at"].append(record.fetched_at)
    rejected["load_id"].append(None)  # set by the store
