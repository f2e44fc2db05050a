"""The extraction: a project's new and unfinished versions, fetched and landed raw.

Landing only (no parsing) keeps this step about the API: what was listed, fetched,
skipped, retried, and answered with an error status (`rejected_by_api`). Turning
bytes into tables is `derive_tables`' job, so a parser fix re-runs that step alone
and a parser bug never loses a fetched body; the payloads the parser rejects (bad
JSON, missing keys) are counted there, as `rejected_in_run` on rejected_payloads.
"""

import dagster as dg

from assets import conventions
from assets.errors import user_errors
from assets.loads import LOAD_IDS, RAW_PAYLOADS, error_answers
from assets.metadata import definition_metadata, table_metadata
from pipelines.modelarts.sync import ProjectReport
from pipelines.partitions import project_partitions
from pipelines.resources import WAREHOUSE_POOL, ModelArtsResource, WarehouseResource
from warehouse import schema
from warehouse.store import LoadReport, Warehouse


class RawLanding:
    """The warehouse writer as the sync sees it, landing raw bodies without deriving them.

    Also remembers the load id of each landing, so the run can name what it brought.
    (sync_projects lands with the warehouse's default, derive=True; this is the seam.)
    """

    def __init__(self, wh: Warehouse):
        self._wh = wh
        self.load_ids: list[str] = []

    def version_states(self, project_id: str) -> dict[tuple[int, int], bool]:
        return self._wh.version_states(project_id)

    def v2_job_states(self, project_id: str) -> dict:
        return self._wh.v2_job_states(project_id)

    def v2_listed_jobs(self, project_id: str) -> dict:
        return self._wh.v2_listed_jobs(project_id)

    def land(self, records, **kwargs) -> LoadReport:
        report = self._wh.land(records, **{**kwargs, "derive": False})
        self.load_ids.append(report.load_id)
        return report

    def mark_deleted_upstream(self, project_id: str, live_job_ids, at) -> int:
        return self._wh.mark_deleted_upstream(project_id, live_job_ids, at)


MODELARTS_API = dg.AssetSpec(
    conventions.key("api"),
    description="The ModelArts training-job APIs of the configured endpoint, per project: v1 "
                "(`GET /v1/{project_id}/training-jobs`, its versions and each version's detail) and v2 (the job "
                "search, each job's detail, its tasks' metrics and its events). Not materialized here: it is where "
                "raw_payloads comes from.",
    group_name=conventions.RAW_GROUP,
    kinds={"api"},
    owners=conventions.owners(),
    tags=conventions.tags("source"),
    partitions_def=project_partitions,
)
"""The source, as an external asset: the graph starts at the API, and lineage says where bytes come from."""


@dg.asset(
    key=RAW_PAYLOADS,
    deps=[MODELARTS_API],
    partitions_def=project_partitions,
    pool=WAREHOUSE_POOL,
    group_name=conventions.RAW_GROUP,
    kinds={"python", "ducklake", "parquet"},
    owners=conventions.owners(),
    tags=conventions.tags("raw"),
    freshness_policy=conventions.RAW_FRESHNESS,
    description=schema.RAW_PAYLOADS.doc,
    metadata=definition_metadata("raw_payloads"),
)
def raw_payloads(context: dg.AssetExecutionContext, modelarts: ModelArtsResource,
                 warehouse: WarehouseResource) -> dg.MaterializeResult:
    project_id = context.partition_key
    with user_errors(), warehouse.writer(projects=[project_id]) as wh:
        landing = RawLanding(wh)
        report = modelarts.sync(landing, [project_id]).projects[0]
        if report.error:
            wh.discard_if_empty()  # a first sync that failed leaves no empty warehouse behind
        # read under the lock, on the writer's own connection: the lake as just committed, without
        # the ~0.3 s a second connection costs
        snapshot = wh.snapshot_id()
        metadata = {**table_metadata(wh.con, "raw_payloads", project_id, snapshot), **sync_metadata(report),
                    "rejected_by_api": error_answers(wh.con, landing.load_ids), LOAD_IDS: landing.load_ids}
    for warning in report.warnings[:20]:
        context.log.warning(warning)
    if report.error:
        raise dg.Failure(description=f"project {project_id}: {report.error}", metadata=sync_metadata(report))
    context.log.info(report.line())
    return dg.MaterializeResult(metadata=metadata)


def sync_metadata(report: ProjectReport) -> dict:
    """The counts a data engineer asks about after a sync; each key is explained in docs/dagster.md.

    Versions and HTTP bodies are counted apart: a sync lands list pages too, so
    `raw_bodies_landed` is usually more than `versions_fetched`.
    """
    metadata = {
        "jobs_listed": report.jobs,
        "jobs_unchanged": report.jobs_unchanged,
        "versions_listed": report.listed,
        "versions_fetched": report.fetched,
        "versions_skipped_final": report.skipped_final,
        "versions_not_fetched": report.failed,
        "raw_bodies_landed": report.landed,
        "requests": report.requests,
        "requests_retried": report.retried,
        "elapsed_s": round(report.elapsed, 2),
    }
    if report.failures:
        metadata["not_fetched"] = dg.MetadataValue.json(report.failures[:20])
    return metadata
