"""The simulator's rate deck: a realistic EUR retail deck for a Dutch business operator.

Columns: ``prefix,destination,rate_per_minute,connect_fee,per_call_fee,billing,effective_from``.
Prefixes are E.164 digits without "+"; the longest prefix wins. Money has four decimals.
Billing ``a/b``: the first ``a`` seconds are charged, then every started ``b`` seconds.
"""

from __future__ import annotations

import csv
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

RATES_HEADER: tuple[str, ...] = (
    "prefix",
    "destination",
    "rate_per_minute",
    "connect_fee",
    "per_call_fee",
    "billing",
    "effective_from",
)
EFFECTIVE_FROM = "2026-01-01"

# (prefix, destination, rate/min, connect fee, per-call fee, billing)
DECK: tuple[tuple[str, str, str, str, str, str], ...] = (
    # Netherlands
    ("31", "Netherlands fixed", "0.0120", "0.0000", "0.0000", "1/1"),
    ("316", "Netherlands mobile", "0.0450", "0.0000", "0.0000", "1/1"),
    ("3166", "Netherlands pager", "0.2500", "0.0000", "0.0000", "60/60"),
    ("3185", "Netherlands non-geographic 085", "0.0120", "0.0000", "0.0000", "1/1"),
    ("3187", "Netherlands non-geographic 087", "0.0150", "0.0000", "0.0000", "1/1"),
    ("3188", "Netherlands company numbers 088", "0.0120", "0.0000", "0.0000", "1/1"),
    ("31800", "Netherlands toll-free 0800", "0.0000", "0.0000", "0.0000", "1/1"),
    ("3184", "Netherlands personal numbers 084", "0.2000", "0.0000", "0.0000", "60/60"),
    ("3190", "Netherlands premium-rate 090x", "0.9000", "0.0000", "0.0000", "60/60"),
    ("31900", "Netherlands premium-rate 0900 (service)", "0.8000", "0.0000", "0.0000", "1/1"),
    ("31906", "Netherlands premium-rate 0906 (adult)", "1.3000", "0.0000", "0.0000", "1/1"),
    ("31909", "Netherlands premium-rate 0909 (entertainment)", "0.4500", "0.0000", "0.0000", "1/1"),
    ("319091", "Netherlands premium-rate 0909 per call", "0.0000", "0.0000", "1.3000", "1/1"),
    # Europe
    ("32", "Belgium fixed", "0.0200", "0.0000", "0.0000", "30/6"),
    ("324", "Belgium mobile", "0.0900", "0.0000", "0.0000", "30/6"),
    ("33", "France fixed", "0.0180", "0.0000", "0.0000", "30/6"),
    ("336", "France mobile", "0.0700", "0.0000", "0.0000", "30/6"),
    ("337", "France mobile", "0.0700", "0.0000", "0.0000", "30/6"),
    ("34", "Spain fixed", "0.0200", "0.0000", "0.0000", "30/6"),
    ("346", "Spain mobile", "0.0600", "0.0000", "0.0000", "30/6"),
    ("39", "Italy fixed", "0.0220", "0.0000", "0.0000", "30/6"),
    ("393", "Italy mobile", "0.0800", "0.0000", "0.0000", "30/6"),
    ("40", "Romania fixed", "0.0400", "0.0000", "0.0000", "30/6"),
    ("407", "Romania mobile", "0.0900", "0.0000", "0.0000", "30/6"),
    ("44", "United Kingdom fixed", "0.0180", "0.0000", "0.0000", "30/6"),
    ("447", "United Kingdom mobile", "0.0650", "0.0000", "0.0000", "30/6"),
    ("48", "Poland fixed", "0.0250", "0.0000", "0.0000", "30/6"),
    ("485", "Poland mobile", "0.0750", "0.0000", "0.0000", "30/6"),
    ("49", "Germany fixed", "0.0160", "0.0000", "0.0000", "30/6"),
    ("4915", "Germany mobile", "0.0850", "0.0000", "0.0000", "30/6"),
    ("4916", "Germany mobile", "0.0850", "0.0000", "0.0000", "30/6"),
    ("4917", "Germany mobile", "0.0850", "0.0000", "0.0000", "30/6"),
    # Rest of the world
    ("1", "United States / Canada", "0.0150", "0.0000", "0.0000", "6/6"),
    ("55", "Brazil fixed", "0.0600", "0.0000", "0.0000", "30/6"),
    ("5511", "Brazil Sao Paulo", "0.0500", "0.0000", "0.0000", "30/6"),
    ("81", "Japan fixed", "0.0700", "0.0000", "0.0000", "30/6"),
    ("8190", "Japan mobile", "0.1600", "0.0000", "0.0000", "30/6"),
    # High-cost (IRSF) destinations
    ("252", "Somalia", "1.4500", "0.1500", "0.0000", "60/60"),
    ("2526", "Somalia mobile", "1.6500", "0.1500", "0.0000", "60/60"),
    ("263", "Zimbabwe fixed", "0.4800", "0.0500", "0.0000", "60/60"),
    ("2637", "Zimbabwe mobile", "0.5900", "0.0500", "0.0000", "60/60"),
    ("670", "Timor-Leste fixed", "0.9500", "0.1000", "0.0000", "60/60"),
    ("6707", "Timor-Leste mobile", "1.9500", "0.1000", "0.0000", "60/60"),
    ("67077", "Timor-Leste mobile Telkomcel", "2.4500", "0.1000", "0.0000", "60/60"),
    ("67078", "Timor-Leste mobile Telemor", "3.0000", "0.1000", "0.0000", "60/60"),
    ("881", "Global Mobile Satellite System", "6.5000", "0.2500", "0.0000", "60/60"),
    ("8816", "Iridium", "7.9500", "0.2500", "0.0000", "60/60"),
    ("882", "International Networks", "5.5000", "0.2500", "0.0000", "60/60"),
    ("88216", "Thuraya", "6.2500", "0.2500", "0.0000", "60/60"),
)


