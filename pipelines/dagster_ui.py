"""The Dagster UI as a user starts it (`dg dev`), on loopback, and a few calls to its GraphQL API.

A dev tool, like the simulator: the tests launch runs, checks and backfills through
it exactly as the UI's buttons do, and `scripts/take_screenshots.py` points a
headless browser at it. Nothing in the runtime imports this module.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
LOCATION = "modelarts_etl"
REPOSITORY = "__repository__"  # the one Definitions of a code location
ASSET_JOB = "__ASSET_JOB"  # the implicit job the UI's "Materialize" and "Execute" buttons launch
DONE = {"SUCCESS", "FAILURE", "CANCELED"}

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
RUN = "query Run($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"
RUN_TIMES = "query Run($id: ID!) { runOrError(runId: $id) { ... on Run { creationTime startTime endTime } } }"
ACTIVE_RUNS = """
query { runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED, CANCELING]}) {
  ... on Runs { results { runId } } } }"""
BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
  }
}"""
BACKFILL_STATUS = """
query Backfill($id: String!) { partitionBackfillOrError(backfillId: $id) {
  __typename ... on PartitionBackfill { status runs(limit: 20) { runId status } } } }"""
CHECKS = """
query Checks($keys: [AssetKeyInput!]) { assetNodes(assetKeys: $keys) {
  assetKey { path }
  assetChecksOrError { ... on AssetChecks { checks { name canExecuteIndividually } } } } }"""


class DagsterUIError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DagsterUI:
    """`dg dev` in the repository root (webserver, daemon, code server), stopped as a process group."""

    def __init__(self, env: dict[str, str], port: int | None = None, log: Path | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = {**env, "VIRTUAL_ENV": str(Path(sys.executable).parents[1])}
        self._log = log
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> "DagsterUI":
        dg = str(Path(sys.executable).parent / "dg")
        out = open(self._log, "wb") if self._log else subprocess.DEVNULL
        self._proc = subprocess.Popen([dg, "dev", "--port", str(self.port), "--host", "127.0.0.1"], cwd=ROOT,
                                      env=self._env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()
        return self

    def __exit__(self, *exc) -> None:
        if self._proc and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()

    def _wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise DagsterUIError(f"dg dev exited with {self._proc.returncode} (log: {self._log})")
            try:
                if self.query("{ repositoriesOrError { ... on RepositoryConnection { nodes { name } } } }"
                              )["repositoriesOrError"].get("nodes"):
                    return
            except (requests.RequestException, DagsterUIError):
                pass
            time.sleep(0.5)
        raise DagsterUIError(f"dg dev did not serve its code location within {timeout:.0f} s (log: {self._log})")

    def query(self, text: str, variables: dict | None = None) -> dict:
        answer = requests.post(f"{self.url}/graphql", json={"query": text, "variables": variables or {}},
                               timeout=30).json()
        if answer.get("errors"):
            raise DagsterUIError(str(answer["errors"])[:2000])
        return answer["data"]

    def launch(self, assets: list[list[str]] = (), checks: list[tuple[list[str], str]] = (),
               partition: str | None = None, job: str | None = None) -> str:
        """What "Materialize" (assets) or "Execute" (checks) does, or launching `job` whole; the run id."""
        selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "pipelineName": job or ASSET_JOB}
        if not job:
            selector.update(assetSelection=[{"path": p} for p in assets],
                            assetCheckSelection=[{"assetKey": {"path": p}, "name": n} for p, n in checks])
        params = {
            "selector": selector,
            "mode": "default",
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}] if partition else []},
        }
        answer = self.query(LAUNCH, {"params": params})["launchPipelineExecution"]
        if answer["__typename"] != "LaunchRunSuccess":
            raise DagsterUIError(f"launch refused: {answer}")
        return answer["run"]["runId"]

    def run_times(self, run_id: str) -> dict[str, float]:
        """creationTime (launched), startTime (its worker began), endTime, as Unix seconds."""
        return self.query(RUN_TIMES, {"id": run_id})["runOrError"]

    def wait_run(self, run_id: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.query(RUN, {"id": run_id})["runOrError"].get("status")
            if status in DONE:
                return status
            time.sleep(0.5)
        raise DagsterUIError(f"run {run_id} not done within {timeout:.0f} s")

    def backfill(self, assets: list[list[str]], partitions: list[str]) -> str:
        params = {"partitionNames": partitions, "assetSelection": [{"path": p} for p in assets],
                  "fromFailure": False}
        answer = self.query(BACKFILL, {"params": params})["launchPartitionBackfill"]
        if answer["__typename"] != "LaunchBackfillSuccess":
            raise DagsterUIError(f"backfill refused: {answer}")
        return answer["backfillId"]

    def wait_backfill(self, backfill_id: str, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            backfill = self.query(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
            if backfill["status"] not in ("REQUESTED", "CANCELING"):
                return backfill
            time.sleep(1)
        raise DagsterUIError(f"backfill {backfill_id} not done within {timeout:.0f} s")

    def wait_idle(self, timeout: float = 180) -> None:
        """Until no run is queued or running (the automation sensor may have launched some)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.query(ACTIVE_RUNS)["runsOrError"]["results"]:
                return
            time.sleep(1)
        raise DagsterUIError(f"runs still active after {timeout:.0f} s")

    def checks(self, asset: list[str]) -> dict[str, str]:
        """Check name -> whether the UI lets it execute on its own (CAN_EXECUTE) or not."""
        (node,) = self.query(CHECKS, {"keys": [{"path": asset}]})["assetNodes"]
        return {c["name"]: c["canExecuteIndividually"] for c in node["assetChecksOrError"]["checks"]}
