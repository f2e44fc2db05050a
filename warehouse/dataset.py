"""A notebook's view of the warehouse, in the manner of dlt's `pipeline.dataset()`.

    from warehouse import dataset
    ds = dataset("warehouse_data")              # or as_of=12 (a snapshot id) or as_of="2024-05-01 12:00"
    ds.job_versions.where("status = 10").df()   # tables and views are attributes (they tab-complete)
    ds.version_summary.columns
    ds.row_counts()
    ds.sql("SELECT status_category, count(*) FROM version_summary GROUP BY ALL").df()
    ds.parameters_wide().df()                   # one row per run, one column per parameter name
    ds.best_versions(by="total_recall").df()

One read-only connection per dataset: it never blocks a writer, and with `as_of` every
table is read at the same snapshot.
"""
from __future__ import annotations

import os
from datetime import datetime
from typing import TYPE_CHECKING

import duckdb

from warehouse import analysis, reader
from warehouse.store import WarehouseError

if TYPE_CHECKING:  # pandas and pyarrow are imported by the calls that return them
    import pandas as pd
    import pyarrow as pa

WIDE_KEY = ("project_id", "api_version", "run_id")  # a run of either API generation (schema_runs.py)
WIDE_IDS = ("job_id", "version_id", "training_job_id")  # beside the key; NULL on one side, so never joined on
WIDE_ORDER = "project_id, api_version, job_id, version_id, training_job_id"


class Relation:
    """A query not yet run: refine it with where()/select()/limit(), then df(), arrow() or fetchall()."""

    def __init__(self, ds: "Dataset", sql: str, columns: list[str] | None = None):
        self._ds, self._sql, self._columns = ds, sql, columns

    @property
    def columns(self) -> list[str]:
        if self._columns is None:
            self._columns = self._ds._run(f"SELECT * FROM ({self._sql}) LIMIT 0").columns
        return list(self._columns)

    def where(self, condition: str) -> "Relation":
        return Relation(self._ds, f"SELECT * FROM ({self._sql}) WHERE {condition}", self._columns)

    def select(self, *columns: str) -> "Relation":
        unknown = [c for c in columns if c not in self.columns]
        if unknown:
            raise WarehouseError(f"no column {', '.join(map(repr, unknown))}; columns: {', '.join(self.columns)}")
        cols = ", ".join(f'"{c}"' for c in columns)
        return Relation(self._ds, f"SELECT {cols} FROM ({self._sql})", list(columns))

    def limit(self, rows: int) -> "Relation":
        return Relation(self._ds, f"SELECT * FROM ({self._sql}) LIMIT {int(rows)}", self._columns)

    def df(self) -> "pd.DataFrame":
        return self._ds._run(self._sql).df()

    def arrow(self) -> "pa.Table":
        return self._ds._run(self._sql).to_arrow_table()

    def fetchall(self) -> list[tuple]:
        return self._ds._run(self._sql).fetchall()

    def count(self) -> int:
        return self._ds._run(f"SELECT count(*) FROM ({self._sql})").fetchone()[0]

    def __repr__(self) -> str:
        return f"<Relation {self._sql[:80]!r}>"


