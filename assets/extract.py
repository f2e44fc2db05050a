"""The extraction: a project's new and unfinished versions, fetched and landed raw.

Landing only (no parsing) keeps this step about the API: what was listed, fetched,
skipped, retried, and answered with an error status (`rejected_by_api`). Turning
bytes into tables is `derive_tables`' job, so a parser fix re-runs that step alone
and a parser bug never loses a fetched body; the payloads the parser rejects (bad
JSON, missing keys) are counted there, as `rejected_in_run` on rejected_payloads.
"""

import dagster as dg

from assets.errors import user_errors
from assets.loads import LOAD_IDS, error_answers
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

    def land(self, records, **kwargs) -> LoadReport:
        report = self._wh.land(records, **{**kwargs, "derive": False})
        self.load_ids.append(report.load_id)
        return report

    def mark_deleted_upstream(self, project_id: str, live_job_ids, at) -> int:
        return self._wh.mark_deleted_upstream(project_id, live_job_ids, at)


@dg.asset(
    partitions_def=project_partitions,
    pool=WAREHOUSE_POOL,
    group_name="extract",
    kinds={"python", "duckdb", "parquet"},
    description=schema.RAW_PAYLOADS.doc,
    metadata=definition_metadata("raw_payloads"),
)
def raw_payloads(context: dg.AssetExecutionContext, modelarts: ModelArtsResource,
                 warehouse: WarehouseResource) -> dg.MaterializeResult:
    project_id = context.partition_key
    with user_errors():
        with warehouse.writer() as wh:
            landing = RawLanding(wh)
            report = modelarts.sync(landing, [project_id]).projects[0]
            snapshot = wh.snapshot_id()
        for warning in report.warnings[:20]:
            context.log.warning(warning)
        if report.error:
            raise dg.Failure(description=f"project {project_id}: {report.error}", metadata=sync_metadata(report))
        context.log.info(report.line())
        with warehouse.reader(snapshot=snapshot) as con:  # the lock is released: other partitions can land
            metadata = {**table_metadata(con, "raw_payloads", project_id, snapshot), **sync_metadata(report),
                        "rejected_by_api": error_answers(con, landing.load_ids), LOAD_IDS: landing.load_ids}
    return dg.MaterializeResult(metadata=metadata)


def sync_metadata(report: ProjectReport) -> dict:
    """The counts a data engineer asks about after a sync, under the names the CLI prints."""
    metadata = {
        "listed": report.listed,
        "fetched": report.fetched,
        "skipped_final": report.skipped_final,
        "failed": report.failed,
        "retried": report.retried,
        "requests": report.requests,
        "landed": report.landed,
        "jobs": report.jobs,
        "jobs_unchanged": report.jobs_unchanged,
        "elapsed_s": round(report.elapsed, 2),
    }
    if report.failures:
        metadata["not_fetched"] = dg.MetadataValue.json(report.failures[:20])
    return metadata
