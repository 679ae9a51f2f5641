"""Alerts of one batch of records filed in one transaction: the same cases as one by one."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection

from tollguard.cases.db import open_engine
from tollguard.cases.service import CaseService, IngestResult
from tollguard.detect.alert import Alert

from .conftest import MakeAlert


def _alerts(make_alert: MakeAlert) -> list[Alert]:
    """Two accounts, a warning that a critical joins, a replayed alert, a second case."""
    return [
        make_alert(id="b3", account="acme", severity="critical", detector="limits",
                   subject="acme", subject_kind="account", minutes=30,
                   cost=Decimal("600.0000"), records=40),
        make_alert(id="b1", account="acme", minutes=10),
        make_alert(id="b2", account="kapsalon", subject="SO", minutes=20),
        make_alert(id="b1", account="acme", minutes=10),  # the same alert again
    ]  # fmt: skip


def _summary(svc: CaseService, results: list[IngestResult]) -> list[tuple[Any, ...]]:
    cases = {r.case.id: svc.get(r.case.id, detail=True) for r in results}
    return [(r.alert_id, r.outcome, r.severity_raised, r.case.account) for r in results] + sorted(
        (c.account, c.severity, c.alert_count, c.cost, [e.kind for e in c.events])
        for c in cases.values()
    )


def test_a_batch_files_the_same_cases_as_one_by_one(tmp_path: Path, make_alert: MakeAlert) -> None:
    one, batch = (open_engine(f"sqlite:///{tmp_path / n}.db") for n in ("one", "batch"))
    try:
        by_one = CaseService(one)
        ordered = sorted(_alerts(make_alert), key=lambda a: (a.detected_at, a.id))
        singles = [by_one.ingest(a) for a in ordered]
        by_batch = CaseService(batch)
        batched = by_batch.ingest_batch(_alerts(make_alert))
        assert [r.outcome for r in batched] == ["created", "duplicate", "created", "joined"]
        assert _summary(by_batch, batched) == _summary(by_one, singles)
    finally:
        one.dispose()
        batch.dispose()


def test_one_bad_alert_loses_no_other(
    tmp_path: Path, make_alert: MakeAlert, monkeypatch: pytest.MonkeyPatch
) -> None:
    eng = open_engine(f"sqlite:///{tmp_path / 'cases.db'}")
    try:
        svc = CaseService(eng)
        real = svc._ingest

        def flaky(conn: Connection, alert: Alert, now: Any) -> IngestResult:
            if alert.id == "b2":
                raise RuntimeError("cannot file b2")
            return real(conn, alert, now)

        monkeypatch.setattr(svc, "_ingest", flaky)
        with pytest.raises(RuntimeError, match="cannot file b2"):
            svc.ingest_batch(_alerts(make_alert))
        filed = svc.list_cases()
        assert sorted(c.account for c in filed) == ["acme"]  # b1 and b3, not rolled back
        assert filed[0].alert_count == 2
        assert filed[0].severity == "critical"
    finally:
        eng.dispose()
