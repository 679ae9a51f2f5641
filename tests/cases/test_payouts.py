"""Payout holds: ledger, overlap refusal, release/forfeit with reasons, report, audit."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import polars as pl
import pytest
from sqlalchemy import Engine

from tollguard.cases import audit
from tollguard.cases.payouts import PayoutError, PayoutLedger, amount_for_number
from tollguard.cases.records import normalize

NOW = datetime(2008, 4, 28, 9, 0, tzinfo=UTC)


def test_hold_release_forfeit_and_report(engine: Engine) -> None:
    ledger = PayoutLedger(engine)
    h1 = ledger.hold(
        "+319091234567",
        date(2008, 4, 25),
        date(2008, 4, 28),
        Decimal("611020.80"),
        reason="call generator, 609 SIMs",
        actor="fraud-desk",
        now=NOW,
    )
    with pytest.raises(PayoutError, match="already has a hold"):
        ledger.hold(
            "+319091234567",
            date(2008, 4, 27),
            date(2008, 4, 29),
            Decimal("1"),
            reason="again",
            actor="x",
            now=NOW,
        )
    h2 = ledger.hold(
        "+319097654321",
        date(2008, 4, 25),
        date(2008, 4, 28),
        Decimal("12.50"),
        reason="same SIMs",
        actor="fraud-desk",
        now=NOW,
    )
    with pytest.raises(PayoutError, match="reason"):
        ledger.release(h2.id, " ", actor="x", now=NOW)
    ledger.release(h2.id, "operator proved genuine traffic", actor="fraud-desk", now=NOW)
    ledger.forfeit(h1.id, "misuse confirmed (contract art. 7)", actor="fraud-desk", now=NOW)
    with pytest.raises(PayoutError, match="already forfeited"):
        ledger.release(h1.id, "late", actor="x", now=NOW)
    report = {r["number"]: r for r in ledger.report()}
    assert report["+319091234567"]["forfeited"] == "611020.8000"
    assert report["+319097654321"]["released"] == "12.5000"
    assert report["+319097654321"]["held"] == "0.0000"
    with engine.connect() as conn:
        assert [e.action for e in audit.read(conn)] == [
            "payout.hold",
            "payout.hold",
            "payout.released",
            "payout.forfeited",
        ]
        assert audit.verify_db(conn).ok


def test_amount_from_rated_records() -> None:
    frame = normalize(
        pl.DataFrame(
            {
                "record_id": ["a", "b", "c"],
                "account": ["s1", "s2", "s3"],
                "callee_e164": ["+319091234567", "+319091234567", "+31201234567"],
                "start": ["2008-04-25T18:00:00Z", "2008-04-29T01:00:00Z", "2008-04-25T18:00:00Z"],
                "end": ["2008-04-25T18:00:12Z", "2008-04-29T01:00:12Z", "2008-04-25T18:00:12Z"],
                "cost": ["1.3000", "1.3000", "0.0100"],
                "currency": ["EUR", "EUR", "EUR"],
            }
        )
    )
    amount, calls, cur = amount_for_number(
        frame, "+319091234567", date(2008, 4, 25), date(2008, 4, 28)
    )
    assert (amount, calls, cur) == (Decimal("1.3000"), 1, "EUR")