def write_rates(path: Path) -> int:
    """Write the deck to ``path``; returns the number of data rows."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(RATES_HEADER)
        for row in DECK:
            writer.writerow((*row, EFFECTIVE_FROM))
    return len(DECK)


@lru_cache(maxsize=65536)
def rate_for(e164: str) -> tuple[str, str, str, str, str, str]:
    """The deck row (longest prefix) for an E.164 number; used for summaries and tests."""
    digits = e164.lstrip("+")
    best: tuple[str, str, str, str, str, str] | None = None
    for row in DECK:
        if digits.startswith(row[0]) and (best is None or len(row[0]) > len(best[0])):
            best = row
    if best is None:
        raise KeyError(f"no rate for {e164}")
    return best


@lru_cache(maxsize=65536)
def _row_e4(e164: str) -> tuple[int, int, int, int, int]:
    """(rate/min, connect fee, per-call fee) in 1/10000 EUR, and billing (first, then)."""
    _, _, rate, connect, per_call, billing = rate_for(e164)
    first, then = (int(part) for part in billing.split("/"))
    return (
        int(Decimal(rate) * 10000),
        int(Decimal(connect) * 10000),
        int(Decimal(per_call) * 10000),
        first,
        then,
    )


def price_e4(e164: str | None, billsec: int) -> int:
    """Estimated cost of an answered call in 1/10000 EUR (0 when unanswered or unknown).

    The simulator's own estimate for truth.json and the summary; the rating package is
    the reference for exact prices.
    """
    if billsec <= 0 or not e164 or not e164.startswith("+"):
        return 0
    try:
        rate, connect, per_call, first, then = _row_e4(e164)
    except KeyError:
        return 0
    charged = first if billsec <= first else first + -(-(billsec - first) // then) * then
    return -(-(charged * rate) // 60) + connect + per_call
