"""Synthetic version-detail payloads with the shapes and quirks of the real API.

Why synthetic: the demo, the tests and the benchmarks need volume and variety
(hundreds of metric samples, numbers where strings are documented, JSON inside a
string, 0-3 data sources and volumes, a realistic status mix) without a cloud
account; the one published sample is tiny and not even valid JSON.

Everything is drawn from a `random.Random`, so the same seed gives the same bytes.
Field order follows the documented sample.
"""
from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import orjson

from pipelines.modelarts import DEMO_PROJECT_ID
from warehouse.statuses import FINAL_STATUSES

# Old-version training ran until 2023-06-30; jobs are spread over the years before.
EPOCH_START_MS = 1_546_300_800_000  # 2019-01-01
EPOCH_END_MS = 1_688_083_200_000  # 2023-06-30
DEFAULT_PROJECT_ID = DEMO_PROJECT_ID

# (engine_type, engine_name, engine_id, engine versions) as seen across editions of the docs
ENGINES = (
    (1, "TensorFlow", 1, ("TF-1.13.1-python3.6", "TF-1.15.0-python3.6", "TF-2.1.0-python3.6")),
    (2, "MXNet", 2, ("MXNet-1.2.1-python3.6",)),
    (4, "Caffe", 4, ("Caffe-1.0.0-python2.7",)),
    (6, "Scikit_Learn", 6, ("Scikit_Learn-0.18.1-python3.6",)),
    (9, "XGBoost-Sklearn", 9, ("XGBoost-0.80-Sklearn-0.18.1-python3.6",)),
    (10, "PyTorch", 10, ("PyTorch-1.0.0-python3.6", "PyTorch-1.3.0-python3.6", "PyTorch-1.4.0-python3.6",
                         "PyTorch-1.8.0-python3.7")),
    (12, "Horovod", 12, ("horovod_0.20.0-tensorflow_2.1.0-pytorch_1.4.0",)),
    (13, "Ascend-Powered-Engine", 13, ("TF-1.15-python3.7-aarch64", "Mindspore-1.1.1-python3.7-aarch64")),
    (17, "MindSpore-GPU", 17, ("MindSpore-1.0.0-python3.7",)),
)
ENGINE_WEIGHTS = (30, 4, 1, 2, 2, 35, 4, 12, 10)

# (spec_id, spec_code, core, cpu GiB, gpu_num, gpu_type)
GPU_SPECS = (
    (1, "modelarts.vm.cpu.2u", 2, 8, 0, ""),
    (2, "modelarts.vm.cpu.8u", 8, 32, 0, ""),
    (3, "modelarts.vm.gpu.p100", 8, 64, 1, "P100"),
    (4, "modelarts.vm.gpu.v100", 8, 64, 1, "v100NV32"),
    (5, "modelarts.vm.gpu.v100.4", 32, 256, 4, "v100NV32"),
    (6, "modelarts.bm.gpu.8v100", 72, 512, 8, "v100NV32"),
    (7, "modelarts.vm.gpu.t4", 8, 32, 1, "T4"),
)
GPU_SPEC_WEIGHTS = (5, 10, 15, 30, 15, 10, 15)
ASCEND_SPECS = (
    (8, "modelarts.kat1.xlarge", 24, 96, 1, "Ascend-910"),
    (9, "modelarts.kat1.8xlarge", 192, 720, 8, "Ascend-910"),
)

# A realistic mix: mostly finished, some failed or stopped, a few in progress or unclear.
STATUS_WEIGHTS = {
    10: 600, 11: 120, 12: 50, 13: 40, 3: 8, 5: 8, 6: 2, 14: 6, 16: 4, 17: 2, 21: 3, 22: 2,
    8: 80, 7: 20, 1: 10, 2: 6, 4: 4, 9: 3, 15: 2, 18: 2, 19: 4, 20: 6, 0: 8,
}
FINAL_STATUS_WEIGHTS = {s: w for s, w in STATUS_WEIGHTS.items() if s in FINAL_STATUSES}
ACTIVE_STATUS_WEIGHTS = {s: w for s, w in STATUS_WEIGHTS.items() if s not in FINAL_STATUSES}
NOT_STARTED = frozenset({1, 2, 3, 4, 5, 7, 18})  # never reached a node: no samples, no start time

