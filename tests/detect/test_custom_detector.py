"""Detectors of your own: one that extends ``BaseDetector`` (an interpreted subclass of a
compiled class on the compiled path) and one that only follows the ``Detector``
protocol. The engine runs both beside the built-in ones, with the policy's settings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from tests.detect.helpers import T0, call, policy, run
from tollguard.cdr.model import CallRecord
from tollguard.detect.base import AccountContext, BaseDetector, Detector, Finding
from tollguard.detect.engine import Engine, default_detectors

WATCHED = "+31201112233"


def _finding(record: CallRecord, ctx: AccountContext, det: Detector) -> Finding:
    name = det.name
    critical = ctx.settings(det).critical["calls"]
    calls = ctx.state[name] = ctx.state.get(name, 0) + 1
    return Finding(
        subject=WATCHED,
        subject_kind="number",
        severity="critical" if calls >= critical else "warning",
        started_at=record.start,
        records=calls,
        cost=record.cost or 0,  # type: ignore[arg-type]
        explanation={"value": calls, "why": f"{name} saw the watched number"},
        block="number",
    )


class Extending(BaseDetector):
    name = "extending"
    default_critical: ClassVar[dict[str, float]] = {"calls": 3.0}

    def observe(self, record: CallRecord, ctx: AccountContext) -> list[Finding]:
        return [_finding(record, ctx, self)] if record.callee_e164 == WATCHED else []


class Protocolled:
    name = "protocolled"
    default_warning: ClassVar[dict[str, float]] = {}
    default_critical: ClassVar[dict[str, float]] = {"calls": 2.0}
    default_options: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        self.finished = 0

    def observe(self, record: CallRecord, ctx: AccountContext) -> list[Finding]:
        return [_finding(record, ctx, self)] if record.callee_e164 == WATCHED else []

    def finish(self) -> list[tuple[Finding, AccountContext]]:
        self.finished += 1
        return []


def _calls(n: int) -> list[CallRecord]:
    return [call("acme", WATCHED, T0 + timedelta(hours=10, minutes=2 * i)) for i in range(n)]


def test_both_kinds_alert_escalate_and_block_beside_the_built_in_detectors() -> None:
    own = Protocolled()
    engine = Engine(policy(), enforce=True, detectors=[*default_detectors(), Extending(), own])
    emitted = run(engine, _calls(6))
    mine = [a for a in emitted if a.detector in ("extending", "protocolled")]
    assert [(a.detector, a.severity) for a in mine] == [
        ("extending", "warning"),
        ("protocolled", "warning"),
        ("protocolled", "critical"),  # the 2nd call: escalated, the number blocked
    ]
    assert own.finished == 1
    books = engine.enforcement()["acme"]
    assert books.calls_allowed == 2 and books.calls_refused == 4
    assert WATCHED in books.blocked_subjects


def test_the_policy_switches_one_off_or_makes_it_report_only() -> None:
    off = policy({"defaults": {"detectors": {"protocolled": {"enabled": False}}}})
    engine = Engine(off, detectors=[Extending(), Protocolled()])
    assert {a.detector for a in run(engine, _calls(4))} == {"extending"}
    quiet = policy({"defaults": {"detectors": {"extending": {"report_only": True}}}})
    engine = Engine(quiet, enforce=True, detectors=[Extending()])
    alerts = run(engine, _calls(4))
    assert alerts[-1].severity == "critical" and alerts[-1].report_only
    assert engine.enforcement()["acme"].calls_refused == 0
