"""The simulated v2 (new-version training) account: jobs with UUID ids, their details, metrics and events.

Shapes follow the four reference pages (shared/seed/v2), with the quirks that matter:
-1 metrics (no data: GPU metrics of CPU flavors, the first minutes), heterogeneous tasks,
tokens in endpoints, sensitive parameters and credentials in the command and environments
(`secret_share`), unknown fields, running records in seconds, and the payload faults of
v1 (faults.PAYLOAD_FAULTS; `not_success` is an HTTP 400 with a ModelArts error, as v2 answers).
The clock moves only when told (`advance`), as in world.py.
"""
from __future__ import annotations

import random
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import orjson

from pipelines.modelarts.simulator.faults import PAYLOAD_FAULTS, apply_payload_faults, assign_payload_faults
from pipelines.modelarts.simulator.world import HOUR_MS, START_MS
from warehouse.statuses import FINAL_PHASES

DEFAULT_V2_PROJECT_ID = "7c5e1f2a9b3d4e6f8a0b1c2d3e4f5a6b"
METRICS = ("cpuUsage", "memUsage", "gpuUtil", "gpuMemUsage", "npuUtil", "npuMemUsage")
ACTIVE_PHASES = ("Creating", "Pending", "Running", "Terminating")
ENDINGS = {"Completed": 75, "Failed": 15, "Terminated": 7, "Abnormal": 3}
FLAVORS = (  # (flavor_id, flavor_type, cpu cores, memory GB, gpus, npus)
    ("modelarts.vm.cpu.8u", "CPU", 8, 32, 0, 0),
    ("modelarts.vm.pnt1.large.eco", "GPU", 8, 64, 1, 0),
    ("modelarts.vm.gpu.v100.4", "GPU", 32, 256, 4, 0),
    ("modelarts.kat1.8xlarge", "Ascend", 192, 720, 0, 8),
)
ENGINES = (("pytorch-cp36-1.4.0-v2", "PyTorch", "PyTorch-1.4.0-python3.6-v2"),
           ("tensorflow-2.1-v2", "TensorFlow", "TF-2.1.0-python3.6-v2"),
           ("mindspore-1.8-v2", "MindSpore", "MindSpore-1.8.0-python3.7-aarch64"))


@dataclass
class V2Job:
    project_id: str
    job_id: str
    seed: int
    create_ms: int
    phase: str
    finishes_ms: int | None
    ending: str
    faults: tuple[str, ...]
    secrets: bool
    revision: int = 0

    @property
    def is_final(self) -> bool:
        return self.phase in FINAL_PHASES


@dataclass(frozen=True)
class V2Truth:
    """What the simulator holds for one v2 job, for ledger tests."""

    project_id: str
    job_id: str
    phase: str
    is_final: bool
    faults: tuple[str, ...]
    tasks: tuple[str, ...]
    events: int


