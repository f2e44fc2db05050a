"""The tools we compare against, each doing the same job its usual way: JSONL payloads -> tables on disk.

    python benchmarks/peers.py TOOL CORPUS OUT_DIR [--limit N]

TOOL is one of: dlt-parquet, dlt-duckdb, pandas, duckdb-sql. Each is run in its own
process by ingest_vs_peers.py. They do less than `modelarts-etl ingest`: no raw landing,
no validation or field issues, no upsert by key, no redaction, no lineage; dlt and pandas
keep the metric samples as text where the payload sends text.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path


def _payloads(corpus: Path, limit: int | None):
    import orjson

    with corpus.open("rb") as fh:
        for line in itertools.islice(fh, limit):
            if line.strip():
                yield orjson.loads(line)


def dlt_run(corpus: Path, out: Path, limit: int | None, destination: str) -> None:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    import dlt

    if destination == "parquet":
        dest = dlt.destinations.filesystem(bucket_url=(out / "files").as_uri())
        run_kwargs = {"loader_file_format": "parquet"}
    else:
        dest = dlt.destinations.duckdb(credentials=str(out / "dlt.duckdb"))
        run_kwargs = {}  # its default loader file format
    pipeline = dlt.pipeline(pipeline_name=f"bench_{destination}", destination=dest, dataset_name="modelarts",
                            pipelines_dir=str(out / "pipelines"))
    info = pipeline.run(_payloads(corpus, limit), table_name="job_versions", **run_kwargs)
    info.raise_on_failed_jobs()
    counts = pipeline.last_trace.last_normalize_info.row_counts
    print({k: v for k, v in counts.items() if not k.startswith("_dlt")})


def pandas_run(corpus: Path, out: Path, limit: int | None) -> None:
    """What a data scientist would write: json_normalize, melt/explode the sample arrays, to_parquet."""
    import orjson
    import pandas as pd

    payloads = []
    for p in _payloads(corpus, limit):
        for field in ("system_metric_list", "model_metric_list"):
            if isinstance(p.get(field), str):
                p[field] = orjson.loads(p[field]) if p[field] else {}
        payloads.append(p)
    out.mkdir(parents=True, exist_ok=True)
    meta = ["job_id", "version_id"]
    versions = pd.json_normalize(payloads)
    metric_cols = [c for c in versions.columns if c.startswith("system_metric_list.") and c != "system_metric_list.interval"]
    samples = versions[meta + metric_cols].melt(id_vars=meta, var_name="metric", value_name="value")
    samples = samples[samples["value"].map(lambda v: isinstance(v, list))].explode("value")
    samples["metric"] = samples["metric"].str.removeprefix("system_metric_list.")
    samples["sample_index"] = samples.groupby(meta + ["metric"]).cumcount()
    samples["value"] = pd.to_numeric(samples["value"], errors="coerce")
    samples.to_parquet(out / "system_metric_samples.parquet", index=False)
    scalar = versions[[c for c in versions.columns if not c.startswith("system_metric_list.")
                       and not c.startswith("model_metric_list.") and c not in ("parameter", "data_source", "volumes")]]
    mixed = [c for c in scalar.columns if scalar[c].dtype == object]
    scalar = scalar.astype({c: "string" for c in mixed})  # e.g. `core`: numbers and strings
    scalar.to_parquet(out / "job_versions.parquet", index=False)
    for path, name in (("parameter", "parameters"), ("data_source", "data_sources"), ("volumes", "volumes"),
                       (["model_metric_list", "metric"], "class_metrics")):
        first, rest = (path[0], path[1:]) if isinstance(path, list) else (path, [])
        having = [p for p in payloads if isinstance(p.get(first), (list, dict)) and (not rest or p[first].get(rest[0]))]
        frame = pd.json_normalize(having, record_path=path, meta=meta, errors="ignore")
        frame = frame.astype({c: "string" for c in frame.columns if frame[c].dtype == object})
        frame.to_parquet(out / f"{name}.parquet", index=False)
    print({"job_versions": len(versions), "system_metric_samples": len(samples)})


def duckdb_sql_run(corpus: Path, out: Path, limit: int | None) -> None:
    """DuckDB's own JSON reader: read_json -> unnest -> COPY to Parquet, no Python per row."""
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET threads = 2")
    src = str(corpus).replace("'", "''")
    lim = f"LIMIT {int(limit)}" if limit else ""
    con.execute(f"""
        CREATE TEMP VIEW payloads AS SELECT * FROM read_json('{src}', format = 'newline_delimited',
            columns = {{job_id: 'BIGINT', version_id: 'BIGINT', job_name: 'VARCHAR', status: 'INTEGER',
                        create_time: 'BIGINT', duration: 'BIGINT', engine_name: 'VARCHAR', parameter: 'JSON',
                        system_metric_list: 'JSON'}}) {lim}""")
    con.execute(f"""COPY (
        WITH m AS (SELECT job_id, version_id,
                          CASE WHEN json_type(system_metric_list) = 'VARCHAR'
                               THEN (system_metric_list ->> '$')::JSON ELSE system_metric_list END AS sml
                   FROM payloads),
             k AS (SELECT job_id, version_id, sml, unnest(json_keys(sml)) AS metric FROM m)
        SELECT job_id, version_id, metric, generate_subscripts(v, 1) - 1 AS sample_index,
               TRY_CAST(unnest(v) AS DOUBLE) AS value
        FROM (SELECT job_id, version_id, metric, (sml -> metric)::VARCHAR[] AS v FROM k
              WHERE json_type(sml -> metric) = 'ARRAY')
    ) TO '{out / "system_metric_samples.parquet"}' (FORMAT parquet, COMPRESSION zstd)""")
    con.execute(f"""COPY (SELECT job_id, version_id, job_name, status, make_timestamp(create_time * 1000) AS create_time,
                                 duration, engine_name FROM payloads)
                    TO '{out / "job_versions.parquet"}' (FORMAT parquet, COMPRESSION zstd)""")
    con.execute(f"""COPY (SELECT job_id, version_id, generate_subscripts(p, 1) - 1 AS position,
                                 unnest(p) ->> 'label' AS label, unnest(p) ->> 'value' AS value
                          FROM (SELECT job_id, version_id, parameter::JSON[] AS p FROM payloads))
                    TO '{out / "parameters.parquet"}' (FORMAT parquet, COMPRESSION zstd)""")
    n = con.execute(f"SELECT count(*) FROM '{out / 'system_metric_samples.parquet'}'").fetchall()[0][0]
    print({"system_metric_samples": n})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tool", choices=("dlt-parquet", "dlt-duckdb", "pandas", "duckdb-sql"))
    parser.add_argument("corpus", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--limit", type=int, default=None, help="only the first N payloads")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.tool == "dlt-parquet":
        dlt_run(args.corpus, args.out, args.limit, "parquet")
    elif args.tool == "dlt-duckdb":
        dlt_run(args.corpus, args.out, args.limit, "duckdb")
    elif args.tool == "pandas":
        pandas_run(args.corpus, args.out, args.limit)
    else:
        duckdb_sql_run(args.corpus, args.out, args.limit)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
