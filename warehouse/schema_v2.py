"""The tables of the v2 (new-version training) API, and the views across both API generations.

A v2 job is one run: no versions, a UUID id. Its tables are keyed by
(project_id, training_job_id) and never share rows with the v1 tables; the unified views
in schema_runs.py put both generations side by side.

Each column of a v2 table names the payload path it is read from (`path`, relative to
the list item for child tables) and how it is typed (`kind`), so the flattener
(flatten_v2.py) is driven by this contract alone. A column without a path is computed.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from warehouse.schema import UTC_TS, Column, Table

S, I64, I32, F64, B = pa.string(), pa.int64(), pa.int32(), pa.float64(), pa.bool_()
STRS = pa.list_(pa.string())

# what each kind becomes in Arrow; ts_ms / ts_s are epoch milliseconds / seconds
KIND_TYPES = {"str": S, "int64": I64, "int32": I32, "float": F64, "bool": B, "ts_ms": UTC_TS, "ts_s": UTC_TS,
              "strs": STRS}


@dataclass(frozen=True)
class Field(Column):
    """A column read from `path` in the payload (dots between object keys), typed as `kind`."""

    path: str | None = None
    kind: str = "str"


def _f(name: str, kind: str, doc: str, path: str | None = None) -> Field:
    return Field(name, KIND_TYPES[kind], doc, path=path if path is not None else name, kind=kind)


def computed(name: str, type_: pa.DataType, doc: str) -> Field:
    return Field(name, type_, doc, path=None)


V2_KEY = ("project_id", "training_job_id")
KEY_COLUMNS = (
    computed("project_id", S, "ModelArts project the job was fetched from"),
    computed("training_job_id", S, "v2 training job id (a UUID string; metadata.id, else the request URL's)"),
)
LINEAGE = (
    computed("extracted_at", UTC_TS, "When the detail was fetched (lineage)"),
    computed("payload_sha256", S, "SHA-256 of the raw detail body this row came from (joins raw_payloads)"),
)


@dataclass(frozen=True)
class ChildSpec:
    """Where a child table's rows come from: the list at `list_path` of the detail, one row per item.

    `nested` names a list inside each item: one row per element of that inner list, with
    `parent_position` the outer item's position. `fixed` adds constant columns (e.g. direction).
    """

    list_path: str
    nested: str | None = None
    fixed: tuple[tuple[str, str], ...] = ()


def _child(name: str, doc: str, cols: list[Column], key_extra: tuple[str, ...], *sources: ChildSpec) -> Table:
    table = Table(name, doc, KEY_COLUMNS + tuple(cols), V2_KEY + key_extra, version_scoped=False)
    CHILD_SOURCES[name] = sources
    return table


CHILD_SOURCES: dict[str, tuple[ChildSpec, ...]] = {}
"""Per child table of the detail, the lists its rows come from."""

_POS = computed("position", I32, "0-based position in the payload's list")

_FLAVOR_INFO = (  # FlavorInfo / FlavorInfoResponse (Tables 38, 44-49), relative to a flavor_info object
    ("max_num", "int32", "Maximum number of nodes that can be selected (1: single node only)", "max_num"),
    ("cpu_arch", "str", "CPU architecture", "cpu.arch"),
    ("cpu_core_num", "int32", "Number of CPU cores", "cpu.core_num"),
    ("gpu_unit_num", "int32", "Number of GPUs", "gpu.unit_num"),
    ("gpu_product_name", "str", "GPU product name", "gpu.product_name"),
    ("gpu_memory", "str", "GPU memory, as sent (e.g. 8GB)", "gpu.memory"),
    ("npu_unit_num", "str", "Number of NPUs (documented String)", "npu.unit_num"),
    ("npu_product_name", "str", "NPU product name", "npu.product_name"),
    ("npu_memory", "str", "NPU memory, as sent", "npu.memory"),
    ("memory_size", "int64", "Memory size", "memory.size"),
    ("memory_unit", "str", "Unit of memory_size, e.g. GB", "memory.unit"),
    ("disk_size", "str", "Disk size (String in FlavorInfo, Integer in DiskResponse: kept as text)", "disk.size"),
    ("disk_unit", "str", "Unit of disk_size, generally GB", "disk.unit"),
)


def _flavor_info(prefix: str, base: str) -> tuple[Field, ...]:
    return tuple(_f(f"{prefix}{name}", kind, doc, f"{base}.{path}") for name, kind, doc, path in _FLAVOR_INFO)


V2_JOBS = Table(
    "v2_jobs",
    "One row per v2 training job (`GET /v2/{project_id}/training-jobs/{id}`): every one-to-one field of the "
    "detail (metadata, status, algorithm, engine, summary, spec.resource with its flavor and billing, log export, "
    "scheduling, endpoints), typed. Secrets (endpoint tokens, credentials in the command and URLs) are redacted.",
    KEY_COLUMNS + (
        _f("kind", "str", "Training job type (job)"),
        _f("name", "str", "Job name", "metadata.name"),
        _f("workspace_id", "str", "Workspace of the job (default 0)", "metadata.workspace_id"),
        _f("description", "str", "Job description", "metadata.description"),
        _f("create_time", "ts_ms", "Creation time (from epoch ms), UTC", "metadata.create_time"),
        _f("user_name", "str", "User who created the job", "metadata.user_name"),
        _f("phase", "str", "Level-1 status: Creating, Pending, Running, Failed, Completed, Terminating, Terminated, "
           "Abnormal", "status.phase"),
        computed("is_final", B, "True when the phase never changes again (Failed, Completed, Terminated, "
                  "Abnormal): the job is not fetched again"),
        _f("secondary_phase", "str", "Level-2 status (documented as internal, e.g. CreateFailed)",
           "status.secondary_phase"),
        _f("duration_ms", "int64", "Running duration in milliseconds (`status.duration`)", "status.duration"),
        _f("start_time", "ts_ms", "Start time (from epoch ms), UTC; NULL when the API sends 0 (not started)",
           "status.start_time"),
        _f("task_names", "strs", "Tasks of the job (`status.tasks`), e.g. [worker-0]; metrics are per task",
           "status.tasks"),
        _f("algorithm_id", "str", "Algorithm id (when the job uses a stored algorithm)", "algorithm.id"),
        _f("algorithm_name", "str", "Algorithm name", "algorithm.name"),
        _f("subscription_id", "str", "Subscription id of a subscribed algorithm", "algorithm.subscription_id"),
        _f("item_version_id", "str", "Version id of the subscribed algorithm", "algorithm.item_version_id"),
        _f("code_dir", "str", "Code directory", "algorithm.code_dir"),
        _f("boot_file", "str", "Boot file", "algorithm.boot_file"),
        _f("autosearch_config_path", "str", "YAML path of an auto search job", "algorithm.autosearch_config_path"),
        _f("autosearch_framework_path", "str", "Framework code directory of an auto search job",
           "algorithm.autosearch_framework_path"),
        _f("command", "str", "Boot command of a custom image (credentials redacted)", "algorithm.command"),
        _f("local_code_dir", "str", "Local code directory in the container", "algorithm.local_code_dir"),
        _f("working_dir", "str", "Work directory of the algorithm", "algorithm.working_dir"),
        _f("engine_id", "str", "Engine id", "algorithm.engine.engine_id"),
        _f("engine_name", "str", "Engine name, e.g. PyTorch", "algorithm.engine.engine_name"),
        _f("engine_version", "str", "Engine version", "algorithm.engine.engine_version"),
        _f("image_url", "str", "Custom image URL (SWR; credentials redacted)", "algorithm.engine.image_url"),
        _f("install_sys_packages", "bool", "Whether the platform's MoXing version is installed",
           "algorithm.engine.install_sys_packages"),
        _f("auto_search_skip_search_params", "str", "Hyperparameters skipped by the search",
           "algorithm.policies.auto_search.skip_search_params"),
        _f("summary_log_type", "str", "Visualization log type", "algorithm.summary.log_type"),
        _f("summary_log_dir_pfs_path", "str", "Visualization log output (OBS parallel file system URL)",
           "algorithm.summary.log_dir.pfs.pfs_path"),
        computed("summary_data_source_job_ids", STRS, "Visualization log inputs: "
                  "`algorithm.summary.data_sources[].job.job_id`"),
        _f("resource_policy", "str", "Resource specification mode (regular, economic, ...)", "spec.resource.policy"),
        _f("flavor_id", "str", "Resource flavor id", "spec.resource.flavor_id"),
        _f("flavor_name", "str", "Resource flavor name", "spec.resource.flavor_name"),
        _f("node_count", "int32", "Number of resource replicas (nodes)", "spec.resource.node_count"),
        _f("pool_id", "str", "Resource pool id", "spec.resource.pool_id"),
        _f("flavor_type", "str", "Flavor type: CPU, GPU or Ascend", "spec.resource.flavor_detail.flavor_type"),
        _f("billing_code", "str", "Billing code", "spec.resource.flavor_detail.billing.code"),
        _f("billing_unit_num", "int32", "Billing units", "spec.resource.flavor_detail.billing.unit_num"),
    ) + _flavor_info("flavor_", "spec.resource.flavor_detail.flavor_info") + (
        _f("log_export_obs_url", "str", "OBS path of the job's logs", "spec.log_export_path.obs_url"),
        _f("log_export_host_path", "str", "Host path of the job's logs", "spec.log_export_path.host_path"),
        _f("affinity_type", "str", "Affinity scheduling policy",
           "spec.schedule_policy.required_affinity.affinity_type"),
        _f("affinity_group_size", "int32", "Affinity group size",
           "spec.schedule_policy.required_affinity.affinity_group_size"),
        _f("priority", "int32", "Scheduling priority", "spec.schedule_policy.priority"),
        _f("preemptible", "bool", "Whether preemption is allowed", "spec.schedule_policy.preemptible"),
        _f("ssh_key_pair_names", "strs", "SSH key pair names", "endpoints.ssh.key_pair_names"),
        _f("jupyter_lab_url", "str", "JupyterLab address (credentials redacted)", "endpoints.jupyter_lab.url"),
        _f("jupyter_lab_token", "str", "JupyterLab token: always redacted", "endpoints.jupyter_lab.token"),
        _f("tensorboard_url", "str", "TensorBoard address (credentials redacted)", "endpoints.tensorboard.url"),
        _f("tensorboard_token", "str", "TensorBoard token: always redacted", "endpoints.tensorboard.token"),
        _f("mindstudio_insight_url", "str", "MindStudio Insight address (credentials redacted)",
           "endpoints.mindstudio_insight.url"),
        _f("mindstudio_insight_token", "str", "MindStudio Insight token: always redacted",
           "endpoints.mindstudio_insight.token"),
    ) + LINEAGE,
    V2_KEY,
    version_scoped=False,
)

V2_PARAMETERS = _child(
    "v2_parameters",
    "Running parameters of a v2 job (`algorithm.parameters[]`) with their constraint; values of parameters marked "
    "`sensitive` (or named like a secret) are redacted.",
    [
        _POS,
        _f("name", "str", "Parameter name"),
        _f("value", "str", "Value as text (secrets redacted)"),
        computed("value_number", F64, "The value as a number, where it is numeric"),
        _f("description", "str", "Parameter description"),
        _f("constraint_type", "str", "Parameter type", "constraint.type"),
        _f("editable", "bool", "Whether the parameter is editable", "constraint.editable"),
        _f("required", "bool", "Whether the parameter is mandatory", "constraint.required"),
        _f("sensitive", "bool", "Whether the parameter is sensitive (its value is then redacted)",
           "constraint.sensitive"),
        _f("valid_type", "str", "Valid type", "constraint.valid_type"),
        _f("valid_range", "strs", "Valid range", "constraint.valid_range"),
        _f("i18n_language", "str", "Language of the internationalized description", "i18n_description.language"),
        _f("i18n_description", "str", "Internationalized description", "i18n_description.description"),
    ],
    ("position",),
    ChildSpec("algorithm.parameters"),
)

V2_DATA_CHANNELS = _child(
    "v2_data_channels",
    "Inputs and outputs of a v2 job (`algorithm.inputs[]`, `algorithm.outputs[]`): role, name, local_dir, and the "
    "dataset or OBS remote.",
    [
        computed("direction", S, "input or output"),
        _POS,
        _f("name", "str", "Channel name, e.g. data_url, train_url"),
        _f("description", "str", "Channel description"),
        _f("local_dir", "str", "Local directory in the container"),
        computed("remote_type", S, "dataset or obs: which remote the channel names"),
        _f("dataset_id", "str", "Dataset id (inputs from a dataset)", "remote.dataset.id"),
        _f("dataset_version_id", "str", "Dataset version id", "remote.dataset.version_id"),
        _f("dataset_obs_url", "str", "OBS URL the dataset resolves to", "remote.dataset.obs_url"),
        _f("obs_url", "str", "OBS URL (credentials redacted)", "remote.obs.obs_url"),
    ],
    ("direction", "position"),
    ChildSpec("algorithm.inputs", fixed=(("direction", "input"),)),
    ChildSpec("algorithm.outputs", fixed=(("direction", "output"),)),
)

V2_INPUT_CONSTRAINTS = _child(
    "v2_input_constraints",
    "Constraints of a v2 job's inputs (`algorithm.inputs[].remote_constraint[]`).",
    [
        computed("parent_position", I32, "Position of the input in `algorithm.inputs[]`"),
        _POS,
        _f("data_type", "str", "Data input type"),
        _f("attributes", "str", "Attributes when a dataset is the input"),
    ],
    ("parent_position", "position"),
    ChildSpec("algorithm.inputs", nested="remote_constraint"),
)

V2_ENVIRONMENTS = _child(
    "v2_environments",
    "Environment variables of a v2 job (`algorithm.environments[]`, each a map): one row per variable; "
    "secret-looking names and credentials in values are redacted.",
    [
        _POS,
        computed("name", S, "Variable name"),
        computed("value", S, "Variable value (secrets redacted)"),
    ],
    ("position", "name"),
)

V2_VOLUMES = _child(
    "v2_volumes",
    "NFS volumes of a v2 job (`spec.volumes[].nfs`).",
    [
        _POS,
        _f("nfs_server_path", "str", "NFS server path, e.g. 10.10.10.10:/example/path", "nfs.nfs_server_path"),
        _f("local_path", "str", "Mount path in the container", "nfs.local_path"),
        _f("read_only", "bool", "Whether the volume is read-only", "nfs.read_only"),
    ],
    ("position",),
    ChildSpec("spec.volumes"),
)

V2_TASKS = _child(
    "v2_tasks",
    "Tasks of a heterogeneous v2 job (`tasks[]`): each task's algorithm, engine and flavor.",
    [
        _POS,
        _f("role", "str", "Task role"),
        _f("code_dir", "str", "Code directory", "algorithm.code_dir"),
        _f("boot_file", "str", "Boot file", "algorithm.boot_file"),
        _f("input_name", "str", "Input channel name", "algorithm.inputs.name"),
        _f("input_local_dir", "str", "Input local path", "algorithm.inputs.local_dir"),
        _f("input_obs_url", "str", "Input OBS URL", "algorithm.inputs.remote.obs.obs_url"),
        _f("output_name", "str", "Output channel name", "algorithm.outputs.name"),
        _f("output_local_dir", "str", "Output local path", "algorithm.outputs.local_dir"),
        _f("output_obs_url", "str", "Output OBS URL", "algorithm.outputs.remote.obs.obs_url"),
        _f("output_mode", "str", "Output transmission mode", "algorithm.outputs.mode"),
        _f("output_period", "str", "Output transmission period", "algorithm.outputs.period"),
        _f("engine_id", "str", "Engine id", "algorithm.engine.engine_id"),
        _f("engine_name", "str", "Engine name", "algorithm.engine.engine_name"),
        _f("engine_version", "str", "Engine version", "algorithm.engine.engine_version"),
        _f("v1_compatible", "bool", "Whether the v1 compatibility mode is used", "algorithm.engine.v1_compatible"),
        _f("run_user", "str", "User UID the engine starts as", "algorithm.engine.run_user"),
        _f("image_url", "str", "Custom image URL", "algorithm.engine.image_url"),
        _f("local_code_dir", "str", "Local code directory", "algorithm.local_code_dir"),
        _f("working_dir", "str", "Work directory", "algorithm.working_dir"),
        _f("flavor_id", "str", "Flavor id", "task_resource.flavor_id"),
        _f("flavor_name", "str", "Flavor name", "task_resource.flavor_name"),
        _f("max_num", "int32", "Maximum number of nodes of the flavor", "task_resource.max_num"),
        _f("flavor_type", "str", "Flavor type", "task_resource.flavor_type"),
        _f("billing_code", "str", "Billing code", "task_resource.billing.code"),
        _f("billing_unit_num", "int32", "Billing units", "task_resource.billing.unit_num"),
    ] + list(_flavor_info("flavor_", "task_resource.flavor_info")),
    ("position",),
    ChildSpec("tasks"),
)

V2_TASK_STATUSES = _child(
    "v2_task_statuses",
    "Status of each task of a v2 job (`status.task_statuses[]`), with its exit code.",
    [
        _POS,
        _f("task", "str", "Task, e.g. worker-0"),
        _f("exit_code", "int32", "Exit code of the task"),
        _f("message", "str", "Error message of the task"),
    ],
    ("position",),
    ChildSpec("status.task_statuses"),
)

V2_RUNNING_RECORDS = _child(
    "v2_running_records",
    "Running and fault-recovery records of a v2 job (`status.running_records[]`). Their times are epoch SECONDS "
    "in the API (the rest of the detail is milliseconds); stored as timestamps either way.",
    [
        _POS,
        _f("start_at", "ts_s", "Start of the record (from epoch seconds), UTC"),
        _f("end_at", "ts_s", "End of the record (from epoch seconds), UTC"),
        _f("start_type", "str", "init_or_rescheduled or restarted"),
        _f("end_reason", "str", "Why the record ended"),
        _f("end_related_task", "str", "Task that caused the end, e.g. worker-0"),
        _f("end_recover", "str", "Fault tolerance policy after the end"),
        _f("end_recover_before_downgrade", "str", "Policy before the fault tolerance downgrade"),
    ],
    ("position",),
    ChildSpec("status.running_records"),
)

V2_NODE_COUNTS = _child(
    "v2_node_counts",
    "Node count changes of a v2 job (`status.node_count_metrics`, pairs of [epoch ms, nodes]).",
    [
        _POS,
        computed("time", UTC_TS, "When the count changed (from epoch ms), UTC"),
        computed("node_count", I32, "Number of nodes from then on"),
    ],
    ("position",),
)

V2_SSH_TASK_URLS = _child(
    "v2_ssh_task_urls",
    "SSH addresses of a v2 job's tasks (`endpoints.ssh.task_urls[]`); credentials in URLs redacted.",
    [_POS, _f("task", "str", "Task id"), _f("url", "str", "SSH connection address (credentials redacted)")],
    ("position",),
    ChildSpec("endpoints.ssh.task_urls"),
)

V2_AUTO_SEARCH_PARAMS = _child(
    "v2_auto_search_params",
    "Hyperparameters searched by a v2 auto search job (`algorithm.policies.auto_search.search_params[]`).",
    [
        _POS,
        _f("name", "str", "Hyperparameter name"),
        _f("param_type", "str", "Parameter type"),
        _f("lower_bound", "str", "Lower bound"),
        _f("upper_bound", "str", "Upper bound"),
        _f("discrete_points_num", "str", "Number of discrete points of a continuous hyperparameter"),
        _f("discrete_values", "strs", "Discrete values"),
    ],
    ("position",),
    ChildSpec("algorithm.policies.auto_search.search_params"),
)

V2_AUTO_SEARCH_REWARDS = _child(
    "v2_auto_search_rewards",
    "Search metrics of a v2 auto search job (`algorithm.policies.auto_search.reward_attrs[]`).",
    [_POS, _f("name", "str", "Metric name"), _f("mode", "str", "Search mode"),
     _f("regex", "str", "Regular expression of the metric")],
    ("position",),
    ChildSpec("algorithm.policies.auto_search.reward_attrs"),
)

V2_AUTO_SEARCH_ALGOS = _child(
    "v2_auto_search_algos",
    "Search algorithms of a v2 auto search job (`algorithm.policies.auto_search.algo_configs[]`).",
    [_POS, _f("name", "str", "Search algorithm name")],
    ("position",),
    ChildSpec("algorithm.policies.auto_search.algo_configs"),
)

V2_AUTO_SEARCH_ALGO_PARAMS = _child(
    "v2_auto_search_algo_params",
    "Parameters of each search algorithm (`algo_configs[].params[]`).",
    [
        computed("parent_position", I32, "Position of the algorithm in `algo_configs[]`"),
        _POS,
        _f("key", "str", "Parameter key"),
        _f("value", "str", "Parameter value"),
        _f("type", "str", "Parameter type"),
    ],
    ("parent_position", "position"),
    ChildSpec("algorithm.policies.auto_search.algo_configs", nested="params"),
)

V2_ANNOTATIONS = _child(
    "v2_annotations",
    "String maps of a v2 job, one row per entry: `metadata.annotations` (job_template, fault-tolerance/..., ...) and "
    "each task's `task_resource.attributes`. Secret-looking keys are redacted.",
    [
        computed("map", S, "Which map: metadata.annotations or tasks[<i>].task_resource.attributes"),
        computed("key", S, "Entry key"),
        computed("value", S, "Entry value as text"),
    ],
    ("map", "key"),
)

V2_METRIC_SERIES = Table(
    "v2_metric_series",
    "Running metrics of a v2 job's tasks (`GET .../metrics/{task_id}`), one row per task and metric with its "
    "per-minute averages as a list, exactly as the API sent them (-1 = no data). Query v2_metric_samples for rows.",
    KEY_COLUMNS + (
        computed("task", S, "Task id, from status.tasks (worker-0, ...)"),
        computed("metric", S, "cpuUsage, memUsage, gpuUtil, gpuMemUsage, npuUtil, npuMemUsage"),
        computed("samples", pa.list_(F64), "Values in order, -1 kept (NULL where a value was not a number)"),
        computed("extracted_at", UTC_TS, "When the metrics were fetched"),
        computed("payload_sha256", S, "SHA-256 of the raw metrics body"),
    ),
    V2_KEY + ("task", "metric"),
    version_scoped=False,
)

V2_METRIC_SAMPLES = Table(
    "v2_metric_samples",
    "One row per per-minute sample of a v2 task's metric. The API's -1 ('no data') becomes value NULL with "
    "no_data true (a documented flag, not a field issue). A view over v2_metric_series.",
    KEY_COLUMNS + (
        computed("task", S, "Task id"),
        computed("metric", S, "Metric name"),
        computed("sample_index", I32, "0-based index (one sample a minute; the API sends no timestamps)"),
        computed("value", F64, "The average; NULL when the API sent -1 (no data) or not a number"),
        computed("no_data", B, "True when the API sent -1"),
    ),
    V2_KEY + ("task", "metric", "sample_index"),
    version_scoped=False,
    view_sql="SELECT project_id, training_job_id, task, metric, CAST(i - 1 AS INTEGER) AS sample_index, "
             "CASE WHEN samples[i] = -1 THEN NULL ELSE samples[i] END AS value, "
             "coalesce(samples[i] = -1, false) AS no_data "
             "FROM (SELECT *, unnest(range(1, len(samples) + 1)) AS i FROM v2_metric_series)",
)

V2_EVENTS = Table(
    "v2_events",
    "Events of a v2 job (`GET .../events`, every page). Events carry no id: an event is its (time, level, source, "
    "message), so reading the pages again stores each event once (two identical events in the same second are one).",
    KEY_COLUMNS + (
        computed("time", UTC_TS, "When the event occurred (the API's ISO 8601 text with offset), UTC"),
        computed("time_text", S, "The time as sent"),
        computed("level", S, "Info, Warning or Error"),
        computed("source", S, "Job, Task, K8S, ..."),
        computed("message", S, "Event text (credentials redacted)"),
        computed("extracted_at", UTC_TS, "When the page was fetched"),
    ),
    V2_KEY + ("time_text", "level", "source", "message"),
    version_scoped=False,
)

V2_JOB_LISTINGS = Table(
    "v2_job_listings",
    "What the job search last said about each v2 job (id, create_time, phase). The incremental plan reads it: "
    "search from the oldest job not stored as final, so a job whose detail never arrived is searched again.",
    KEY_COLUMNS + (
        computed("name", S, "Job name as listed"),
        computed("create_time", UTC_TS, "Creation time as listed (from epoch ms)"),
        computed("phase", S, "Phase as listed"),
        computed("listed_at", UTC_TS, "When the search page was fetched"),
    ),
    V2_KEY,
    version_scoped=False,
)

V2_FIELD_ISSUES = Table(
    "v2_field_issues",
    "Fields of v2 bodies that could not be typed as the contract says, or that it does not know; as field_issues "
    "for v1. `scope` says which body: detail, metrics/<task> or events/<offset>.",
    KEY_COLUMNS + (
        computed("scope", S, "detail, metrics/<task> or events/<offset>: a body replaces the issues of its scope"),
        computed("table_name", S, "Tidy table the field belongs to"),
        computed("field", S, "Path in the payload, e.g. status.duration, metrics[2].value[5]"),
        computed("raw_value", S, "The value as JSON text (truncated to 1,000 characters; secrets redacted)"),
        computed("problem", S, "wrong_type, not_a_number, out_of_range, unknown_field, key_mismatch, ..."),
    ),
    V2_KEY + ("scope", "table_name", "field"),
    version_scoped=False,
)

DETAIL_TABLES: tuple[Table, ...] = (
    V2_JOBS, V2_PARAMETERS, V2_DATA_CHANNELS, V2_INPUT_CONSTRAINTS, V2_ENVIRONMENTS, V2_VOLUMES, V2_TASKS,
    V2_TASK_STATUSES, V2_RUNNING_RECORDS, V2_NODE_COUNTS, V2_SSH_TASK_URLS, V2_AUTO_SEARCH_PARAMS,
    V2_AUTO_SEARCH_REWARDS, V2_AUTO_SEARCH_ALGOS, V2_AUTO_SEARCH_ALGO_PARAMS, V2_ANNOTATIONS,
)
"""Tables a detail body fills; loading a job's detail again replaces its rows in all of them."""

STORED: tuple[Table, ...] = DETAIL_TABLES + (V2_METRIC_SERIES, V2_EVENTS, V2_JOB_LISTINGS, V2_FIELD_ISSUES)

VIEWS: tuple[Table, ...] = (V2_METRIC_SAMPLES,)
ALL: tuple[Table, ...] = STORED + VIEWS
