"""The warehouse contract (schema), its storage, and the reader API for notebooks.

    from warehouse import load, connect, dataset, plot_utilisation
    df = load("parameters", warehouse="warehouse_data", columns=["label", "value"], limit=100)
    con = connect("warehouse_data")   # read-only DuckDB
    ds = dataset("warehouse_data")    # ds.version_summary.df(), ds.parameters_wide().df(), ...
    fig = plot_utilisation(job_id, version_id, warehouse="warehouse_data")

No Dagster and no HTTP client are imported here; matplotlib only when a chart is drawn.
"""
from warehouse.dataset import dataset
from warehouse.plots import plot_utilisation
from warehouse.reader import connect, load

__all__ = ["connect", "dataset", "load", "plot_utilisation"]