BASE_METRICS = ("cpuUsage", "memUsage", "gpuUtil")
EXTRA_METRICS = ("gpuMemUsage", "diskReadRate", "diskWriteRate", "recvBytesRate", "sendBytesRate")
MEAN_SAMPLES = 900  # sample budget over all arrays of a version: a long run is sampled less often (~570 on average)
INTERVALS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 30, 45, 60, 90, 120)  # sampling intervals in minutes (`interval`; docs/analysis.md)

MODELS = ("resnet50", "resnet101", "mobilenet-v2", "efficientnet-b0", "bert-base", "yolov5s", "deeplabv3",
          "vgg16", "inception-v3", "unet", "ssd-mobilenet", "transformer", "wide-deep", "xgb-churn")
DATASETS = ("imagenet", "cifar10", "coco", "voc2012", "flowers", "mnist", "squad", "criteo", "cityscapes",
            "product-images", "defects", "retail-sales", "speech-cmds")
CLASS_NAMES = ("cat", "dog", "car", "person", "bicycle", "defect", "normal", "scratch", "dent", "background",
               "tulip", "rose", "daisy", "sunflower", "dandelion")


def _number(rng: random.Random, choices: tuple) -> float | int:
    return rng.choice(choices)


# (label, value maker). Values are numbers or strings; numbers go out as JSON numbers
# about a third of the time although the docs say String.
PARAMETERS = (
    ("learning_rate", lambda r: _number(r, (0.1, 0.01, 0.001, 0.0005, 0.0001, 3e-05))),
    ("batch_size", lambda r: _number(r, (16, 32, 64, 128, 256))),
    ("epochs", lambda r: r.randint(1, 300)),
    ("max_steps", lambda r: _number(r, (1000, 5000, 10000, 50000, 100000))),
    ("momentum", lambda r: _number(r, (0.9, 0.95, 0.99))),
    ("weight_decay", lambda r: _number(r, (0.0001, 0.0005, 0.01))),
    ("optimizer", lambda r: r.choice(("sgd", "adam", "adamw", "momentum", "rmsprop"))),
    ("dropout", lambda r: round(r.uniform(0, 0.5), 2)),
    ("warmup_steps", lambda r: _number(r, (0, 500, 1000, 2000))),
    ("seed", lambda r: r.randint(0, 2**31 - 1)),
    ("image_size", lambda r: _number(r, (224, 256, 299, 384, 512, 640))),
    ("num_classes", lambda r: r.randint(2, 1000)),
    ("model_name", lambda r: r.choice(MODELS)),
    ("pretrained", lambda r: r.choice(("true", "false", "True"))),
    ("label_smoothing", lambda r: _number(r, (0.0, 0.1))),
    ("lr_scheduler", lambda r: r.choice(("cosine", "step", "multistep", "poly", "exponential"))),
    ("lr_decay_epochs", lambda r: r.choice(("30,60,90", "100,150", "8,11"))),
    ("num_gpus", lambda r: _number(r, (1, 2, 4, 8))),
    ("num_workers", lambda r: _number(r, (2, 4, 8, 16))),
    ("fp16", lambda r: r.choice(("True", "False"))),
    ("save_checkpoints_steps", lambda r: _number(r, (500, 1000, 5000))),
    ("eval_interval", lambda r: _number(r, (1, 5, 10))),
    ("log_every_n_steps", lambda r: _number(r, (10, 50, 100))),
    ("data_format", lambda r: r.choice(("NCHW", "NHWC"))),
    ("max_seq_length", lambda r: _number(r, (128, 256, 384, 512))),
    ("gradient_clip", lambda r: _number(r, (0.5, 1.0, 5.0))),
    ("train_file", lambda r: r.choice(("train.tfrecord", "train.csv", "train.txt", "train.json"))),
    ("export_model", lambda r: r.choice(("true", "false"))),
    ("auto_augment", lambda r: r.choice(("v0", "rand-m9-mstd0.5", "none"))),
    ("momentum_decay", lambda r: _number(r, (0.997, 0.999))),
)
# Users do paste keys into parameters; the warehouse redacts labels like these.
SECRET_PARAMETERS = (
    ("obs_access_key", lambda r: "SIM" + "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(17))),
    ("secret_key", lambda r: "sim-" + uuid.UUID(int=r.getrandbits(128), version=4).hex),
    ("api_token", lambda r: "sim_tok_" + uuid.UUID(int=r.getrandbits(128), version=4).hex[:24]),
)


def weighted_choice(rng: random.Random, weights: dict) -> int:
    return rng.choices(tuple(weights), weights=tuple(weights.values()))[0]


def draw_status(rng: random.Random) -> int:
    return weighted_choice(rng, STATUS_WEIGHTS)


def fake_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def job_profile(rng: random.Random, job_id: int) -> dict:
    """What stays the same across the versions of one job (name, engine, code, data, spec)."""
    engine = rng.choices(ENGINES, weights=ENGINE_WEIGHTS)[0]
    spec = rng.choice(ASCEND_SPECS) if engine[0] == 13 else rng.choices(GPU_SPECS, weights=GPU_SPEC_WEIGHTS)[0]
    model, dataset = rng.choice(MODELS), rng.choice(DATASETS)
    team = rng.choice(("ml-team", "modelarts-prod", "cv-research", "nlp-lab", "obs-train"))
    bucket = f"{team}-{rng.randint(1, 99):02d}"
    name = f"{model}-{dataset}-{rng.choice(('ft', 'base', 'exp', 'tune', 'prod', 'ab'))}-{job_id % 10000:04d}"
    labels = rng.sample(range(len(PARAMETERS)), rng.randint(3, 16))
    custom_image = rng.random() < 0.15
    dedicated_pool = rng.random() < 0.35
    return {
        "job_name": name,
        "job_desc": rng.choice(("", f"{model} on {dataset}", f"fine-tune {model} for {dataset}",
                                f"nightly {dataset} retrain", "baseline run")),
        "engine": engine,
        "engine_version": rng.choice(engine[3]),
        "spec": spec,
        "bucket": bucket,
        "app_url": f"/{bucket}/code/{model}/",
        "boot_file": rng.choice(("train.py", "main.py", "run_train.py", "start.py")),
        "dataset": dataset,
        "dataset_id": fake_uuid(rng) if rng.random() < 0.6 else "",
        "parameters": [PARAMETERS[i] for i in labels],
        "secret_parameter": rng.choice(SECRET_PARAMETERS) if rng.random() < 0.05 else None,
        "user_image_url": f"swr.cn-north-4.myhuaweicloud.com/{bucket}/{model}-train:"
                          f"{rng.randint(1, 9)}.{rng.randint(0, 9)}" if custom_image else "",
        "pool": (f"pool{uuid.UUID(int=rng.getrandbits(128)).hex[:8]}",
                 rng.choice(("p100", "v100-dedicated", "ascend-pool", "team-gpu"))) if dedicated_pool else ("", ""),
        "worker_server_num": rng.choices((1, 2, 4), weights=(80, 15, 5))[0],
    }


def _parameters(rng: random.Random, profile: dict) -> list[dict]:
    out = []
    for label, make in profile["parameters"]:
        value = make(rng)
        if isinstance(value, (int, float)) and rng.random() >= 0.35:
            value = str(value)
        out.append({"label": label, "value": value})
    secret = profile["secret_parameter"]
    if secret is not None:
        out.append({"label": secret[0], "value": secret[1](rng)})
    out.extend({"label": label, "value": value} for label, value in profile.get("planted_parameters", ()))
    return out


# Labels and command-line shapes people really use for credentials, for jobs with planted
# secrets (World(secret_share=...)): the warehouse must mask every one in its tidy tables.
PLANTED_LABELS = ("password", "db_password", "api_token", "hfToken", "obsSecretKey", "access_key", "sk", "secret",
                  "AWS_SECRET_ACCESS_KEY", "github-token", "apiKey", "auth_token")
PLANTED_FLAGS = ("--password={}", "--db_passwd {}", "--api-key='{}'", '--secretKey="{}"', "OBS_SECRET_ACCESS_KEY={}",
                 "--sk={}", "--token {}", "--access_key={}", "--code_url=https://ci:{}@git.example.com/team/repo.git")
SECRET_MARK = "S3CR3T"  # every planted secret contains it, so a leak is easy to search for


def plant_secrets(rng: random.Random, profile: dict) -> list[str]:
    """Give a job's profile 1-3 secret parameters and 1-3 secret flags in its user_command; returns the values."""
    def value() -> str:
        return f"{SECRET_MARK}-{rng.getrandbits(64):016x}"

    labels = rng.sample(PLANTED_LABELS, rng.randint(1, 3))
    flags = rng.sample(PLANTED_FLAGS, rng.randint(1, 3))
    profile["planted_parameters"] = [(label, value()) for label in labels]
    planted_flags = [(flag, value()) for flag in flags]
    profile["planted_command"] = " ".join(flag.format(v) for flag, v in planted_flags)
    return [v for _, v in profile["planted_parameters"]] + [v for _, v in planted_flags]


def _data_sources(rng: random.Random, profile: dict) -> list[dict]:
    count = rng.choices((0, 1, 2, 3), weights=(15, 60, 18, 7))[0]
    sources = []
    for n in range(count):
        if rng.random() < 0.7:
            sources.append({"type": "obs", "data_url": f"/{profile['bucket']}/datasets/{profile['dataset']}/part-{n}/"})
        else:
            sources.append({"type": "dataset", "dataset_id": fake_uuid(rng), "dataset_version": fake_uuid(rng)})
    return sources


def _volumes(rng: random.Random) -> list[dict]:
    count = rng.choices((0, 1, 2, 3), weights=(55, 30, 10, 5))[0]
    volumes = []
    for n in range(count):
        if rng.random() < 0.6:
            volumes.append({"nfs": {
                "id": fake_uuid(rng),
                "src_path": f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}:/",
                "dest_path": "/home/work/nas" if n == 0 else f"/home/work/nas{n}",
                "read_only": rng.random() < 0.3,
            }})
        else:
            volumes.append({"host_path": {
                "src_path": rng.choice(("/root/work", "/data", "/mnt/ssd", "/cache/datasets")),
                "dest_path": rng.choice(("/home/mind", "/home/work/data", "/cache")),
                "read_only": rng.random() < 0.5,
            }})
    return volumes


