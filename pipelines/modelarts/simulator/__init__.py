"""A stand-in for the ModelArts v1 training-job API, so demos and tests need no cloud account.

    from pipelines.modelarts.simulator import SimulatorServer, World

    with SimulatorServer(World(jobs=20, seed=1), token="t0k") as sim:
        ...  # sim.url is the base URL; sim.counts, sim.world.truth(), sim.world.advance(...)

`generator` makes the payloads, `world` holds jobs/versions and the clock, `faults`
corrupts payloads and decides transient faults, `server` speaks HTTP.
"""
from pipelines.modelarts.simulator.faults import PAYLOAD_FAULTS, TRANSIENT_FAULTS, TransientFaults
from pipelines.modelarts.simulator.hostile import HOSTILE_MODES, Hostile
from pipelines.modelarts.simulator.generator import generate_version, iter_corpus
from pipelines.modelarts.simulator.server import SimulatorServer, serve
from pipelines.modelarts.simulator.world import DEFAULT_PROJECT_ID, VersionTruth, World

__all__ = [
    "DEFAULT_PROJECT_ID", "HOSTILE_MODES", "PAYLOAD_FAULTS", "TRANSIENT_FAULTS", "Hostile", "SimulatorServer",
    "TransientFaults",
    "VersionTruth", "World", "generate_version", "iter_corpus", "serve",
]