class Dataset:
    """Every table and view of one warehouse, read-only, at the latest snapshot or `as_of` one."""

    def __init__(self, con: duckdb.DuckDBPyConnection, folder: str):
        self._con, self.folder = con, folder

    # -- tables as attributes ----------------------------------------------------------
    @property
    def tables(self) -> list[str]:
        return reader.table_names()

    def table(self, name: str) -> Relation:
        return Relation(self, reader.select_sql(name), reader.table_columns(name))

    def __getattr__(self, name: str) -> Relation:
        if name.startswith("_") or name not in reader.table_names():
            raise AttributeError(f"{type(self).__name__} has no attribute or table {name!r}")
        return self.table(name)

    def __getitem__(self, name: str) -> Relation:
        return self.table(name)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(reader.table_names()))

    # -- questions ---------------------------------------------------------------------
    def sql(self, query: str) -> Relation:
        return Relation(self, query)

    def row_counts(self) -> "pd.DataFrame":
        """Rows of every table and view, as a DataFrame (table, rows)."""
        import pandas as pd

        counts = [(name, self._run(f'SELECT count(*) FROM "{name}"').fetchone()[0]) for name in self.tables]
        return pd.DataFrame(counts, columns=["table", "rows"])

    def parameters_wide(self, *, numeric: bool = False, where: str | None = None) -> Relation:
        """One row per run (v1 version or v2 job, with or without parameters), one column per parameter
        name (v1 label, v2 name); `where` is a condition on the `runs` view.

        A function, not a view: the columns are the names present at this snapshot, and a
        view's columns are fixed when it is made. `numeric=True` gives `value_number` (NULL
        where a value is not a number), for scikit-learn; else the text value.
        """
        value = "value_number" if numeric else "value"
        keys = ", ".join(WIDE_KEY)
        runs = f"SELECT {keys}, {', '.join(WIDE_IDS)} FROM runs" + (f" WHERE {where}" if where else "")
        names = self._run("SELECT count(DISTINCT name) FROM run_parameters").fetchone()[0]
        if not names:
            return Relation(self, f"SELECT * FROM ({runs}) ORDER BY {WIDE_ORDER}")
        pivot = (f"PIVOT (SELECT {keys}, name, {value} AS value FROM run_parameters WHERE name IS NOT NULL) "
                 f"ON name USING first(value) GROUP BY {keys}")
        return Relation(self, f"SELECT * FROM ({runs}) LEFT JOIN ({pivot}) USING ({keys}) ORDER BY {WIDE_ORDER}")

    def best_versions(self, by: str = "total_accuracy", *, higher_is_better: bool = True) -> Relation:
        """Per job (a v1 job, or a v2 job: its own only run), the best succeeded run by any numeric
        column of version_summary (tie-break as in the best_versions view: the newest version wins)."""
        columns = {c.name: c for c in analysis.VERSION_SUMMARY.columns}
        if by not in columns or columns[by].duckdb_type not in ("DOUBLE", "BIGINT", "INTEGER"):
            numeric = [n for n, c in columns.items() if c.duckdb_type in ("DOUBLE", "BIGINT", "INTEGER")]
            raise WarehouseError(f"cannot rank by {by!r}: use a numeric column of version_summary, "
                                 f"e.g. {', '.join(numeric[3:12])}")
        order = "DESC" if higher_is_better else "ASC"
        job = analysis.JOB_PARTITION
        return Relation(self, f"""SELECT *, count(*) OVER (PARTITION BY {job}) AS candidates
FROM version_summary WHERE status_category = 'succeeded' AND "{by}" IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY {job}
                           ORDER BY "{by}" {order}, create_time DESC NULLS LAST, version_id DESC) = 1
ORDER BY {job}""")

    def plot_utilisation(self, job_id: int, version_id: int, *, project_id: str | None = None):
        """A matplotlib figure of one version's utilisation over time (see warehouse.plots)."""
        from warehouse import plots

        return plots.utilisation_figure(self._con, job_id, version_id, project_id=project_id)

    # -- lifetime ----------------------------------------------------------------------
    def _run(self, sql: str) -> duckdb.DuckDBPyRelation:
        try:
            return self._con.sql(sql)
        except duckdb.Error as exc:
            raise WarehouseError(f"query failed: {str(exc).strip().splitlines()[0]}") from None

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        return self._con

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> "Dataset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Dataset {self.folder}: {', '.join(self.tables)}>"


def dataset(warehouse: str | os.PathLike | None = None, *, as_of: int | datetime | str | None = None,
            catalog: str | None = None, data_path: str | None = None) -> Dataset:
    """The warehouse folder as a Dataset; `as_of` a snapshot id (see the `loads` view) or a time."""
    if isinstance(as_of, bool) or not isinstance(as_of, (int, datetime, str, type(None))):
        raise WarehouseError(f"as_of must be a snapshot id or a time, not {as_of!r}")
    snapshot = as_of if isinstance(as_of, int) else None
    at = None if isinstance(as_of, int) else as_of
    con = reader.connect(warehouse, snapshot=snapshot, at=at, catalog=catalog, data_path=data_path)
    return Dataset(con, str(reader.warehouse_dir(warehouse)))
