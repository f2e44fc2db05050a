"""The faults the simulator can inject, in two families.

Transient faults hit a request (throttling, 5xx, a slow answer, a dropped connection,
a body cut short on the wire): asking again can succeed, so the client must retry.
Payload faults belong to a version's stored body (invalid JSON, `is_success: false`,
wrong field types, unknown fields): asking again gives the same bytes, so the client
must land them and let the warehouse reject or flag them.

Transient faults are decided per (path, n-th request for that path) from the seed, so
a run's faults do not depend on how threads interleave.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

import orjson

TRANSIENT_FAULTS = ("throttle", "server_error", "unavailable", "slow", "drop", "truncated")
PAYLOAD_FAULTS = ("invalid_json", "not_success", "wrong_types", "unknown_fields")


@dataclass(frozen=True)
class TransientFaults:
    """`rate` of requests meet one of `kinds`; after `max_per_path` faults a path is served normally."""

    rate: float = 0.0
    kinds: tuple[str, ...] = TRANSIENT_FAULTS
    seed: int = 0
    max_per_path: int | None = None
    retry_after: int = 1  # seconds, sent with 429
    slow_seconds: float = 5.0  # how long a "slow" answer takes; set it past the client's read timeout
    match: str | None = None  # a regex: only request targets it finds are faulted (e.g. r"/versions/\d+$")

    def __post_init__(self):
        unknown = set(self.kinds) - set(TRANSIENT_FAULTS)
        if unknown:
            raise ValueError(f"unknown transient fault(s): {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(TRANSIENT_FAULTS)}")

    def draw(self, path: str, nth: int, faults_so_far: int) -> str | None:
        """The fault for the nth request (1-based) of `path`, or None."""
        if self.rate <= 0 or not self.kinds:
            return None
        if self.max_per_path is not None and faults_so_far >= self.max_per_path:
            return None
        if self.match is not None and not re.search(self.match, path):
            return None
        rng = random.Random(f"{self.seed}:{path}:{nth}")
        if rng.random() >= self.rate:
            return None
        return rng.choice(self.kinds)


def assign_payload_faults(rng: random.Random, rate: float, kinds: tuple[str, ...]) -> tuple[str, ...]:
    """The payload faults of a new version: none, usually; one kind (rarely two compatible ones) else."""
    if rate <= 0 or not kinds or rng.random() >= rate:
        return ()
    first = rng.choice(kinds)
    if first in ("wrong_types", "unknown_fields") and rng.random() < 0.2:
        other = "unknown_fields" if first == "wrong_types" else "wrong_types"
        if other in kinds:
            return (first, other)
    return (first,)


# (field, wrong value maker): values a sloppy backend edition could send
_WRONG_TYPES = (
    ("duration", lambda r, p: str(p.get("duration"))),  # Long as a numeric string: coercible
    ("gpu_num", lambda r, p: f"{p.get('gpu_num')} GPUs"),  # not a number at all
    ("worker_server_num", lambda r, p: float(p.get("worker_server_num") or 1)),  # 1.0
    ("create_time", lambda r, p: "2021-03-04T05:06:07Z"),  # ISO text where epoch ms is documented
    ("spec_id", lambda r, p: {"id": p.get("spec_id")}),  # an object
    ("parameter", lambda r, p: {i["label"]: i["value"] for i in p.get("parameter") or []}),  # object, not array
    ("volumes", lambda r, p: {"nfs": None}),
    ("model_id", lambda r, p: [p.get("model_id")]),
    ("engine_type", lambda r, p: str(p.get("engine_type"))),
    ("system_metric_list", lambda r, p: ["cpuUsage", "1.0"]),
)

_UNKNOWN_FIELDS = (
    ("billing_mode", lambda r: r.choice((0, 1))),
    ("flavor_detail", lambda r: {"flavor_type": "GPU", "billing": {"code": "modelarts.vm.gpu", "unit_num": 1}}),
    ("autosearch_config", lambda r: None),
    ("training_experiment_reference", lambda r: {"id": f"exp-{r.randint(1000, 9999)}"}),
    ("job_labels", lambda r: ["nightly", "team-a"]),
)


def corrupt(kind: str, payload: dict, rng: random.Random) -> tuple[bytes, str]:
    """The detail body of a version with a payload fault, and a note saying exactly what was done."""
    if kind == "not_success":
        return _not_success(rng)
    if kind == "wrong_types":
        payload = dict(payload)
        picked = rng.sample(_WRONG_TYPES, rng.randint(1, 3))
        for field, make in picked:
            payload[field] = make(rng, payload)
        return orjson.dumps(payload), "wrong_types:" + ",".join(sorted(f for f, _ in picked))
    if kind == "unknown_fields":
        payload = dict(payload)
        picked = rng.sample(_UNKNOWN_FIELDS, rng.randint(1, 2))
        names = [name for name, _ in picked]
        for name, make in picked:
            payload[name] = make(rng)
        if payload.get("data_source"):
            first, *rest = payload["data_source"]
            payload["data_source"] = [dict(first, obs_region="cn-north-4"), *rest]
            names.append("data_source[0].obs_region")
        return orjson.dumps(payload), "unknown_fields:" + ",".join(names)
    if kind == "invalid_json":
        return _invalid_json(orjson.dumps(payload), rng)
    raise ValueError(f"unknown payload fault {kind!r}")


def apply_payload_faults(faults: tuple[str, ...], payload: dict, rng: random.Random) -> tuple[bytes, str]:
    """Apply each fault in turn (only wrong_types + unknown_fields ever combine)."""
    if not faults:
        return orjson.dumps(payload), ""
    if len(faults) == 1:
        return corrupt(faults[0], payload, rng)
    notes = []
    for kind in faults:
        body, note = corrupt(kind, payload, rng)
        payload = orjson.loads(body)
        notes.append(note)
    return body, ";".join(notes)


def _not_success(rng: random.Random) -> tuple[bytes, str]:
    code = rng.choice(("ModelArts.0105", "ModelArts.2775", "ModelArts.0010"))
    message_key = "error_msg" if rng.random() < 0.3 else "error_message"  # older editions say error_msg
    body = {"is_success": False, "error_code": code, message_key: f"simulated failure {code}"}
    return orjson.dumps(body), f"not_success:{code}"


_SPEC_CODE = re.compile(rb'"spec_code":"[^"]*"')


def _invalid_json(body: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Either the documented sample's empty value (`"spec_code": ,`) or a document cut short."""
    if rng.random() < 0.5 and _SPEC_CODE.search(body):
        # the value goes, its comma stays: `"spec_code": ,"start_time": ...` as in the docs
        return _SPEC_CODE.sub(b'"spec_code": ', body, count=1), "invalid_json:empty_value"
    cut = rng.randint(len(body) // 4, (3 * len(body)) // 4)
    return body[:cut], f"invalid_json:cut_at_{cut}"
