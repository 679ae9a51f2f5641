"""Traffic simulator: realistic Dutch business traffic plus the fraud scenarios of the brief.

``simulate`` writes a dataset (CDR file, rate deck, policy, ground truth) into a folder;
``generate_calls`` gives the same calls in memory as ``CallRecord`` objects.
"""

from tollguard.sim.core import (
    ALL_SCENARIOS,
    FORMATS,
    Simulation,
    SimulationResult,
    expand_scenarios,
    generate_calls,
    simulate,
)
from tollguard.sim.rates import RATES_HEADER
from tollguard.sim.scenarios import SCENARIOS

__all__ = [
    "ALL_SCENARIOS",
    "FORMATS",
    "RATES_HEADER",
    "SCENARIOS",
    "Simulation",
    "SimulationResult",
    "expand_scenarios",
    "generate_calls",
    "simulate",
]
