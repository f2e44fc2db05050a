"""The two outside things the assets touch: the ModelArts API and the warehouse folder.

Both resources only hold settings and call the library (auth and `sync_projects`
from pipelines.modelarts, `Warehouse` from warehouse), so the CLI and the assets
run the same code.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import dagster as dg
import duckdb
from pydantic import Field, PrivateAttr

from pipelines.modelarts.auth import auth_from_env
from pipelines.modelarts.errors import EndpointError, ProjectError
from pipelines.modelarts.retry import DEFAULT_MAX_RETRY_AFTER, RetryPolicy
from pipelines.modelarts.sync import SyncReport, Target, sync_projects
from pipelines.partitions import project_ids_from_env
from warehouse import lake
from warehouse.reader import connect
from warehouse.store import Warehouse

WAREHOUSE_POOL = "modelarts_warehouse"
"""Dagster concurrency pool of every step that writes the warehouse (extract, derive, maintenance).

Safety comes from the warehouse's file lock, which every writer takes; the pool is
about waiting well. Limit it to 1 (`dagster instance concurrency set
modelarts_warehouse 1`, or `concurrency: pools: default_limit: 1` in dagster.yaml)
and parallel partitions queue in Dagster, visibly, instead of sitting in a step
that waits on the lock (up to `lock_timeout_s`). Checks and the export only read,
so they are not in the pool: a reader never waits for a writer."""

WAREHOUSE_SOURCE = "dagster"
"""What the `loads` ledger names as the source of every snapshot a Dagster step commits."""
EXPORT_PARQUET_DIR_ENV = "MODELARTS_EXPORT_PARQUET_DIR"


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse folder (a DuckLake: SQLite catalog and Parquet data files), and where to export it."""

    folder: str = Field(default="warehouse_data", description="Warehouse folder; relative paths are from the cwd.")
    lock_timeout_s: float = Field(
        default=600.0,
        description="How long a write waits for another writer (CLI, another run) before failing with a clear message.",
    )
    redact: bool = Field(default=True, description="Redact secret-looking parameters and commands in tidy tables.")
    export_parquet_dir: str | None = Field(
        default=None,
        description="If set, every sync ends with a plain Parquet export of the latest snapshot here "
                    f"(EnvVar('{EXPORT_PARQUET_DIR_ENV}')); unset, nothing is exported.",
    )

    @classmethod
    def from_env(cls, folder: str, environ: Mapping[str, str] = os.environ, **overrides) -> "WarehouseResource":
        """The export folder as an EnvVar, and only if the variable is set: an EnvVar naming an
        unset variable would fail every run, and the export is off by default."""
        settings: dict = {"folder": folder}
        if environ.get(EXPORT_PARQUET_DIR_ENV, "").strip():
            settings["export_parquet_dir"] = dg.EnvVar(EXPORT_PARQUET_DIR_ENV)
        return cls(**{**settings, **overrides})

    _lake: duckdb.DuckDBPyConnection | None = PrivateAttr(default=None)
    """The run's one connection with the lake attached: every step of a run (one process, the
    in-process executor) writes and reads on it, in turn, instead of attaching anew (~0.5 s each)."""

    @contextmanager
    def writer(self, projects: list[str] | None = None) -> Iterator[Warehouse]:
        """The one way assets write: the Warehouse takes its locks first (of `projects` only, on a
        shared catalog: partitions then commit side by side), and tags its snapshots
        `source=dagster` in the `loads` ledger. The lock is the step's; the connection is the run's,
        and comes back only from a writer that closed cleanly."""
        con, self._lake = self._lake, None
        with Warehouse(self.folder, lock_timeout=self.lock_timeout_s, redact=self.redact,
                       source=WAREHOUSE_SOURCE, projects=projects, connection=con) as wh:
            yield wh
            self._lake = wh.keep_connection()

    @contextmanager
    def reader(self, snapshot: int | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """Read-only, for checks and metadata, at the latest snapshot or at `snapshot`.

        No lock, unlike the writers: the lake's catalog is SQLite in WAL mode and its
        data files are immutable, so a reader neither waits for a commit nor makes a
        writer wait (DuckDB's single-file rule, which once forced checks under the
        writers' lock, does not apply). A reader sees one whole snapshot, the latest at its
        first query, for all its queries (one read-only transaction). After a
        writer of this run, the reader is a cursor of the run's connection: no attach to
        pay for, and it writes nothing.
        """
        if self._lake is not None and snapshot is None:
            con = self._lake.cursor()
            con.execute(f"USE {lake.ALIAS}")
        else:
            con = connect(self.folder, snapshot=snapshot)  # raises "no warehouse at ..., run a sync first"
        try:
            con.execute("BEGIN TRANSACTION")  # every query at one snapshot, whose catalog is read once
            yield con
        finally:
            con.close()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._lake is not None:
            self._lake.close()
            self._lake = None


SECRET_ENV = {
    "token": "MODELARTS_TOKEN",
    "access_key": "HUAWEICLOUD_SDK_AK",
    "secret_key": "HUAWEICLOUD_SDK_SK",
    "security_token": "HUAWEICLOUD_SDK_SECURITY_TOKEN",
    "iam_password": "MODELARTS_IAM_PASSWORD",
}
"""Resource field -> the environment variable it must come from (the names auth.py documents)."""
IDENTITY_ENV = {"iam_user": "MODELARTS_IAM_USER", "iam_domain": "MODELARTS_IAM_DOMAIN",
                "iam_endpoint": "MODELARTS_IAM_ENDPOINT"}
_TUNING_ENV = (
    ("concurrency", "MODELARTS_CONCURRENCY", int),
    ("rate", "MODELARTS_RATE", float),
    ("read_timeout_s", "MODELARTS_TIMEOUT", float),
    ("max_retries", "MODELARTS_RETRIES", int),
    ("max_retry_after_s", "MODELARTS_MAX_RETRY_AFTER", float),
)


class ModelArtsResource(dg.ConfigurableResource):
    """A ModelArts v1 endpoint and the credentials for it.

    Secrets are fields so the UI shows *where* they come from, but they must be set
    with `dg.EnvVar(...)` (see `from_env`): a plain string would be stored in run
    config and shown in the launchpad. Unset secrets stay None and auth.py picks the
    first complete set, exactly as the CLI does.
    """

    endpoint: str = Field(default="", description="e.g. https://modelarts.cn-north-4.myhuaweicloud.com ($MODELARTS_ENDPOINT)")
    project_ids: list[str] = Field(default_factory=list,
                                   description="Projects this endpoint serves; the partitions come from the same list.")
    concurrency: int = Field(default=8, description="Parallel detail requests per project.")
    rate: float = Field(default=20.0, description="Requests per second per endpoint over all threads; 0 = no limit.")
    max_retries: int = Field(default=5, description="Retries per request on 429, 5xx, timeouts, dropped connections.")
    max_retry_after_s: float = Field(
        default=DEFAULT_MAX_RETRY_AFTER,
        description="Longest Retry-After waited for; a request told to wait longer is left for the next sync "
                    "and reported as not fetched ($MODELARTS_MAX_RETRY_AFTER).",
    )
    connect_timeout_s: float = Field(default=5.0)
    read_timeout_s: float = Field(default=30.0)
    verify_tls: bool = Field(default=True, description="Verify TLS certificates; turn off only for a test endpoint.")
    api: str = Field(default="auto", description="v1, v2, both, or auto (both, skipping one the endpoint does "
                                                 "not serve for the project).")
    token: str | None = Field(default=None, repr=False, description="IAM token: EnvVar('MODELARTS_TOKEN') only.")
    access_key: str | None = Field(default=None, repr=False, description="EnvVar('HUAWEICLOUD_SDK_AK') only.")
    secret_key: str | None = Field(default=None, repr=False, description="EnvVar('HUAWEICLOUD_SDK_SK') only.")
    security_token: str | None = Field(default=None, repr=False, description="EnvVar('HUAWEICLOUD_SDK_SECURITY_TOKEN') only.")
    iam_user: str | None = Field(default=None)
    iam_password: str | None = Field(default=None, repr=False, description="EnvVar('MODELARTS_IAM_PASSWORD') only.")
    iam_domain: str | None = Field(default=None)
    iam_endpoint: str | None = Field(default=None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides) -> "ModelArtsResource":
        """Settings from the environment; each secret as an EnvVar, and only if it is set.

        Only set ones: an EnvVar naming an unset variable fails every run, and a user
        has one kind of credentials, not all three.
        """
        settings: dict = {
            "endpoint": environ.get("MODELARTS_ENDPOINT", "").strip(),
            "project_ids": project_ids_from_env(environ),
        }
        for name, var, convert in _TUNING_ENV:
            if environ.get(var, "").strip():
                settings[name] = convert(environ[var].strip())
        settings.update({f: dg.EnvVar(var) for f, var in SECRET_ENV.items() if environ.get(var, "").strip()})
        settings.update({f: environ[var].strip() for f, var in IDENTITY_ENV.items() if environ.get(var, "").strip()})
        settings.update(overrides)
        return cls(**settings)

    def credentials_env(self) -> dict[str, str]:
        """The credentials in the shape auth.auth_from_env reads, so both paths pick them the same way."""
        fields = {**SECRET_ENV, **IDENTITY_ENV}
        return {var: value for f, var in fields.items() if (value := getattr(self, f))}

    def auth(self):
        """The auth object of the first complete set of credentials (token, AK/SK, IAM password)."""
        if not self.endpoint:
            raise EndpointError("no ModelArts endpoint configured: set MODELARTS_ENDPOINT "
                                "(e.g. https://modelarts.cn-north-4.myhuaweicloud.com)")
        return auth_from_env(self.endpoint, self.credentials_env(), verify=self.verify_tls, timeout=self._timeout)

    def sync(self, wh, project_ids: list[str]) -> SyncReport:
        """`sync_projects` into the open writer `wh`, with this resource's settings; never raises on a
        failed project (the report says which), so the caller decides how a failure shows."""
        unknown = [p for p in project_ids if self.project_ids and p not in self.project_ids]
        if unknown:
            raise ProjectError(f"project(s) {', '.join(unknown)} not in this resource's project_ids "
                               f"({', '.join(self.project_ids)}); set MODELARTS_PROJECT_IDS and reload")
        return sync_projects(
            wh, [Target(self.endpoint, p) for p in project_ids], self.auth(), concurrency=self.concurrency,
            rate=self.rate or None, timeout=self._timeout,
            retry=RetryPolicy(max_retries=self.max_retries, retry_after_max=self.max_retry_after_s),
            verify=self.verify_tls, raise_on_error=False, api=self.api,
        )

    @property
    def _timeout(self) -> tuple[float, float]:
        return (self.connect_timeout_s, self.read_timeout_s)
