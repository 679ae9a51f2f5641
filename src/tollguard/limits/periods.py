"""Counter keys per period, in the account's time zone, so counters reset by themselves.

An hour/day/month counter is a key that names its period (``sd:20240601``); a new
period is a new key, and old keys expire some days after their period ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

KEEP_AFTER_PERIOD_S = 2 * 86400  # old period keys stay readable this long


@dataclass(frozen=True, slots=True)
class Periods:
    minute: str  # UTC minute
    hour: str  # local
    day: str  # local calendar day
    month: str  # local
    minute_ttl: int
    hour_ttl: int
    day_ttl: int
    month_ttl: int


def _ttl(end: datetime, now: datetime, keep: int) -> int:
    return max(60, int((end - now).total_seconds()) + keep)


_CACHE: dict[tuple[str, int], Periods] = {}


def periods_at(now: datetime, tz: ZoneInfo) -> Periods:
    """Period names and key lifetimes (seconds) for event time ``now``, cached per minute.

    Within one minute the names are the same; lifetimes are computed from the minute's
    start, so they are at most 59 s longer than needed.
    """
    minute = int(now.timestamp()) // 60
    key = (tz.key, minute)
    hit = _CACHE.get(key)
    if hit is None:
        if len(_CACHE) > 10_000:
            _CACHE.clear()
        hit = _compute(datetime.fromtimestamp(minute * 60, UTC), tz)
        _CACHE[key] = hit
    return hit


def _compute(now: datetime, tz: ZoneInfo) -> Periods:
    utc = now.astimezone(UTC)
    local = utc.astimezone(tz)
    minute_start = utc.replace(second=0, microsecond=0)
    hour_start = local.replace(minute=0, second=0, microsecond=0)
    day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    next_day = (day_start + timedelta(days=1, hours=3)).replace(hour=0)
    month_start = day_start.replace(day=1)
    next_month = (month_start + timedelta(days=32)).replace(day=1)
    return Periods(
        minute=minute_start.strftime("%Y%m%d%H%M"),
        hour=hour_start.strftime("%Y%m%d%H"),
        day=day_start.strftime("%Y%m%d"),
        month=month_start.strftime("%Y%m"),
        minute_ttl=_ttl(minute_start + timedelta(minutes=1), utc, 120),
        hour_ttl=_ttl(hour_start + timedelta(hours=1), local, KEEP_AFTER_PERIOD_S),
        day_ttl=_ttl(next_day.replace(tzinfo=tz), local, KEEP_AFTER_PERIOD_S),
        month_ttl=_ttl(next_month.replace(tzinfo=tz), local, KEEP_AFTER_PERIOD_S),
    )


def account_tag(account: str) -> str:
    """All keys of one account share a Redis hash tag."""
    return "tg:{" + account + "}"