def _series(rng: random.Random, count: int, top: float, idle_tail: int) -> list[str]:
    """A bounded random walk as numeric strings, ending in zeros once the job stopped."""
    value = rng.uniform(0, top * 0.6)
    step = top * 0.08
    out = []
    for _ in range(count - idle_tail):
        value += (rng.random() - 0.5) * step
        value = 0.0 if value < 0 else top if value > top else value
        out.append(f"{value:.2f}")
    out.extend(["0"] * idle_tail)
    return out


def sampling(duration_ms: int, budget: int) -> tuple[int, int]:
    """(interval in minutes, samples per array) so that samples ~ duration / interval: the
    smallest usual interval that keeps an array within its budget."""
    minutes = duration_ms / 60_000
    interval = next((i for i in INTERVALS if minutes / i <= budget), INTERVALS[-1])
    return interval, max(1, round(minutes / interval))


def system_metrics(rng: random.Random, gpu_num: int, duration_ms: int) -> dict:
    """3-8 arrays sampled every `interval` minutes over the run's duration (~570 samples in all
    on average), plus the interval."""
    names = list(BASE_METRICS)
    if rng.random() < 0.35:
        names += rng.sample(EXTRA_METRICS, rng.randint(1, len(EXTRA_METRICS)))
    budget = int(rng.uniform(0.6, 1.4) * MEAN_SAMPLES)
    interval, per_series = sampling(duration_ms, max(1, budget // len(names)))
    idle_tail = min(rng.randint(0, 12), per_series // 4)
    load = rng.choice((8.0, 30.0, 100.0))  # a light job's usage stays in single digits
    metrics: dict = {}
    for name in names:
        if name.startswith("gpu") and gpu_num == 0:
            metrics[name] = ["0"] * per_series
        elif name.endswith("Rate"):
            metrics[name] = _series(rng, per_series, 4_000.0, idle_tail)
        else:
            metrics[name] = _series(rng, per_series, load, idle_tail)
    metrics["interval"] = interval
    return metrics


def model_metrics(rng: random.Random) -> str:
    """The `model_metric_list` document, JSON-encoded as a string the way the API sends it."""
    n_classes = rng.randint(2, 6)
    numeric_names = rng.random() < 0.4
    names = rng.sample(CLASS_NAMES, n_classes)
    classes = []
    for class_id in range(n_classes):
        values = {"recall": round(rng.random(), 6), "precision": round(rng.random(), 6),
                  "accuracy": round(rng.uniform(0.5, 1), 6)}
        classes.append({"metric_values": values, "reserved_data": {},
                        "metric_meta": {"class_name": class_id if numeric_names else names[class_id],
                                        "class_id": class_id}})
    total = {k: round(sum(c["metric_values"][k] for c in classes) / n_classes, 6)
             for k in ("recall", "precision", "accuracy")}
    document = {"metric": classes, "total_metric": {"total_metric_meta": {}, "total_reserved_data": {},
                                                   "total_metric_values": {"recall": total["recall"], "id": 0,
                                                                           "precision": total["precision"],
                                                                           "accuracy": total["accuracy"]}}}
    return orjson.dumps(document).decode()


def _duration_ms(rng: random.Random, status: int) -> int:
    if status in NOT_STARTED:
        return 0
    minutes = rng.lognormvariate(6.2, 0.8) if status == 10 else rng.lognormvariate(4.8, 1.2)
    return int(min(max(minutes, 1.0), 7 * 24 * 60) * 60_000) + rng.randint(0, 59_999)


def generate_version(rng: random.Random | int, project_id: str, job_id: int, version_id: int, *,
                     profile: dict | None = None, status: int | None = None, version_index: int = 1,
                     pre_version_id: int = 0, create_time: int | None = None, start_time: int | None = None,
                     duration: int | None = None) -> dict:
    """One version-detail payload as a dict (encode it with orjson).

    Arguments left as None are drawn from `rng`; the simulator's world passes status and
    times so that list pages and details agree. `project_id` seeds the charged-resource id
    so two projects never share one.
    """
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    if profile is None:
        profile = job_profile(rng, job_id)
    if status is None:
        status = draw_status(rng)
    if create_time is None:
        create_time = rng.randint(EPOCH_START_MS, EPOCH_END_MS)
    started = status not in NOT_STARTED
    if start_time is None and started:
        start_time = create_time + rng.randint(5_000, 20 * 60_000)
    if duration is None:
        duration = _duration_ms(rng, status)
    engine_type, engine_name, engine_id, _ = profile["engine"]
    spec_id, spec_code, core, cpu, gpu_num, gpu_type = profile["spec"]
    bucket, version_name = profile["bucket"], f"V{version_index:04d}"
    volumes = _volumes(rng)
    nfs = next((v["nfs"] for v in volumes if "nfs" in v), None)
    custom = bool(profile["user_image_url"])
    dataset_id = profile["dataset_id"]
    payload = {
        "is_success": True,
        "job_id": job_id,
        "job_name": profile["job_name"],
        "job_desc": profile["job_desc"],
        "version_id": version_id,
        "version_name": version_name,
        "pre_version_id": pre_version_id,
        "engine_type": engine_type,
        "engine_name": engine_name,
        "engine_id": engine_id,
        "engine_version": profile["engine_version"],
        "status": status,
        "app_url": profile["app_url"],
        "boot_file_url": profile["app_url"] + profile["boot_file"],
        "create_time": create_time,
        "parameter": _parameters(rng, profile),
        "duration": duration,
        "spec_id": spec_id,
        "core": core if rng.random() < 0.5 else str(core),
        "cpu": cpu if rng.random() < 0.5 else str(cpu),
        "gpu_num": gpu_num,
        "gpu_type": gpu_type,
        "worker_server_num": profile["worker_server_num"],
        "data_url": f"/{bucket}/datasets/{profile['dataset']}/",
        "train_url": f"/{bucket}/output/{profile['job_name']}/{version_name}/",
        "log_url": f"/{bucket}/logs/{profile['job_name']}/{version_name}/" if rng.random() < 0.7 else "",
        "dataset_version_id": fake_uuid(rng) if dataset_id else "",
        "dataset_id": dataset_id,
        "data_source": _data_sources(rng, profile),
        "model_id": rng.randint(1, 99_999) if status == 10 and rng.random() < 0.4 else 0,
        "model_metric_list": model_metrics(rng) if status == 10 else "",
        "system_metric_list": _system_metric_field(rng, gpu_num, started, duration),
        "user_image_url": profile["user_image_url"],
        "user_command": _user_command(profile, custom),
        "resource_id": uuid.UUID(int=hash_ids(project_id, job_id, version_id)).hex,
        "dataset_name": profile["dataset"] if dataset_id else "",
        "spec_code": spec_code,
        "start_time": start_time,
        "volumes": volumes,
        "dataset_version_name": f"V{rng.randint(1, 12):03d}" if dataset_id else "",
        "pool_name": profile["pool"][1],
        "pool_id": profile["pool"][0],
        "nas_mount_path": nfs["dest_path"] if nfs else "",
        "nas_share_addr": nfs["src_path"] if nfs else "",
        "nas_type": "nfs" if nfs else "",
    }
    return payload


def _user_command(profile: dict, custom: bool) -> str:
    planted = profile.get("planted_command")
    if not custom and not planted:
        return ""
    command = (f"bash -x /home/work/run_train.sh python /home/work/user-job-dir/code/{profile['boot_file']} "
               f"--data_url=/home/work/data --train_url=/home/work/output")
    return f"{command} {planted}" if planted else command


def _system_metric_field(rng: random.Random, gpu_num: int, started: bool, duration_ms: int):
    """Usually an object; now and then the JSON-string form the versions list uses; empty if never run."""
    if not started:
        return {}
    metrics = system_metrics(rng, gpu_num, duration_ms)
    return orjson.dumps(metrics).decode() if rng.random() < 0.05 else metrics


def hash_ids(*parts) -> int:
    """A stable 128-bit number from ids (Python's hash() is salted per process)."""
    return int.from_bytes(uuid.uuid5(uuid.NAMESPACE_OID, ":".join(map(str, parts))).bytes, "big")


def list_item(payload: dict) -> dict:
    """The same version as the versions list shows it: no spec_code, metrics as a JSON string."""
    item = {k: v for k, v in payload.items() if k not in ("spec_code", "is_success")}
    metrics = item.get("system_metric_list")
    if isinstance(metrics, dict):
        item["system_metric_list"] = orjson.dumps(metrics).decode()
    return item


def iter_corpus(n: int, seed: int = 0, *, project_id: str = DEFAULT_PROJECT_ID) -> Iterator[bytes]:
    """`n` detail payloads as bytes, jobs of 1-8 versions each; for benchmarks and bulk tests."""
    rng = random.Random(seed)
    job_id, version_id, produced = 100_000, 1_000_000, 0
    while produced < n:
        job_id += rng.randint(1, 7)
        profile = job_profile(rng, job_id)
        created = rng.randint(EPOCH_START_MS, EPOCH_END_MS)
        previous = 0
        for index in range(1, min(rng.randint(1, 8), n - produced) + 1):
            version_id += rng.randint(1, 5)
            created += rng.randint(60_000, 14 * 24 * 3_600_000)
            payload = generate_version(rng, project_id, job_id, version_id, profile=profile, version_index=index,
                                       pre_version_id=previous, create_time=created)
            previous = version_id
            produced += 1
            yield orjson.dumps(payload)
