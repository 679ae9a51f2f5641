"""Every ingest test runs twice: on a SQLite file and on a private PostgreSQL schema.

``sim``: a small simulated week with a PBX hack (deterministic), its policy, and the
alert ids ``run_scan`` with detection finds in it (the independent expectation).
"""

from __future__ import annotations

import pytest

from tests.dbfixtures import db_url, engine
from tollguard.policy import Policy, load_policy
from tollguard.scan import ScanOptions, run_scan
from tollguard.sim.core import SimulationResult, simulate

__all__ = ["db_url", "engine"]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    return simulate(tmp_path_factory.mktemp("sim"), ["pbx-hack"], days=6, accounts=4, seed=3)


@pytest.fixture(scope="module")
def policy(sim: SimulationResult) -> Policy:
    return load_policy(sim.files["policy"])


@pytest.fixture(scope="module")
def scan_alert_ids(sim: SimulationResult, policy: Policy) -> set[str]:
    result = run_scan([sim.files["cdr"]], policy, ScanOptions(detect=True))
    ids = {a.id for a in result.alerts}
    assert ids, "the simulated hack must raise alerts"
    return ids
