"""CaseService: grouping, joining, reopening, workflow, timers, actions, tuning, audit."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine

from tollguard.cases import audit
from tollguard.cases.model import CaseError, human_duration
from tollguard.cases.service import CaseService, TuningRecord
from tollguard.policy import parse_policy

from .conftest import T0, MakeAlert


def test_alerts_of_one_account_join_one_case(engine: Engine, make_alert: MakeAlert) -> None:
    svc = CaseService(engine)
    r1 = svc.ingest(make_alert())
    assert r1.outcome == "created"
    r2 = svc.ingest(
        make_alert(
            id="a2",
            detector="limits",
            subject="acme",
            subject_kind="account",
            severity="critical",
            minutes=25,
            cost=Decimal("600.0000"),
            records=40,
        )
    )
    assert r2.outcome == "joined"
    assert r2.severity_raised
    case = svc.get(r1.case.id, detail=True)
    assert case.alert_count == 2
    assert case.severity == "critical"
    assert case.cost == Decimal("600.0000")
    assert case.first_record_at == T0
    # the critical alert defines onset and first alert; the warning stays in the history
    assert case.first_alert_at == T0 + timedelta(minutes=25)
    assert [e.kind for e in case.events] == ["opened", "alert", "alert"]
    # same alert again: nothing changes
    assert svc.ingest(make_alert()).outcome == "duplicate"
    assert svc.get(case.id).alert_count == 2


def test_number_centric_alerts_group_by_number(engine: Engine, make_alert: MakeAlert) -> None:
    svc = CaseService(engine)
    a = svc.ingest(
        make_alert(
            id="p1",
            detector="pumping",
            account="sim-1",
            subject="+319091234567",
            subject_kind="number",
        )
    )
    b = svc.ingest(
        make_alert(
            id="p2",
            detector="pumping",
            account="sim-2",
            subject="+319091234567",
            subject_kind="number",
        )
    )
    assert a.case.id == b.case.id
    assert a.case.key == "number:+319091234567"


def test_escalated_alert_updates_case(engine: Engine, make_alert: MakeAlert) -> None:
    svc = CaseService(engine)
    svc.ingest(make_alert())
    r = svc.ingest(
        make_alert(
            severity="critical",
            escalated_at=T0 + timedelta(minutes=30),
            detected_at=T0 + timedelta(minutes=30),
            records=9,
        )
    )
    assert r.outcome == "updated"
    assert r.severity_raised
    assert r.case.severity == "critical"
    assert r.case.records == 9


def test_workflow_and_timers(engine: Engine, make_alert: MakeAlert) -> None:
    svc = CaseService(engine)
    cid = svc.ingest(make_alert()).case.id
    with pytest.raises(CaseError):
        svc.close(cid, actor="ana", now=T0 + timedelta(minutes=12))
    svc.ack(cid[:6], actor="ana", now=T0 + timedelta(minutes=15))
    svc.action(cid, "block", actor="ana", now=T0 + timedelta(minutes=21), note="PBX trunk")
    svc.comment(cid, "PIN 0000 on handset 204", actor="ana", now=T0 + timedelta(minutes=22))
    svc.assign(cid, "bob", actor="ana", now=T0 + timedelta(minutes=23))
    svc.confirm(cid, actor="bob", now=T0 + timedelta(hours=1))
    case = svc.close(cid, actor="bob", now=T0 + timedelta(hours=2))
    assert case.status == "closed"
    assert case.assignee == "bob"
    timers = {t.name: t for t in case.timers()}
    assert timers["blocked"].since_onset == timedelta(minutes=21)
    assert timers["blocked"].sentence().startswith("blocked 21 minutes after onset")
    assert timers["acknowledged"].since_onset == timedelta(minutes=15)
    with pytest.raises(CaseError, match="closed"):
        svc.ack(cid, actor="ana", now=T0 + timedelta(hours=3))


def test_closed_case_reopens_when_pattern_returns(engine: Engine, make_alert: MakeAlert) -> None:
    svc = CaseService(engine)
    cid = svc.ingest(make_alert()).case.id
    svc.confirm(cid, actor="ana", now=T0 + timedelta(hours=1))
    svc.close(cid, actor="ana", now=T0 + timedelta(hours=2))
    r = svc.ingest(make_alert(id="a9", detected_at=T0 + timedelta(days=2)))
    assert r.outcome == "reopened"
    assert r.case.id == cid
    assert r.case.status == "new" and r.case.reopened == 1
    # long after the window: a new case
    svc.confirm(cid, actor="ana", now=T0 + timedelta(days=3))
    svc.close(cid, actor="ana", now=T0 + timedelta(days=3))
    r2 = svc.ingest(make_alert(id="a10", detected_at=T0 + timedelta(days=90)))
    assert r2.outcome == "created" and r2.case.id != cid


def test_false_positive_produces_tuning(engine: Engine, make_alert: MakeAlert) -> None:
    seen: list[TuningRecord] = []
    svc = CaseService(engine, tuning_hooks=[seen.append])
    cid = svc.ingest(make_alert()).case.id
    svc.false_positive(cid, actor="ana", now=T0 + timedelta(hours=1), note="new office in Dili")
    assert [(t.option, t.value) for t in seen] == [("known_countries", "TL")]
    snippet = svc.tuning_toml("acme")
    assert "[accounts.acme.detectors.destination.options]" in snippet
    assert 'known_countries = ["TL"]' in snippet
    import tomllib

    assert tomllib.loads(snippet)["accounts"]["acme"]["detectors"]["destination"]["options"] == {
        "known_countries": ["TL"]
    }


def test_auto_block_by_policy_and_escalation(engine: Engine, make_alert: MakeAlert) -> None:
    policy = parse_policy(
        {"accounts": {"acme": {"on_critical": "block", "escalation": {"after_minutes": 30}}}}
    )
    svc = CaseService(engine, policy=policy)
    cid = svc.ingest(make_alert(severity="critical", minutes=11)).case.id
    case = svc.get(cid)
    assert case.blocked_at == T0 + timedelta(minutes=11)
    assert human_duration(case.blocked_at - case.first_record_at) == "11 minutes"
    assert svc.escalate_due(T0 + timedelta(minutes=40)) == []
    due = svc.escalate_due(T0 + timedelta(minutes=41))
    assert [c.id for c in due] == [cid]
    assert svc.escalate_due(T0 + timedelta(hours=5)) == []  # once


def test_every_change_is_in_a_valid_audit_chain(engine: Engine, make_alert: MakeAlert) -> None:
    svc = CaseService(engine)
    cid = svc.ingest(make_alert()).case.id
    svc.ack(cid, actor="ana", now=T0 + timedelta(minutes=15))
    svc.comment(cid, "looking", actor="ana", now=T0 + timedelta(minutes=16))
    with engine.connect() as conn:
        result = audit.verify_db(conn)
        actions = [e.action for e in audit.read(conn)]
    assert result.ok and result.checked == 3
    assert actions == ["alert", "case.ack", "case.comment"]


def test_a_pattern_long_after_a_quiet_case_opens_a_new_case(
    engine: Engine, make_alert: MakeAlert
) -> None:
    svc = CaseService(engine)
    old = svc.ingest(make_alert()).case.id
    later = T0 + timedelta(days=4)
    new = svc.ingest(make_alert(id="b1", started_at=later, detected_at=later)).case
    assert new.id != old and new.first_record_at == later
    # a number alert from the same account joins the account's active case
    r = svc.ingest(
        make_alert(
            id="b2",
            detector="pumping",
            subject="+67078915987",
            subject_kind="number",
            started_at=later,
            detected_at=later,
        )
    )
    assert r.case.id == new.id
