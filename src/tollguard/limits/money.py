"""Money as integer ten-thousandths ("e4") on the hot path and in state backends."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from tollguard.cdr.model import cost_from_e4

E4 = Decimal(10000)


def to_e4(value: Decimal, *, up: bool = True) -> int:
    """Decimal amount to integer e4. Costs round up (never under-reserve), budgets down."""
    return int((value * E4).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR))


from_e4 = cost_from_e4


def fmt_e4(value: int) -> str:
    return str(from_e4(value))
