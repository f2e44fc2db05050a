"""The simulated account: projects, jobs, versions, and a clock that moves only when told.

Why a clock under our control: incremental sync is about what changed between two
runs. `advance()` finishes running versions, adds versions and jobs, and says exactly
which ones, so a test can compare what the client fetched with what changed.

Payload bytes are generated on first request and cached (bounded) per version revision.
"""
from __future__ import annotations

import random
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import orjson

from pipelines.modelarts.simulator.faults import PAYLOAD_FAULTS, apply_payload_faults, assign_payload_faults
from pipelines.modelarts.simulator.generator import (
    ACTIVE_STATUS_WEIGHTS, DEFAULT_PROJECT_ID, FINAL_STATUS_WEIGHTS, NOT_STARTED, generate_version, job_profile,
    list_item, plant_secrets, weighted_choice,
)
from warehouse.statuses import FINAL_STATUSES

START_MS = 1_672_531_200_000  # the simulated "now" at start: 2023-01-01T00:00:00Z
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
FINISHED_WEIGHTS = {10: 80, 11: 15, 12: 5}  # how running versions end

Key = tuple[str, int, int]  # (project_id, job_id, version_id)


@dataclass
class SimVersion:
    project_id: str
    job_id: int
    version_id: int
    index: int
    pre_version_id: int
    seed: int
    create_ms: int
    start_ms: int | None
    status: int
    duration_ms: int  # for final versions; running ones run from start_ms to now
    finishes_ms: int | None  # when a non-final version turns final
    final_status: int | None
    faults: tuple[str, ...]
    revision: int = 0

    @property
    def key(self) -> Key:
        return (self.project_id, self.job_id, self.version_id)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass
class SimJob:
    project_id: str
    job_id: int
    profile: dict
    create_ms: int
    versions: list[SimVersion] = field(default_factory=list)


@dataclass(frozen=True)
class VersionTruth:
    """What the simulator holds for one version, for ledger tests."""

    project_id: str
    job_id: int
    version_id: int
    status: int
    is_final: bool
    faults: tuple[str, ...]  # payload faults, see faults.PAYLOAD_FAULTS
    fault_note: str  # exactly what was corrupted, e.g. "wrong_types:duration,gpu_num"

    @property
    def key(self) -> Key:
        return (self.project_id, self.job_id, self.version_id)


@dataclass(frozen=True)
class Changes:
    """What one `advance()` did."""

    finished: tuple[Key, ...]
    new: tuple[Key, ...]
    still_running: tuple[Key, ...]

    @property
    def changed(self) -> set[Key]:
        return set(self.finished) | set(self.new) | set(self.still_running)


