"""Dutch business calendar: public holidays, day factors and the hour-of-day profile."""

from __future__ import annotations

from bisect import bisect_right
from datetime import date, timedelta
from itertools import accumulate
from random import Random


def easter_sunday(year: int) -> date:
    """Gregorian Easter Sunday (anonymous Gregorian algorithm)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return date(year, month, day + 1)


def dutch_holidays(year: int) -> dict[date, str]:
    """Public holidays most Dutch businesses close on (plus Good Friday, often quiet)."""
    easter = easter_sunday(year)
    kings_day = date(year, 4, 27)
    if kings_day.weekday() == 6:  # on a Sunday it moves to Saturday the 26th
        kings_day = date(year, 4, 26)
    days = {
        date(year, 1, 1): "Nieuwjaarsdag",
        easter - timedelta(days=2): "Goede Vrijdag",
        easter: "Eerste Paasdag",
        easter + timedelta(days=1): "Tweede Paasdag",
        kings_day: "Koningsdag",
        easter + timedelta(days=39): "Hemelvaartsdag",
        easter + timedelta(days=49): "Eerste Pinksterdag",
        easter + timedelta(days=50): "Tweede Pinksterdag",
        date(year, 12, 25): "Eerste Kerstdag",
        date(year, 12, 26): "Tweede Kerstdag",
    }
    if year % 5 == 0:  # Bevrijdingsdag is a day off for most every five years
        days[date(year, 5, 5)] = "Bevrijdingsdag"
    return days


def holidays_between(first: date, last: date) -> dict[date, str]:
    out: dict[date, str] = {}
    for year in range(first.year, last.year + 1):
        for day, name in dutch_holidays(year).items():
            if first <= day <= last:
                out[day] = name
    return dict(sorted(out.items()))


def is_month_end_peak(day: date) -> bool:
    """The last two business days of a month (invoicing, payroll, closing)."""
    nxt = day + timedelta(days=1)
    business_days_left = 0
    while nxt.month == day.month:
        if nxt.weekday() < 5:
            business_days_left += 1
        nxt += timedelta(days=1)
    return day.weekday() < 5 and business_days_left <= 1


# Share of a business day's outgoing calls per local hour: morning and afternoon peaks,
# a lunch dip at 12, quiet evenings and rare night calls (~1 % between 0 and 7).
WEEKDAY_HOURS: tuple[float, ...] = (
    0.0012, 0.0008, 0.0006, 0.0005, 0.0006, 0.0012, 0.0035, 0.018,  # 00-07
    0.065, 0.118, 0.135, 0.118, 0.058, 0.092, 0.118, 0.108,  # 08-15
    0.078, 0.040, 0.016, 0.009, 0.007, 0.005, 0.003, 0.002,  # 16-23
)  # fmt: skip
# Weekends and holidays: late start, no lunch dip to speak of, a flat afternoon.
WEEKEND_HOURS: tuple[float, ...] = (
    0.004, 0.002, 0.001, 0.001, 0.001, 0.002, 0.004, 0.012,
    0.035, 0.075, 0.105, 0.110, 0.095, 0.095, 0.095, 0.090,
    0.075, 0.060, 0.040, 0.030, 0.025, 0.020, 0.012, 0.007,
)  # fmt: skip


class HourSampler:
    """Draws a second-of-day from an hour profile (uniform inside the hour)."""

    def __init__(self, weights: tuple[float, ...]) -> None:
        total = sum(weights)
        self._cum = [w / total for w in accumulate(weights)]
        self._cum[-1] = 1.0

    def second_of_day(self, rng: Random) -> int:
        hour = bisect_right(self._cum, rng.random())
        return min(hour, 23) * 3600 + int(rng.random() * 3600)


WEEKDAY_SAMPLER = HourSampler(WEEKDAY_HOURS)
WEEKEND_SAMPLER = HourSampler(WEEKEND_HOURS)
