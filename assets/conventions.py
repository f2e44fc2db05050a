"""How this code location names and labels its assets, in one place.

Every key starts with `modelarts/`, so `jobs`, `parameters` or `volumes` never collide
with another code location's assets in a shared deployment. Groups follow the
layers a payload passes through: `raw` (the API and the landed bodies), `tables`
(the tidy tables), `marts` (what is built on them for readers), and `maintenance`.

Owners come from $MODELARTS_ASSET_OWNERS (comma separated, `team:name` or an email),
read when the code loads; by default `team:mlops`.
"""
from __future__ import annotations

import os
from datetime import timedelta

import dagster as dg

PREFIX = "modelarts"
RAW_GROUP = "raw"
TABLES_GROUP = "tables"
MARTS_GROUP = "marts"
MAINTENANCE_GROUP = "maintenance"
OWNERS_ENV = "MODELARTS_ASSET_OWNERS"
DEFAULT_OWNERS = ("team:mlops",)

SOURCE_TAGS = {"source": "modelarts", "api_version": "v1"}
"""Tags every asset carries: the UI filters on them (`tag:source=modelarts`)."""


def key(name: str) -> dg.AssetKey:
    return dg.AssetKey([PREFIX, name])


def owners() -> list[str]:
    raw = os.environ.get(OWNERS_ENV, "")
    return [o.strip() for o in raw.split(",") if o.strip()] or list(DEFAULT_OWNERS)


def tags(layer: str) -> dict[str, str]:
    return {**SOURCE_TAGS, "layer": layer}


TABLES_AUTOMATION = dg.AutomationCondition.eager()
"""A table partition is derived as soon as its raw_payloads partition lands something, when
the automation sensor runs (`dagster dev` starts it): landing alone from the UI still ends
in fresh tables. The sync job materializes both in one run, so eager adds no second run."""

RAW_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=25), warn_window=timedelta(hours=2))
"""The sync is hourly: two hours without a landing is worth a look, a day is a failure."""
