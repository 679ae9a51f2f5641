"""Test helpers: classify and price simulator records, and build hand-made records."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

from tollguard.cdr.model import CallRecord, Disposition
from tollguard.detect.alert import Alert
from tollguard.detect.engine import Engine
from tollguard.detect.signature import Priors
from tollguard.numbering.classify import NumberClassifier
from tollguard.policy import Policy, parse_policy
from tollguard.sim import generate_calls
from tollguard.sim.rates import price_e4

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


@cache
def classifier() -> NumberClassifier:
    return NumberClassifier()


def enrich(records: Iterable[CallRecord]) -> Iterator[CallRecord]:
    """Fill country, number type, risk and cost the way numbering + rating would."""
    cls = classifier()
    for rec in records:
        info = cls.classify(rec.callee_e164)
        rec.country = info.country
        rec.number_type = str(info.number_type)
        rec.risk = info.risk
        rec.cost = (
            (Decimal(price_e4(rec.callee_e164, rec.billsec)) / 10000).quantize(Decimal("0.0001"))
            if rec.answered
            else Decimal("0.0000")
        )
        yield rec


def sim_records(scenarios: list[str], **kw: Any) -> list[CallRecord]:
    return list(enrich(generate_calls(scenarios, **kw)))


def policy(data: dict[str, Any] | None = None) -> Policy:
    base: dict[str, Any] = {
        "defaults": {"country": "NL", "timezone": "Europe/Amsterdam", "currency": "EUR"}
    }
    for key, value in (data or {}).items():
        if key == "defaults":
            base["defaults"].update(value)
        else:
            base[key] = value
    return parse_policy(base)


def run(engine: Engine, records: Iterable[CallRecord]) -> list[Alert]:
    emitted: list[Alert] = []
    for rec in records:
        emitted.extend(engine.process(rec))
    emitted.extend(engine.finish())
    return emitted


_SEQ = [0]


def call(
    account: str,
    callee: str,
    start: datetime,
    talk: int = 60,
    *,
    ring: int = 5,
    answered: bool = True,
    caller: str = "+31201234567",
    cost: str | None = None,
    country: str | None = None,
    number_type: str | None = None,
    risk: str | None = None,
) -> CallRecord:
    """A hand-made, classified record (classified by the real classifier unless given)."""
    _SEQ[0] += 1
    info = classifier().classify(callee)
    end = start + timedelta(seconds=ring + (talk if answered else 0))
    billsec = talk if answered else 0
    if cost is None:
        value = Decimal(price_e4(callee, billsec)) / 10000 if answered else Decimal(0)
    else:
        value = Decimal(cost)
    return CallRecord(
        record_id=f"t:{_SEQ[0]}",
        account=account,
        caller=caller,
        callee=callee,
        start=start,
        end=end,
        duration=ring + billsec,
        billsec=billsec,
        disposition=Disposition.ANSWERED if answered else Disposition.NO_ANSWER,
        answer=start + timedelta(seconds=ring) if answered else None,
        caller_e164=caller,
        callee_e164=callee,
        country=country or info.country,
        number_type=number_type or str(info.number_type),
        risk=risk if risk is not None else info.risk,
        cost=value.quantize(Decimal("0.0001")),
    )


def by_end(records: Iterable[CallRecord]) -> list[CallRecord]:
    return sorted(records, key=lambda r: (r.end, r.record_id))


@cache
def calibrated_priors() -> Priors:
    """Population priors from a separate calibration month (its own seed), as an operator
    would build them from weeks of history before switching detection on."""
    return Priors.learn(sim_records([], days=28, seed=9001, accounts=40), "Europe/Amsterdam")


def simulation(scenarios: list[str], **kw: Any) -> tuple[list[CallRecord], dict[str, Any]]:
    """Records (classified and priced) and the ground truth of one simulated dataset."""
    from tollguard.sim import Simulation

    sim = Simulation(scenarios, **kw)
    records = list(enrich(sim.records()))
    return records, sim.truth()
