"""Tariff integrity: compare tariff sources and watch traffic to disputed numbers."""

from tollguard.tariffs.check import (
    Discrepancy,
    Tariff,
    TariffError,
    TariffTable,
    TariffWatch,
    compare,
    parse_tariff,
)

__all__ = [
    "Discrepancy",
    "Tariff",
    "TariffError",
    "TariffTable",
    "TariffWatch",
    "compare",
    "parse_tariff",
]
