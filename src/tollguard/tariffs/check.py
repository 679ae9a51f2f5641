"""Tariff integrity: compare two tariff sources for the same numbers, and watch traffic to
numbers whose sources disagree.

A tariff source is a CSV with a ``number`` column (E.164, national with ``--country``,
or a prefix ending in ``*``) and either a ``tariff`` column in words
(``0.45/min``, ``1.30/call``, ``0.10/call + 0.45/min``) or ``per_minute`` /
``per_call`` columns; optional ``billing`` (``1/1`` default, ``60/60``, ``30/6``) and
``currency`` (default EUR). Example: the national registry says EUR 0.45/min, the
carrier's billing says EUR 1.30 per call.

Two tariffs are compared by what a call *costs* under each at typical lengths (default
12 s, the length of a call generator's calls, and 180 s, an ordinary call): a per-call
price and a per-minute price can only be compared at a length. The factor is the larger
cost over the smaller. 0.45/min vs 1.30/call: 12 s -> 0.0900 vs 1.3000, factor 14.44;
180 s -> 1.3500 vs 1.3000, factor 1.04.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import phonenumbers

from tollguard.cdr.model import CallRecord
from tollguard.detect.alert import Alert, Evidence

DEFAULT_LENGTHS = (12, 180)
Q4 = Decimal("0.0001")
_PART = re.compile(
    r"^\s*(?P<amount>\d+(?:\.\d+)?)\s*/\s*(?P<unit>min|minute|call|connect)\s*$", re.IGNORECASE
)


class TariffError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Tariff:
    per_call: Decimal = Decimal(0)
    per_minute: Decimal = Decimal(0)
    first_s: int = 1
    step_s: int = 1
    currency: str = "EUR"
    text: str = ""  # as written in the source
    line: int = 0

    def charged_seconds(self, seconds: int) -> int:
        if seconds <= 0:
            return 0
        if seconds <= self.first_s:
            return self.first_s
        return self.first_s + math.ceil((seconds - self.first_s) / self.step_s) * self.step_s

    def cost(self, seconds: int) -> Decimal:
        """Cost of an answered call of ``seconds`` (4 places, half up); 0 s costs nothing."""
        if seconds <= 0:
            return Decimal(0).quantize(Q4)
        per_second = self.per_minute * self.charged_seconds(seconds) / 60
        return (self.per_call + per_second).quantize(Q4, ROUND_HALF_UP)

    def describe(self) -> str:
        parts = []
        if self.per_call:
            parts.append(f"{self.currency} {self.per_call}/call")
        if self.per_minute:
            billing = (
                f" ({self.first_s}/{self.step_s})"
                if (self.first_s, self.step_s)
                != (
                    1,
                    1,
                )
                else ""
            )
            parts.append(f"{self.currency} {self.per_minute}/min{billing}")
        return " + ".join(parts) or f"{self.currency} 0"


def parse_tariff(text: str, *, billing: str = "", currency: str = "EUR", line: int = 0) -> Tariff:
    per_call = Decimal(0)
    per_minute = Decimal(0)
    if not text.strip():
        raise TariffError("empty tariff")
    for part in text.split("+"):
        m = _PART.match(part)
        if m is None:
            raise TariffError(f"cannot read tariff {text!r}: use e.g. '0.45/min' or '1.30/call'")
        amount = Decimal(m["amount"])
        if m["unit"].lower() in {"min", "minute"}:
            per_minute += amount
        else:
            per_call += amount
    first, step = _billing(billing or "1/1")
    return Tariff(per_call, per_minute, first, step, currency.upper(), text.strip(), line)


def _billing(text: str) -> tuple[int, int]:
    try:
        first, step = (int(x) for x in text.split("/"))
    except ValueError:
        raise TariffError(f"billing {text!r}: use 'first/step' seconds like 60/60 or 1/1") from None
    if first < 1 or step < 1:
        raise TariffError(f"billing {text!r}: both parts must be at least 1 second")
    return first, step


def normalize_number(raw: str, country: str | None = None) -> str:
    """E.164 for full numbers (national ones with ``country``); prefixes keep their '*'."""
    s = re.sub(r"[\s\-().]", "", raw)
    if s.endswith("*"):
        digits = s[:-1].lstrip("+")
        return "+" + digits.removeprefix("00") + "*" if s.startswith(("+", "00")) else s
    if s.startswith("00"):
        s = "+" + s[2:]
    if not s.startswith("+") and country:
        try:
            parsed = phonenumbers.parse(s, country.upper())
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        except phonenumbers.NumberParseException:
            return s
    return s


@dataclass
class TariffTable:
    name: str
    tariffs: dict[str, Tariff] = field(default_factory=dict)

    @classmethod
    def load(
        cls, path: Path, *, country: str | None = None, name: str | None = None
    ) -> TariffTable:
        table = cls(name or path.name)
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            cols = {c.strip().lower(): c for c in reader.fieldnames or []}
            number_col = cols.get("number") or cols.get("prefix")
            if number_col is None:
                raise TariffError(f"{path}: needs a 'number' column (header: {reader.fieldnames})")
            for line, row in enumerate(reader, start=2):
                raw = (row.get(number_col) or "").strip()
                if not raw:
                    continue

                def get(key: str, row: dict[str, str] = row) -> str:
                    col = cols.get(key)
                    return (row.get(col) or "").strip() if col else ""

                try:
                    if get("tariff"):
                        text = get("tariff")
                    else:
                        parts = []
                        if get("per_call"):
                            parts.append(f"{get('per_call')}/call")
                        if get("per_minute"):
                            parts.append(f"{get('per_minute')}/min")
                        text = " + ".join(parts)
                    tariff = parse_tariff(
                        text, billing=get("billing"), currency=get("currency") or "EUR", line=line
                    )
                except (TariffError, InvalidOperation) as exc:
                    raise TariffError(f"{path}:{line}: {exc}") from None
                number = normalize_number(raw, country)
                if number in table.tariffs:
                    raise TariffError(f"{path}:{line}: {number} is listed twice")
                table.tariffs[number] = tariff
        return table

    def lookup(self, number: str) -> tuple[str, Tariff] | None:
        """Exact number first, then the longest ``prefix*`` entry."""
        if number in self.tariffs:
            return number, self.tariffs[number]
        best: tuple[str, Tariff] | None = None
        for key, tariff in self.tariffs.items():
            longer = best is None or len(key) > len(best[0])
            if key.endswith("*") and number.startswith(key[:-1]) and longer:
                best = (key, tariff)
        return best


@dataclass(slots=True)
class Comparison:
    seconds: int
    cost_a: Decimal
    cost_b: Decimal

    @property
    def factor(self) -> Decimal | None:
        lo, hi = sorted((self.cost_a, self.cost_b))
        if lo == 0:
            return None  # a free call against a paid one has no finite factor
        return (hi / lo).quantize(Decimal("0.01"), ROUND_HALF_UP)

    def to_dict(self) -> dict[str, Any]:
        f = self.factor
        return {
            "seconds": self.seconds,
            "cost_a": str(self.cost_a),
            "cost_b": str(self.cost_b),
            "factor": str(f) if f is not None else None,
            "higher": "a"
            if self.cost_a > self.cost_b
            else "b"
            if self.cost_b > self.cost_a
            else "",
        }


def _higher(a: Decimal, b: Decimal) -> str:
    return "a" if a > b else "b" if b > a else ""


@dataclass(slots=True)
class Discrepancy:
    number: str
    kind: str  # differs | currency | only_in_a | only_in_b
    tariff_a: Tariff | None
    tariff_b: Tariff | None
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def max_factor(self) -> Decimal | None:
        factors = [c.factor for c in self.comparisons if c.factor is not None]
        return max(factors) if factors else None

    def to_dict(self) -> dict[str, Any]:
        mf = self.max_factor
        return {
            "number": self.number,
            "kind": self.kind,
            "a": self.tariff_a.describe() if self.tariff_a else None,
            "b": self.tariff_b.describe() if self.tariff_b else None,
            "a_line": self.tariff_a.line if self.tariff_a else None,
            "b_line": self.tariff_b.line if self.tariff_b else None,
            "max_factor": str(mf) if mf is not None else None,
            "at": [c.to_dict() for c in self.comparisons],
        }


def compare(
    a: TariffTable, b: TariffTable, *, lengths: Sequence[int] = DEFAULT_LENGTHS
) -> list[Discrepancy]:
    """Every number on which the two sources disagree, largest factor first."""
    if not lengths or any(s <= 0 for s in lengths):
        raise TariffError("call lengths must be positive seconds, e.g. 12,180")
    out: list[Discrepancy] = []
    for number in sorted(set(a.tariffs) | set(b.tariffs)):
        ta, tb = a.tariffs.get(number), b.tariffs.get(number)
        if ta is None or tb is None:
            out.append(Discrepancy(number, "only_in_b" if ta is None else "only_in_a", ta, tb))
            continue
        comps = [Comparison(s, ta.cost(s), tb.cost(s)) for s in lengths]
        if ta.currency != tb.currency:
            out.append(Discrepancy(number, "currency", ta, tb, comps))
        elif any(c.cost_a != c.cost_b for c in comps):
            out.append(Discrepancy(number, "differs", ta, tb, comps))
    order = {"differs": 0, "currency": 1, "only_in_a": 2, "only_in_b": 3}
    out.sort(key=lambda d: (order[d.kind], -(d.max_factor or 0), d.number))
    return out


class TariffWatch:
    """A detector-like hook: ``check(record)`` returns an alert the first time traffic hits
    a number whose tariff sources disagree (then keeps that alert's count and cost up to
    date and returns None). Severity is critical when the factor at the call's own length
    reaches ``critical_factor``."""

    name = "tariff_discrepancy"

    def __init__(
        self,
        discrepancies: Iterable[Discrepancy],
        *,
        critical_factor: Decimal = Decimal(3),
        min_factor: Decimal = Decimal("1.5"),
    ) -> None:
        self.by_number = {
            d.number: d
            for d in discrepancies
            if d.kind == "differs" and d.tariff_a is not None and d.tariff_b is not None
        }
        self.critical_factor = critical_factor
        self.min_factor = min_factor
        self.alerts: dict[str, Alert] = {}

    def _match(self, number: str) -> Discrepancy | None:
        if number in self.by_number:
            return self.by_number[number]
        best: Discrepancy | None = None
        for key, d in self.by_number.items():
            longer = best is None or len(key) > len(best.number)
            if key.endswith("*") and number.startswith(key[:-1]) and longer:
                best = d
        return best

    def check(self, record: CallRecord) -> Alert | None:
        number = record.callee_e164
        if not number:
            return None
        d = self._match(number)
        if d is None or d.tariff_a is None or d.tariff_b is None:
            return None
        cost = record.cost or Decimal(0)
        existing = self.alerts.get(d.number)
        if existing is not None:
            existing.records += 1
            existing.cost += cost
            existing.evidence.add(record.record_id)
            existing.detected_at = max(existing.detected_at, record.end)
            return None
        seconds = record.billsec if record.billsec > 0 else DEFAULT_LENGTHS[0]
        comp = Comparison(seconds, d.tariff_a.cost(seconds), d.tariff_b.cost(seconds))
        factor = comp.factor or d.max_factor or Decimal(0)
        if factor < self.min_factor:
            return None
        severity = "critical" if factor >= self.critical_factor else "warning"
        raw = f"{self.name}\x1f{d.number}\x1f{record.record_id}".encode()
        alert = Alert(
            id=hashlib.sha1(raw).hexdigest()[:20],
            detector=self.name,
            severity=severity,  # type: ignore[arg-type]
            account=record.account,
            subject=number if not d.number.endswith("*") else d.number[:-1],
            subject_kind="number" if not d.number.endswith("*") else "prefix",
            started_at=record.start,
            detected_at=record.end,
            records=1,
            cost=cost,
            currency=record.currency,
            explanation={
                "parameter": "tariff_factor",
                "value": str(factor),
                "threshold": str(self.critical_factor),
                "why": (
                    f"{d.number}: source A says {d.tariff_a.describe()}, source B says "
                    f"{d.tariff_b.describe()}; a {seconds} s call costs {comp.cost_a} vs "
                    f"{comp.cost_b} (factor {factor})"
                ),
                "tariff_a": d.tariff_a.describe(),
                "tariff_b": d.tariff_b.describe(),
            },
            evidence=Evidence([record.record_id], 1),
        )
        self.alerts[d.number] = alert
        return alert
