"""ModelArts v1 job statuses, and which of them never change again.

The docs do not say which statuses are terminal; this is our reading (see
docs/architecture.md): 10 finished, the failed/stopped ones final, 0 and 20 unclear
and therefore not final, so they are fetched again on the next sync.
"""

STATUS_NAMES: dict[int, str] = {
    0: "UNKNOWN", 1: "INIT", 2: "IMAGE_CREATING", 3: "IMAGE_FAILED", 4: "SUBMIT_TRYING",
    5: "SUBMIT_FAILED", 6: "DELETE_FAILED", 7: "WAITING", 8: "RUNNING", 9: "KILLING",
    10: "COMPLETED", 11: "FAILED", 12: "KILLED", 13: "CANCELED", 14: "LOST", 15: "SCALING",
    16: "SUBMIT_MODEL_FAILED", 17: "DEPLOY_SERVICE_FAILED", 18: "CHECK_INIT",
    19: "CHECK_RUNNING", 20: "CHECK_RUNNING_COMPLETED", 21: "CHECK_FAILED", 22: "MOUNT_FAILED",
}

FINAL_STATUSES: frozenset[int] = frozenset({10, 3, 5, 6, 11, 12, 13, 14, 16, 17, 21, 22})
IN_PROGRESS_STATUSES: frozenset[int] = frozenset({1, 2, 4, 7, 8, 9, 15, 18, 19})


def status_name(code: int | None) -> str | None:
    return None if code is None else STATUS_NAMES.get(code)


def is_final(code: int | None) -> bool:
    return code in FINAL_STATUSES


# The five categories analysis groups statuses into (version_summary.status_category): the
# Job Statuses table read as above. LOST counts as failed (the job died with its node);
# in-progress statuses, WAITING and KILLING included, are "running"; 0, 20 and unknown codes "other".
STATUS_CATEGORIES: dict[str, frozenset[int]] = {
    "succeeded": frozenset({10}),
    "failed": frozenset({3, 5, 6, 11, 14, 16, 17, 21, 22}),
    "stopped": frozenset({12, 13}),
    "running": IN_PROGRESS_STATUSES,
}


def status_category(code: int | None) -> str:
    return next((name for name, codes in STATUS_CATEGORIES.items() if code in codes), "other")


# v2 phases (new-version training). Final: Completed (done); Failed (the run failed and is not
# retried in place: a retry is a new run record, not a phase change back); Terminated (stopped by a
# user); Abnormal (the docs' example: secondary phase CreateFailed, the job never ran). Creating,
# Pending, Running and Terminating can still change, and so can any phase the docs do not list.
FINAL_PHASES: frozenset[str] = frozenset({"Completed", "Failed", "Terminated", "Abnormal"})
PHASES: tuple[str, ...] = ("Creating", "Pending", "Running", "Failed", "Completed", "Terminating", "Terminated",
                           "Abnormal")


# The same five categories for v2 phases: Abnormal (the job never ran) counts as failed, Terminated
# (stopped by a user) as stopped, every phase that can still change as running.
PHASE_CATEGORIES: dict[str, frozenset[str]] = {
    "succeeded": frozenset({"Completed"}),
    "failed": frozenset({"Failed", "Abnormal"}),
    "stopped": frozenset({"Terminated"}),
    "running": frozenset({"Creating", "Pending", "Running", "Terminating"}),
}


def is_final_phase(phase: str | None) -> bool:
    return phase in FINAL_PHASES


def phase_category(phase: str | None) -> str:
    return next((name for name, phases in PHASE_CATEGORIES.items() if phase in phases), "other")
