"""One partition per ModelArts project, so projects sync, fail and backfill independently.

Static partitions, read from the environment when the code location loads:
`MODELARTS_PROJECT_IDS` (separated by commas or spaces), else `MODELARTS_PROJECT_ID`
(which the CLI reads too), else the simulator's demo project.

Why static and not dynamic partitions: the project list is configuration a person
writes down (like the endpoint), not data discovered at run time. Static partitions
show up in the UI, in `dagster asset materialize --partition`, in backfills and in
the schedule the moment the code loads, with no sensor or instance state to seed
first, and a test or the demo gets the same partitions from the same variable.
The price: adding a project means changing the variable and reloading the code
location (the "Reload" button in `dagster dev`), which is how every other setting
changes too.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

from pipelines.modelarts import DEMO_PROJECT_ID
from warehouse.store import validate_project_id

PROJECT_IDS_ENV = "MODELARTS_PROJECT_IDS"
PROJECT_ID_ENV = "MODELARTS_PROJECT_ID"


def project_ids_from_env(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The configured projects, validated now so a typo fails at load time, not at 3 a.m."""
    raw = environ.get(PROJECT_IDS_ENV) or environ.get(PROJECT_ID_ENV) or DEMO_PROJECT_ID
    ids = [validate_project_id(p) for p in raw.replace(",", " ").split()]  # commas or spaces, as the CLI takes
    return list(dict.fromkeys(ids)) or [DEMO_PROJECT_ID]


project_partitions = dg.StaticPartitionsDefinition(project_ids_from_env())
