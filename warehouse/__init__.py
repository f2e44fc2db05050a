"""The warehouse contract (schema), its storage, and the reader API for notebooks.

    from warehouse import load, connect
    df = load("parameters", warehouse="warehouse_data")
    con = connect("warehouse_data")   # read-only DuckDB

No Dagster and no HTTP client are imported here.
"""
from warehouse.reader import connect, load

__all__ = ["connect", "load"]