class World:
    """Thread-safe: the server's handler threads read while a test advances the clock."""

    def __init__(self, *, projects: tuple[str, ...] | list[str] = (DEFAULT_PROJECT_ID,), jobs: int = 20,
                 versions_per_job: int | tuple[int, int] = (1, 8), seed: int = 0, running_share: float = 0.2,
                 payload_fault_rate: float = 0.0, payload_faults: tuple[str, ...] = PAYLOAD_FAULTS,
                 cache_size: int = 4096, secret_share: float = 0.0):
        unknown = set(payload_faults) - set(PAYLOAD_FAULTS)
        if unknown:
            raise ValueError(f"unknown payload fault(s): {', '.join(sorted(unknown))}")
        self._lock = threading.RLock()
        self._rng = random.Random(seed)
        self._seed = seed
        self._secret_share = secret_share  # share of jobs with planted secrets (generator.plant_secrets)
        self._planted: set[str] = set()
        self._now = START_MS
        self._running_share = running_share
        self._fault_rate, self._fault_kinds = payload_fault_rate, tuple(payload_faults)
        if isinstance(versions_per_job, int):
            versions_per_job = (versions_per_job, versions_per_job)
        self._versions_per_job = versions_per_job
        self._next_job_id = 10_000 + self._rng.randint(0, 999)
        self._next_version_id = 100_000 + self._rng.randint(0, 9_999)
        self._jobs: dict[str, dict[int, SimJob]] = {p: {} for p in projects}
        self._cache: OrderedDict[Key, tuple[int, bytes, bytes, str]] = OrderedDict()
        self._cache_size = cache_size
        for project_id in projects:
            for _ in range(jobs):
                self._create_job(project_id, self._rng.randint(*self._versions_per_job), fresh=False)

    # -- building ----------------------------------------------------------------
    def _create_job(self, project_id: str, n_versions: int, *, fresh: bool) -> SimJob:
        rng = self._rng
        job_id = self._take_job_id()
        latest_ms = self._now - (rng.randint(0, 6 * HOUR_MS) if fresh else rng.randint(HOUR_MS, 60 * DAY_MS))
        gaps = [rng.randint(HOUR_MS, 7 * DAY_MS) for _ in range(n_versions - 1)]
        times = [latest_ms - sum(gaps)]
        for gap in gaps:
            times.append(times[-1] + gap)
        job = SimJob(project_id, job_id, job_profile(random.Random(rng.getrandbits(64)), job_id),
                     times[0] - rng.randint(0, HOUR_MS))
        if self._secret_share > 0:  # its own random stream: worlds without secrets stay as they were
            secrets_rng = random.Random(f"{self._seed}:{project_id}:{job_id}:secrets")
            if secrets_rng.random() < self._secret_share:
                self._planted.update(plant_secrets(secrets_rng, job.profile))
        self._jobs[project_id][job_id] = job
        for index, create_ms in enumerate(times, start=1):
            active = fresh or (index == n_versions and rng.random() < self._running_share)
            self._add_version(job, create_ms, active=active)
        return job

    def _take_job_id(self) -> int:
        self._next_job_id += self._rng.randint(1, 9)
        return self._next_job_id

    def _add_version(self, job: SimJob, create_ms: int, *, active: bool) -> SimVersion:
        rng = self._rng
        self._next_version_id += rng.randint(1, 9)
        status = weighted_choice(rng, ACTIVE_STATUS_WEIGHTS if active else FINAL_STATUS_WEIGHTS)
        started = status not in NOT_STARTED
        start_ms = create_ms + rng.randint(5_000, 15 * 60_000) if started else None
        if active:
            start_ms = min(start_ms, self._now) if start_ms is not None else None
            duration_ms = 0
            finishes_ms = self._now + rng.randint(10 * 60_000, 12 * HOUR_MS)
            final_status = weighted_choice(rng, FINISHED_WEIGHTS)
        else:
            duration_ms = rng.randint(60_000, 3 * DAY_MS) if started else 0
            finishes_ms = final_status = None
        previous = job.versions[-1].version_id if job.versions else 0
        version = SimVersion(job.project_id, job.job_id, self._next_version_id, len(job.versions) + 1, previous,
                             rng.getrandbits(64), create_ms, start_ms, status, duration_ms, finishes_ms, final_status,
                             assign_payload_faults(rng, self._fault_rate, self._fault_kinds))
        job.versions.append(version)
        return version

    # -- the clock ---------------------------------------------------------------
    @property
    def now_ms(self) -> int:
        return self._now

    def advance(self, seconds: float = 3600, *, new_versions: int | None = None,
                new_jobs: int | None = None) -> Changes:
        """Move the clock: due versions finish, running ones progress, new versions and jobs appear.

        With `new_versions`/`new_jobs` left as None they are drawn: per day, about half the
        jobs get a new version and each project gets about one new job.
        """
        with self._lock:
            rng = self._rng
            self._now += int(seconds * 1000)
            finished, running = [], []
            for job in self._all_jobs():
                for v in job.versions:
                    if v.is_final:
                        continue
                    v.revision += 1
                    if v.finishes_ms <= self._now:
                        self._finish(v)
                        finished.append(v.key)
                    else:
                        running.append(v.key)
            days = seconds / 86_400
            if new_versions is None:
                new_versions = sum(rng.random() < min(1.0, days * 0.5) for _ in self._all_jobs())
            if new_jobs is None:
                new_jobs = sum(rng.random() < min(1.0, days) for _ in self._jobs)
            new = []
            jobs = list(self._all_jobs())
            for _ in range(new_versions if jobs else 0):
                job = rng.choice(jobs)
                new.append(self._add_version(job, self._now - rng.randint(0, 30 * 60_000), active=True).key)
            for _ in range(new_jobs):
                job = self._create_job(rng.choice(sorted(self._jobs)), 1, fresh=True)
                new.append(job.versions[0].key)
            return Changes(tuple(finished), tuple(new), tuple(running))

    def _finish(self, v: SimVersion) -> None:
        if v.start_ms is None:
            v.start_ms = v.create_ms + 60_000
        v.status = v.final_status
        v.duration_ms = max(0, v.finishes_ms - v.start_ms)
        v.finishes_ms = None

    def finish_all(self) -> Changes:
        """Advance far enough that every running version is final, adding nothing new."""
        with self._lock:
            due = [v.finishes_ms for job in self._all_jobs() for v in job.versions if not v.is_final]
            seconds = max([(d - self._now) / 1000 for d in due] + [0]) + 1
            return self.advance(seconds, new_versions=0, new_jobs=0)

    # -- reading -----------------------------------------------------------------
    @property
    def project_ids(self) -> list[str]:
        return list(self._jobs)

    def has_project(self, project_id: str) -> bool:
        return project_id in self._jobs

    def _all_jobs(self):
        for jobs in self._jobs.values():
            yield from jobs.values()

    def job_list_items(self, project_id: str) -> list[dict]:
        """The `jobs[]` entries of the job list, oldest job first (callers sort)."""
        with self._lock:
            return [self._job_item(job) for job in self._jobs[project_id].values()]

    def _job_item(self, job: SimJob) -> dict:
        latest = job.versions[-1]
        return {
            "job_id": job.job_id, "job_name": job.profile["job_name"], "version_id": latest.version_id,
            "status": latest.status, "create_time": job.create_ms, "duration": self._duration(latest),
            "job_desc": job.profile["job_desc"], "version_count": len(job.versions),
        }

    def delete_job(self, project_id: str, job_id: int) -> SimJob:
        """The job and its versions vanish from every endpoint, as after a DELETE; returns it for restore_job."""
        with self._lock:
            return self._jobs[project_id].pop(job_id)

    def restore_job(self, project_id: str, job: SimJob) -> None:
        with self._lock:
            self._jobs[project_id][job.job_id] = job

    def job(self, project_id: str, job_id: int) -> SimJob | None:
        return self._jobs.get(project_id, {}).get(job_id)

    def version_items(self, project_id: str, job_id: int) -> list[bytes] | None:
        """The job's versions as versions-list items (JSON bytes), newest first; None if no such job."""
        with self._lock:
            job = self.job(project_id, job_id)
            if job is None:
                return None
            return [self._bodies(job, v)[2] for v in reversed(job.versions)]

    def detail(self, project_id: str, job_id: int, version_id: int) -> bytes | None:
        """The version-detail body, payload faults included; None if no such version."""
        with self._lock:
            job = self.job(project_id, job_id)
            version = next((v for v in job.versions if v.version_id == version_id), None) if job else None
            return None if version is None else self._bodies(job, version)[1]

    def _duration(self, v: SimVersion) -> int:
        if v.is_final or v.start_ms is None:
            return v.duration_ms
        return max(0, self._now - v.start_ms)

    def _bodies(self, job: SimJob, v: SimVersion) -> tuple[int, bytes, bytes, str]:
        """(revision, detail body, list item, fault note), generated once per revision."""
        cached = self._cache.get(v.key)
        if cached is not None and cached[0] == v.revision:
            self._cache.move_to_end(v.key)
            return cached
        payload = self._payload(job, v)
        item = orjson.dumps(list_item(payload))
        detail, note = apply_payload_faults(v.faults, payload, random.Random(f"{v.seed}:{v.revision}:faults"))
        entry = (v.revision, detail, item, note)
        self._cache[v.key] = entry
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return entry

    def _payload(self, job: SimJob, v: SimVersion) -> dict:
        """The version's detail as generated, before any payload fault."""
        return generate_version(
            random.Random(v.seed), v.project_id, v.job_id, v.version_id, profile=job.profile, status=v.status,
            version_index=v.index, pre_version_id=v.pre_version_id, create_time=v.create_ms,
            start_time=v.start_ms, duration=self._duration(v),
        )

    def payload(self, project_id: str, job_id: int, version_id: int) -> dict | None:
        """The clean payload of a version now (what its detail says before payload faults), for ledger tests."""
        with self._lock:
            job = self.job(project_id, job_id)
            version = next((v for v in job.versions if v.version_id == version_id), None) if job else None
            return None if version is None else self._payload(job, version)

    def planted_secrets(self) -> set[str]:
        """Every secret value planted in jobs' parameters and user_command (see World(secret_share=...))."""
        with self._lock:
            return set(self._planted)

    def prewarm(self) -> int:
        """Generate every version's bodies now (up to the cache size), so that serving costs no CPU.

        Why: generation runs under the world's lock, so a cold cache adds a serialized
        millisecond or two per version to the simulator's answers; a benchmark of the
        client should measure latency, not the simulator's generator.
        """
        with self._lock:
            count = 0
            for job in self._all_jobs():
                for v in job.versions:
                    if count >= self._cache_size:
                        return count
                    self._bodies(job, v)
                    count += 1
            return count

    def truth(self, project_id: str | None = None) -> list[VersionTruth]:
        """Every version that exists now, with its status and the payload faults injected into it."""
        with self._lock:
            out = []
            for job in self._all_jobs():
                if project_id is not None and job.project_id != project_id:
                    continue
                for v in job.versions:
                    note = self._bodies(job, v)[3] if v.faults else ""
                    out.append(VersionTruth(v.project_id, v.job_id, v.version_id, v.status, v.is_final, v.faults, note))
            return out

    def version_count(self) -> int:
        with self._lock:
            return sum(len(job.versions) for job in self._all_jobs())
