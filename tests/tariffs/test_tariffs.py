"""Tariff comparison (registry vs carrier) and the TariffWatch hook."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tollguard.cdr.model import CallRecord, Disposition
from tollguard.tariffs import TariffError, TariffTable, TariffWatch, compare, parse_tariff


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def sources(tmp_path: Path) -> tuple[TariffTable, TariffTable]:
    registry = write(
        tmp_path / "registry.csv",
        (
            "number,tariff,billing\n"
            "0909 1234567,0.45/min,1/1\n"
            "0909 7654321,0.80/min,\n"
            "0909 1111111,1.00/call,\n"
        ),
    )
    carrier = write(
        tmp_path / "carrier.csv",
        (
            "number,per_call,per_minute,currency\n"
            "+319091234567,1.30,,EUR\n"
            "+319097654321,,0.80,EUR\n"
            "+319092222222,0.50,,EUR\n"
        ),
    )
    return (TariffTable.load(registry, country="NL"), TariffTable.load(carrier, country="NL"))


def test_cost_at_lengths() -> None:
    per_min = parse_tariff("0.45/min")
    assert per_min.cost(12) == Decimal("0.0900")
    assert per_min.cost(180) == Decimal("1.3500")
    sixty = parse_tariff("0.45/min", billing="60/60")
    assert sixty.cost(12) == Decimal("0.4500")
    assert sixty.cost(61) == Decimal("0.9000")
    assert parse_tariff("0.10/call + 0.60/min").cost(30) == Decimal("0.4000")
    with pytest.raises(TariffError):
        parse_tariff("cheap")


def test_registry_vs_carrier(sources: tuple[TariffTable, TariffTable]) -> None:
    a, b = sources
    found = compare(a, b)
    by = {d.number: d for d in found}
    d = by["+319091234567"]
    assert d.kind == "differs"
    short, long = d.comparisons
    assert (short.seconds, short.cost_a, short.cost_b) == (12, Decimal("0.0900"), Decimal("1.3000"))
    assert short.factor == Decimal("14.44")
    assert long.factor == Decimal("1.04")
    assert d.max_factor == Decimal("14.44")
    assert "+319097654321" not in by  # agree
    assert by["+319091111111"].kind == "only_in_a"
    assert by["+319092222222"].kind == "only_in_b"
    assert found[0].number == "+319091234567"  # largest factor first


def test_watch_raises_one_alert_per_number(sources: tuple[TariffTable, TariffTable]) -> None:
    watch = TariffWatch(compare(*sources))
    t0 = datetime(2008, 4, 25, 18, 0, tzinfo=UTC)

    def call(i: int, callee: str = "+319091234567") -> CallRecord:
        start = t0 + timedelta(seconds=20 * i)
        return CallRecord(
            record_id=f"r{i}", account="sim-1", caller="+31611111111", callee=callee,
            start=start, end=start + timedelta(seconds=12), duration=12, billsec=12,
            disposition=Disposition.ANSWERED, callee_e164=callee, cost=Decimal("1.3000"),
        )  # fmt: skip

    alert = watch.check(call(0))
    assert alert is not None and alert.severity == "critical"
    assert alert.detector == "tariff_discrepancy" and alert.subject == "+319091234567"
    assert "14.44" in alert.explanation["why"]
    assert watch.check(call(1)) is None
    assert watch.check(call(2, "+319097654321")) is None
    assert watch.alerts["+319091234567"].records == 2
    assert watch.alerts["+319091234567"].cost == Decimal("2.6000")
