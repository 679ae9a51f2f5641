"""POST /v1/cdrs with a database: records stored once, only new ones detected.

A switch that re-sends a batch (timeout, retry, restart) must change nothing: the
records are stored under their ids once, and the engine and the cases see them once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from tollguard.api.app import create_app
from tollguard.cases.service import CaseService
from tollguard.cdr.model import CallRecord
from tollguard.ingest.core import Ingestor
from tollguard.limits.memory import MemoryState
from tollguard.limits.service import AuthorizeService, Settings
from tollguard.policy import Policy
from tollguard.sim.core import SimulationResult
from tollguard.store.cases_schema import alerts as alerts_t
from tollguard.store.cases_schema import cases as cases_t
from tollguard.store.schema import rated_records


class CountingEngine:
    """Stands in for the detection engine: remembers every record it was given."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def process(self, record: CallRecord) -> list[Any]:
        self.seen.append(record.record_id)
        return []


def make_client(engine: Engine, policy: Policy, detection: Any = None) -> TestClient:
    service = AuthorizeService(policy, MemoryState(), None, Settings(allow_unknown_accounts=True))
    app = create_app(
        service,
        None,
        sweep_interval_s=0,
        engine=detection,
        cases=CaseService(engine, policy=policy),
        ingestor=Ingestor(engine, policy, rates=service.rates.default_rates),
    )
    return TestClient(app, raise_server_exceptions=False)


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_same_json_batch_twice_is_stored_and_detected_once(engine: Engine, policy: Policy) -> None:
    start = datetime(2026, 10, 5, 10, 0, tzinfo=UTC).isoformat()
    batch = [
        {"record_id": f"sw1-{i}", "account": "acct-a", "caller": "2001",
         "callee": "0201234567", "start": start, "duration": 70, "billsec": 60 + i}
        for i in range(5)
    ]  # fmt: skip
    batch.append(dict(batch[0]))  # the same record twice in one request
    detection = CountingEngine()
    with make_client(engine, policy, detection) as client:
        first = client.post("/v1/cdrs", json=batch)
        assert first.status_code == 200, first.text
        assert first.json()["stored"] == {"inserted": 5, "duplicates": 1}
        again = client.post("/v1/cdrs", json=batch)
        assert again.status_code == 200, again.text
        assert again.json()["stored"] == {"inserted": 0, "duplicates": 6}
        assert again.json()["accepted"] == 6
    assert sorted(detection.seen) == [f"sw1-{i}" for i in range(5)]
    assert count(engine, rated_records) == 5
    with engine.connect() as conn:
        cost = conn.execute(
            select(rated_records.c.cost_e4).where(rated_records.c.record_id == "sw1-0")
        ).scalar_one()
    assert cost is not None and cost > 0  # priced by the store pipeline (policy deck)


@pytest.mark.parametrize("split", [False, True])
def test_csv_resend_changes_nothing_alerts_and_cases_once(
    engine: Engine,
    sim: SimulationResult,
    policy: Policy,
    scan_alert_ids: set[str],
    split: bool,
) -> None:
    body = sim.files["cdr"].read_bytes()
    lines = body.splitlines(keepends=True)
    parts = [b"".join(lines[: len(lines) // 2]), b"".join(lines[len(lines) // 2 :])]
    bodies = parts if split else [body]
    headers = {"content-type": "text/csv"}
    with make_client(engine, policy) as client:
        alerts: list[dict[str, Any]] = []
        for part in bodies:
            r = client.post("/v1/cdrs", content=part, headers=headers)
            assert r.status_code == 200, r.text
            alerts += r.json()["alerts"]
        assert {a["id"] for a in alerts} == scan_alert_ids
        filed = (count(engine, alerts_t), count(engine, cases_t))
        assert filed[0] == len(scan_alert_ids)

        again = client.post("/v1/cdrs", content=body, headers=headers).json()
        assert again["stored"] == {"inserted": 0, "duplicates": sim.calls}
        assert again["alerts"] == [] and again["blocked"] == []
    assert count(engine, rated_records) == sim.calls
    assert (count(engine, alerts_t), count(engine, cases_t)) == filed