@dataclass
class V2World:
    """Thread-safe, like World. `offset_reading` is how the search reads `offset` ("page" or "record");
    `repeat_page` makes the search answer every offset with the first page (a broken server)."""

    projects: tuple[str, ...] = (DEFAULT_V2_PROJECT_ID,)
    jobs: int = 10
    seed: int = 0
    running_share: float = 0.3
    payload_fault_rate: float = 0.0
    payload_faults: tuple[str, ...] = PAYLOAD_FAULTS
    secret_share: float = 0.0
    offset_reading: str = "page"
    repeat_page: bool = False
    page_cap: int = 50
    now_ms: int = START_MS
    _jobs: dict[str, dict[str, V2Job]] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._lock = threading.RLock()
        self._rng = random.Random(f"v2:{self.seed}")
        self.planted: set[str] = set()
        for project_id in self.projects:
            self._jobs[project_id] = {}
            for _ in range(self.jobs):
                self._create(project_id, self.now_ms - self._rng.randint(HOUR_MS, 30 * 24 * HOUR_MS))

    def _create(self, project_id: str, create_ms: int, *, active: bool | None = None) -> V2Job:
        rng = self._rng
        active = rng.random() < self.running_share if active is None else active
        job = V2Job(project_id, str(uuid.UUID(int=rng.getrandbits(128), version=4)), rng.getrandbits(64), create_ms,
                    rng.choice(ACTIVE_PHASES) if active else _ending(rng),
                    self.now_ms + rng.randint(10 * 60_000, 6 * HOUR_MS) if active else None, _ending(rng),
                    assign_payload_faults(rng, self.payload_fault_rate, self.payload_faults),
                    rng.random() < self.secret_share)
        self._jobs[project_id][job.job_id] = job
        return job

    # -- the clock -----------------------------------------------------------------
    def advance(self, seconds: float = 3600, *, new_jobs: int = 0) -> dict[str, list[str]]:
        """Due jobs finish, running ones progress, `new_jobs` appear per project."""
        with self._lock:
            self.now_ms += int(seconds * 1000)
            finished, new = [], []
            for job in self._all():
                if job.is_final:
                    continue
                job.revision += 1
                if job.finishes_ms <= self.now_ms:
                    job.phase, job.finishes_ms = job.ending, None
                    finished.append(job.job_id)
                else:
                    job.phase = "Running"
            for project_id in self.projects:
                for _ in range(new_jobs):
                    new.append(self._create(project_id, self.now_ms - self._rng.randint(0, 60_000),
                                            active=True).job_id)
            return {"finished": finished, "new": new}

    def finish_all(self) -> None:
        with self._lock:
            for job in self._all():
                if not job.is_final:
                    job.phase, job.finishes_ms = job.ending, None
                    job.revision += 1

    # -- reading -------------------------------------------------------------------
    def has_project(self, project_id: str) -> bool:
        return project_id in self._jobs

    def _all(self):
        for jobs in self._jobs.values():
            yield from jobs.values()

    def search(self, project_id: str, offset: int, limit: int, created_from: int | None) -> dict:
        with self._lock:
            jobs = sorted((j for j in self._jobs[project_id].values()
                           if created_from is None or j.create_ms >= created_from),
                          key=lambda j: (j.create_ms, j.job_id))
            size = min(limit, self.page_cap)
            start = 0 if self.repeat_page else (offset * size if self.offset_reading == "page" else offset)
            items = [self._payload(j) for j in jobs[start:start + size]]
            return {"total": len(jobs), "count": len(items), "limit": size, "offset": offset,
                    "sort_by": "create_time", "order": "asc", "group_by": "", "workspace_id": "0",
                    "ai_project": "default-ai-project", "items": items}

    def job(self, project_id: str, job_id: str) -> V2Job | None:
        return self._jobs.get(project_id, {}).get(job_id)

    def detail(self, project_id: str, job_id: str) -> tuple[int, bytes] | None:
        """(HTTP status, body) of the detail, payload faults included; None if no such job."""
        with self._lock:
            job = self.job(project_id, job_id)
            if job is None:
                return None
            if "not_success" in job.faults:
                return 400, orjson.dumps({"error_code": "ModelArts.2611", "error_msg": "simulated failure"})
            payload = self._payload(job)
            if "wrong_types" in job.faults:
                payload = wrong_types(payload)
            faults = tuple(f for f in job.faults if f not in ("not_success", "wrong_types"))
            body, _ = apply_payload_faults(faults, payload, random.Random(f"{job.seed}:{job.revision}"))
            return 200, body

    def metrics(self, project_id: str, job_id: str, task: str) -> dict | None:
        with self._lock:
            job = self.job(project_id, job_id)
            if job is None or task not in self._tasks(job):
                return None
            rng = random.Random(f"{job.seed}:{task}:metrics:{job.revision}")
            flavor = self._flavor(job)
            minutes = 0 if job.phase in ("Creating", "Pending") else rng.randint(3, 40)
            out = []
            for metric in METRICS:
                has = metric in ("cpuUsage", "memUsage") or (metric.startswith("gpu") and flavor[4]) \
                    or (metric.startswith("npu") and flavor[5])
                values = [-1 if (i < 2 or not has) else round(rng.uniform(0, 100), 3) for i in range(minutes)]
                out.append({"metric": metric, "value": values})
            return {"metrics": out}

    def events(self, project_id: str, job_id: str, offset: int, limit: int) -> dict | None:
        with self._lock:
            job = self.job(project_id, job_id)
            if job is None:
                return None
            events = self._events(job)
            return {"total": len(events), "limit": limit, "offset": offset, "order": "asc",
                    "events": events[offset:offset + limit]}

    def truth(self, project_id: str | None = None) -> list[V2Truth]:
        with self._lock:
            return [V2Truth(j.project_id, j.job_id, j.phase, j.is_final, j.faults, tuple(self._tasks(j)),
                            len(self._events(j)))
                    for j in self._all() if project_id is None or j.project_id == project_id]

    def payload(self, project_id: str, job_id: str) -> dict | None:
        with self._lock:
            job = self.job(project_id, job_id)
            return None if job is None else self._payload(job)

    # -- generating ----------------------------------------------------------------
    def _flavor(self, job: V2Job) -> tuple:
        return FLAVORS[random.Random(f"{job.seed}:flavor").randrange(len(FLAVORS))]

    def _tasks(self, job: V2Job) -> list[str]:
        count = random.Random(f"{job.seed}:tasks").choice((1, 1, 2, 3))
        return [f"worker-{i}" for i in range(count)]

    def _events(self, job: V2Job) -> list[dict]:
        rng = random.Random(f"{job.seed}:events")  # the same history each time: events only ever add up
        final_count = 3 + random.Random(f"{job.seed}:event-count").randint(0, 150)
        count = {"Creating": 1, "Pending": 2}.get(job.phase, final_count if job.is_final else 4)
        start = job.create_ms // 1000
        return [{"time": _iso(start + 7 * i), "level": rng.choice(("Info", "Info", "Warning")),
                 "message": f"[worker-0] step {i}: {rng.choice(('scheduled', 'pulled image', 'running', 'ok'))}",
                 "source": rng.choice(("Job", "Task", "K8S"))} for i in range(count)]

    def _payload(self, job: V2Job) -> dict:
        rng = random.Random(f"{job.seed}:payload")
        flavor_id, flavor_type, cores, memory, gpus, npus = self._flavor(job)
        engine = rng.choice(ENGINES)
        tasks = self._tasks(job)
        started = job.phase not in ("Creating", "Pending")
        start_ms = job.create_ms + 60_000 if started else 0
        duration = max(0, min(self.now_ms, job.create_ms + 5 * HOUR_MS) - start_ms) if started else 0
        params = [{"name": "learning_rate", "value": str(rng.choice((0.1, 0.01, 0.001))), "description": "lr",
                   "constraint": {"type": "Float", "editable": True, "required": False, "sensitive": False,
                                  "valid_type": "None", "valid_range": []}},
                  {"name": "epochs", "value": str(rng.randint(1, 90))}]
        command = f"python train.py --epochs {rng.randint(1, 90)}"
        envs = [{"MA_NUM_GPUS": str(gpus)}]
        endpoints = {}
        if job.secrets:
            secret = f"s3cr3t-{job.job_id[:8]}"
            token = f"tok-{job.job_id[9:13]}{job.seed % 10_000}"
            self.planted.update({secret, token, f"pw-{job.job_id[-6:]}"})
            params.append({"name": "api_key", "value": secret, "constraint": {"sensitive": True}})
            command += f" --password=pw-{job.job_id[-6:]}"
            envs.append({"HF_TOKEN": secret})
            endpoints = {"jupyter_lab": {"url": f"https://jl.example.com/lab?token={token}", "token": token},
                         "tensorboard": {"url": "https://tb.example.com/", "token": token},
                         "ssh": {"key_pair_names": ["kp-team"],
                                 "task_urls": [{"task": "worker-0", "url": "ssh://ma-user@10.0.0.1:22"}]}}
        payload = {
            "kind": "job",
            "metadata": {"id": job.job_id, "name": f"trainjob-{job.job_id[:8]}", "description": "",
                         "create_time": job.create_ms, "workspace_id": "0", "user_name": "sim-user",
                         "annotations": {"fault-tolerance/job-retry-num": "3"}},
            "status": {"phase": job.phase, "secondary_phase": job.phase, "duration": duration, "start_time": start_ms,
                       "node_count_metrics": [[job.create_ms, 0], [start_ms or job.create_ms, 1]], "tasks": tasks,
                       "task_statuses": [{"task": t, "exit_code": 0 if job.phase == "Completed" else 1,
                                          "message": ""} for t in tasks] if job.is_final else [],
                       "running_records": [{"start_at": start_ms // 1000, "end_at": start_ms // 1000 + duration // 1000,
                                            "start_type": "init_or_rescheduled", "end_reason": "job completed"}]
                       if started else []},
            "algorithm": {"code_dir": "obs://sim/code/", "boot_file": "obs://sim/code/train.py", "command": command,
                          "parameters": params, "environments": envs,
                          "inputs": [{"name": "data_url", "local_dir": "/home/ma-user/modelarts/inputs/data_url_0",
                                      "remote": {"obs": {"obs_url": "/sim/data/"}}}],
                          "outputs": [{"name": "train_url", "local_dir": "/home/ma-user/modelarts/outputs/train_url_0",
                                       "remote": {"obs": {"obs_url": "/sim/output/"}}}],
                          "engine": dict(zip(("engine_id", "engine_name", "engine_version"), engine))},
            "tasks": [{"role": t, "algorithm": {"code_dir": "obs://sim/code/", "boot_file": f"obs://sim/{t}.py"},
                       "task_resource": {"flavor_id": flavor_id, "flavor_type": flavor_type, "max_num": 1,
                                         "attributes": {"role": "worker" if i else "master"}}}
                      for i, t in enumerate(tasks)] if len(tasks) > 1 else [],
            "spec": {"resource": {"policy": "regular", "flavor_id": flavor_id, "node_count": len(tasks),
                                  "flavor_detail": {"flavor_type": flavor_type,
                                                    "billing": {"code": flavor_id, "unit_num": 1},
                                                    "flavor_info": {"cpu": {"arch": "x86", "core_num": cores},
                                                                    "gpu": {"unit_num": gpus, "memory": "32GB"},
                                                                    "memory": {"size": memory, "unit": "GB"}}}}},
            "endpoints": endpoints,
        }
        if rng.random() < 0.2:
            payload["status"]["future_field"] = {"added": "later"}  # an API edition newer than the docs
        return payload


WRONG_TYPES = {"status.duration": "coerced_from_string", "spec.resource.node_count": "not_a_number",
               "metadata.create_time": "not_a_number"}
"""The fields v2's wrong_types fault corrupts, and the field issue each must give."""


def wrong_types(payload: dict) -> dict:
    """A sloppy edition's types: a Long as a numeric string, text where an Integer is, ISO text for epoch ms."""
    payload = orjson.loads(orjson.dumps(payload))
    payload["status"]["duration"] = str(payload["status"]["duration"])
    payload["spec"]["resource"]["node_count"] = f"{payload['spec']['resource']['node_count']} nodes"
    payload["metadata"]["create_time"] = "2023-01-01T00:00:00Z"
    return payload


def _ending(rng: random.Random) -> str:
    names, weights = zip(*ENDINGS.items())
    return rng.choices(names, weights)[0]


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone(timedelta(hours=8))).isoformat()
