"""The daily traffic report: one account, one local calendar day.

Calls, minutes and cost, by hour and by destination, against the account's limits and
its normal traffic: the mean of the same weekday in the previous four weeks (only the
weeks the records cover). Deviations are listed in plain words. Money is exact: sums of
the records' integer ten-thousandths (``cost_e4``), never floats.

Records come from the store (``rated_records``) or from a ``scan --out`` file; both are
read as the same normalized frame (``tollguard.cases.records``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
from sqlalchemy import Engine, select

from tollguard.cdr.model import cost_from_e4
from tollguard.policy import Limits, Policy

NORMAL_WEEKS = 4
# An hour deviates when it has more than FACTOR x normal plus a small floor (so a quiet
# account making 3 calls instead of 1 is not flagged, 40 instead of 1 is).
HOUR_FACTOR = Decimal(3)
HOUR_CALLS_FLOOR = 5
HOUR_COST_FLOOR = Decimal("2.00")
DAY_FACTOR = Decimal(2)
NEAR_LIMIT = Decimal("0.8")

FRAME_COLUMNS = [
    "record_id", "account", "callee_e164", "country", "number_type", "destination",
    "start", "billsec", "disposition", "cost_e4", "currency",
]  # fmt: skip


# -- loading ---------------------------------------------------------------------------
def load_db(engine: Engine, account: str, since: datetime, until: datetime) -> pl.DataFrame:
    """Records of ``account`` that started in [since, until) from ``rated_records``."""
    from tollguard.store.schema import rated_records as t

    query = (
        select(*[t.c[c] for c in FRAME_COLUMNS])
        .where(t.c.account == account)
        .where(t.c.start >= _db_time(engine, since))
        .where(t.c.start < _db_time(engine, until))
    )
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(query)]
    return normalize_frame(pl.DataFrame(rows, schema=FRAME_COLUMNS, orient="row"))


def load_file(
    path: Path, account: str, since: datetime, until: datetime
) -> tuple[pl.DataFrame, datetime | None]:
    """Records of ``account`` that started in [since, until) from a ``scan --out`` file,
    and the start of the account's first record in the whole file."""
    from tollguard.cases.records import load_rated_file

    frame = load_rated_file(path).filter(pl.col("account") == account)
    first = frame.get_column("start").min() if frame.height else None
    frame = frame.filter(
        (pl.col("start") >= since.astimezone(UTC)) & (pl.col("start") < until.astimezone(UTC))
    )
    cols = [c for c in FRAME_COLUMNS if c in frame.columns]
    return normalize_frame(frame.select(cols)), first  # type: ignore[return-value]


def _db_time(engine: Engine, at: datetime) -> datetime:
    utc = at.astimezone(UTC)
    return utc.replace(tzinfo=None) if engine.dialect.name == "sqlite" else utc


def normalize_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """The report's columns with fixed types (an empty frame keeps its schema)."""
    types: dict[str, pl.DataType] = {
        "record_id": pl.String(), "account": pl.String(), "callee_e164": pl.String(),
        "country": pl.String(), "number_type": pl.String(), "destination": pl.String(),
        "start": pl.Datetime("us", "UTC"), "billsec": pl.Int64(), "disposition": pl.String(),
        "cost_e4": pl.Int64(), "currency": pl.String(),
    }  # fmt: skip
    exprs: list[pl.Expr] = []
    for name, dtype in types.items():
        if name not in frame.columns:
            exprs.append(pl.lit(None, dtype).alias(name))
            continue
        col = pl.col(name)
        if name == "start":
            if frame.schema[name] == pl.String:
                col = col.str.to_datetime(time_zone="UTC", time_unit="us")
            elif getattr(frame.schema[name], "time_zone", None) is None:
                col = col.dt.replace_time_zone("UTC")
            col = col.dt.cast_time_unit("us").dt.convert_time_zone("UTC")
        exprs.append(col.cast(dtype).alias(name))
    return frame.select(exprs) if frame.height else pl.DataFrame(schema=types)


def with_local(frame: pl.DataFrame, tz: str) -> pl.DataFrame:
    """Add the local day, hour and hour of week (Monday 00-01 = 0) of each call's start."""
    local = pl.col("start").dt.convert_time_zone(tz)
    return frame.with_columns(
        local.dt.date().alias("lday"),
        local.dt.hour().cast(pl.Int32).alias("lhour"),
        ((local.dt.weekday().cast(pl.Int32) - 1) * 24 + local.dt.hour().cast(pl.Int32)).alias(
            "how"
        ),
    )


# -- model -----------------------------------------------------------------------------
@dataclass
class Bucket:
    calls: int = 0
    answered: int = 0
    billsec: int = 0
    cost_e4: int = 0
    unrated: int = 0

    @property
    def minutes(self) -> Decimal:
        return (Decimal(self.billsec) / 60).quantize(Decimal("0.01"))

    @property
    def cost(self) -> Decimal:
        return cost_from_e4(self.cost_e4)


@dataclass
class Normal:
    weeks: int  # previous same weekdays covered by the records
    calls: Decimal
    billsec: Decimal
    cost_e4: Decimal

    @property
    def cost(self) -> Decimal:
        return (self.cost_e4 / 10000).quantize(Decimal("0.0001"))

    @property
    def minutes(self) -> Decimal:
        return (self.billsec / 60).quantize(Decimal("0.01"))


@dataclass
class HourRow:
    hour: int
    bucket: Bucket
    normal_calls: Decimal | None
    normal_cost: Decimal | None
    flags: list[str] = field(default_factory=list)


@dataclass
class DestRow:
    destination: str
    country: str
    bucket: Bucket
    share: Decimal  # of the day's cost
    new_country: bool = False


@dataclass
class LimitRow:
    name: str
    used: Decimal | int
    limit: Decimal | int
    share: Decimal  # used / limit

    @property
    def state(self) -> str:
        if self.used > self.limit:
            return "exceeded"
        if self.share >= NEAR_LIMIT:
            return "near"
        return "ok"


@dataclass
class DailyReport:
    account: str
    day: date
    timezone: str
    currency: str
    total: Bucket
    by_hour: list[HourRow]
    by_destination: list[DestRow]
    by_country: list[DestRow]
    normal: Normal | None
    limits: list[LimitRow]
    deviations: list[str]
    generated_at: datetime

    @property
    def zone_label(self) -> str:
        start = datetime.combine(self.day, time(12), ZoneInfo(self.timezone))
        return f"{self.timezone} ({start.tzname()})"

    def to_dict(self) -> dict[str, Any]:
        def b(x: Bucket) -> dict[str, Any]:
            return {
                "calls": x.calls, "answered": x.answered, "billsec": x.billsec,
                "minutes": str(x.minutes), "cost": str(x.cost), "unrated": x.unrated,
            }  # fmt: skip

        return {
            "account": self.account,
            "day": self.day.isoformat(),
            "timezone": self.timezone,
            "currency": self.currency,
            "total": b(self.total),
            "normal": None
            if self.normal is None
            else {
                "weeks": self.normal.weeks,
                "calls": str(self.normal.calls.quantize(Decimal("0.01"))),
                "minutes": str(self.normal.minutes),
                "cost": str(self.normal.cost),
            },
            "by_hour": [
                {
                    "hour": h.hour,
                    **b(h.bucket),
                    "normal_calls": None if h.normal_calls is None else str(h.normal_calls),
                    "normal_cost": None if h.normal_cost is None else str(h.normal_cost),
                    "flags": h.flags,
                }
                for h in self.by_hour
            ],
            "by_destination": [
                {"destination": d.destination, "country": d.country, **b(d.bucket)}
                for d in self.by_destination
            ],
            "by_country": [
                {"country": d.country, "new": d.new_country, **b(d.bucket)} for d in self.by_country
            ],
            "limits": [
                {"name": x.name, "used": str(x.used), "limit": str(x.limit), "state": x.state}
                for x in self.limits
            ],
            "deviations": self.deviations,
        }


# -- computing -------------------------------------------------------------------------
def day_bounds(day: date, tz: str) -> tuple[datetime, datetime]:
    """UTC start and end of a local calendar day (23 or 25 hours on DST days)."""
    zone = ZoneInfo(tz)
    start = datetime.combine(day, time(0), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC)
    return start, end


def history_bounds(day: date, tz: str, weeks: int = NORMAL_WEEKS) -> tuple[datetime, datetime]:
    """UTC range to load for a report: ``weeks`` weeks before the day, through its end."""
    start, _ = day_bounds(day - timedelta(days=7 * weeks), tz)
    _, end = day_bounds(day, tz)
    return start, end


def bucket_of(frame: pl.DataFrame) -> Bucket:
    if frame.height == 0:
        return Bucket()
    row = frame.select(
        pl.len().alias("calls"),
        (pl.col("disposition") == "answered").sum().alias("answered"),
        pl.col("billsec").sum().alias("billsec"),
        pl.col("cost_e4").sum().alias("cost_e4"),
        pl.col("cost_e4").is_null().sum().alias("unrated"),
    ).row(0, named=True)
    return Bucket(
        int(row["calls"]), int(row["answered"] or 0), int(row["billsec"] or 0),
        int(row["cost_e4"] or 0), int(row["unrated"] or 0),
    )  # fmt: skip


def _buckets(frame: pl.DataFrame, keys: list[str]) -> dict[tuple[Any, ...], Bucket]:
    if frame.height == 0:
        return {}
    agg = frame.group_by(keys).agg(
        pl.len().alias("calls"),
        (pl.col("disposition") == "answered").sum().alias("answered"),
        pl.col("billsec").sum().alias("billsec"),
        pl.col("cost_e4").sum().alias("cost_e4"),
        pl.col("cost_e4").is_null().sum().alias("unrated"),
    )
    out: dict[tuple[Any, ...], Bucket] = {}
    for row in agg.iter_rows(named=True):
        out[tuple(row[k] for k in keys)] = Bucket(
            int(row["calls"]), int(row["answered"] or 0), int(row["billsec"] or 0),
            int(row["cost_e4"] or 0), int(row["unrated"] or 0),
        )  # fmt: skip
    return out


def covered_weeks(frame: pl.DataFrame, day: date, weeks: int, first_day: date | None) -> list[date]:
    """The previous same weekdays (day-7, day-14, ...) the records cover."""
    days = [day - timedelta(days=7 * k) for k in range(1, weeks + 1)]
    if first_day is None:
        if frame.height == 0:
            return []
        first_day = frame.get_column("lday").min()  # type: ignore[assignment]
    assert first_day is not None
    return [d for d in days if d >= first_day]


def build_daily(
    frame: pl.DataFrame,
    *,
    account: str,
    day: date,
    timezone: str,
    currency: str,
    limits: Limits | None = None,
    first_day: date | None = None,
    weeks: int = NORMAL_WEEKS,
    now: datetime | None = None,
) -> DailyReport:
    """The report from a frame holding at least the day and up to ``weeks`` weeks before.

    ``first_day``: the first local day the records cover (default: the earliest record
    in the frame); earlier weeks do not count towards normal traffic."""
    frame = with_local(normalize_frame(frame).filter(pl.col("account") == account), timezone)
    today = frame.filter(pl.col("lday") == day)
    history = covered_weeks(frame, day, weeks, first_day)
    past = frame.filter(pl.col("lday").is_in(history)) if history else frame.clear()
    total = bucket_of(today)
    normal: Normal | None = None
    if history:
        pb = bucket_of(past)
        n = Decimal(len(history))
        normal = Normal(len(history), Decimal(pb.calls) / n, Decimal(pb.billsec) / n,
                        Decimal(pb.cost_e4) / n)  # fmt: skip
    hours_now = _buckets(today, ["lhour"])
    hours_past = _buckets(past, ["lhour"])
    by_hour: list[HourRow] = []
    n_weeks = Decimal(len(history)) if history else None
    for hour in range(24):
        bucket = hours_now.get((hour,), Bucket())
        nc = ncost = None
        flags: list[str] = []
        if n_weeks is not None:
            p = hours_past.get((hour,), Bucket())
            nc = (Decimal(p.calls) / n_weeks).quantize(Decimal("0.01"))
            ncost = (Decimal(p.cost_e4) / n_weeks / 10000).quantize(Decimal("0.0001"))
            if bucket.calls > nc * HOUR_FACTOR + HOUR_CALLS_FLOOR:
                flags.append(f"{bucket.calls} calls, normally {nc}")
            if bucket.cost > ncost * HOUR_FACTOR + HOUR_COST_FLOOR:
                flags.append(f"{currency} {bucket.cost} cost, normally {ncost}")
        by_hour.append(HourRow(hour, bucket, nc, ncost, flags))
    known = set(past.get_column("country").drop_nulls().unique().to_list()) if history else set()
    total_cost = Decimal(total.cost_e4) or Decimal(1)
    dests = _buckets(today, ["destination", "country"])
    by_destination = sorted(
        (
            DestRow(str(k[0] or "(unrated)"), str(k[1] or "??"), v,
                    (Decimal(v.cost_e4) / total_cost).quantize(Decimal("0.0001")))
            for k, v in dests.items()
        ),
        key=lambda d: (-d.bucket.cost_e4, -d.bucket.calls, d.destination),
    )  # fmt: skip
    countries = _buckets(today, ["country"])
    by_country = sorted(
        (
            DestRow("", str(k[0] or "??"), v,
                    (Decimal(v.cost_e4) / total_cost).quantize(Decimal("0.0001")),
                    bool(history) and k[0] is not None and k[0] not in known)
            for k, v in countries.items()
        ),
        key=lambda d: (-d.bucket.cost_e4, -d.bucket.calls, d.country),
    )  # fmt: skip
    limit_rows = limit_usage(total, limits, today)
    deviations = _deviations(total, normal, by_hour, by_country, limit_rows, currency)
    return DailyReport(
        account=account,
        day=day,
        timezone=timezone,
        currency=currency,
        total=total,
        by_hour=by_hour,
        by_destination=by_destination,
        by_country=by_country,
        normal=normal,
        limits=limit_rows,
        deviations=deviations,
        generated_at=now or datetime.now(UTC),
    )


def limit_usage(total: Bucket, limits: Limits | None, today: pl.DataFrame) -> list[LimitRow]:
    """The day's figures against the day limits the account asked for."""
    if limits is None:
        return []
    rows: list[LimitRow] = []
    if limits.max_spend_per_day is not None:
        rows.append(_limit("max_spend_per_day", total.cost, limits.max_spend_per_day))
    if limits.max_calls_per_day is not None:
        rows.append(_limit("max_calls_per_day", total.calls, limits.max_calls_per_day))
    for country, cap in sorted(limits.max_spend_per_day_by_country.items()):
        used = bucket_of(today.filter(pl.col("country") == country)).cost
        rows.append(_limit(f"max_spend_per_day_by_country.{country}", used, cap))
    for country, n in sorted(limits.max_calls_per_day_by_country.items()):
        used_n = today.filter(pl.col("country") == country).height
        rows.append(_limit(f"max_calls_per_day_by_country.{country}", used_n, n))
    for ntype, cap in sorted(limits.max_spend_per_day_by_number_type.items()):
        used = bucket_of(today.filter(pl.col("number_type") == ntype)).cost
        rows.append(_limit(f"max_spend_per_day_by_number_type.{ntype}", used, cap))
    return rows


def _limit(name: str, used: Decimal | int, limit: Decimal | int) -> LimitRow:
    share = Decimal(used) / Decimal(limit) if limit else Decimal(1 if used else 0)
    return LimitRow(name, used, limit, share.quantize(Decimal("0.0001")))


def _deviations(
    total: Bucket,
    normal: Normal | None,
    by_hour: list[HourRow],
    by_country: list[DestRow],
    limits: list[LimitRow],
    currency: str,
) -> list[str]:
    out: list[str] = []
    for row in limits:
        if row.state == "exceeded":
            out.append(f"{row.name}: {row.used} used, limit {row.limit} (exceeded)")
        elif row.state == "near":
            out.append(f"{row.name}: {row.used} used of {row.limit} ({row.share * 100:.0f}%)")
    if normal is not None:
        if total.cost > normal.cost * DAY_FACTOR + HOUR_COST_FLOOR:
            out.append(
                f"cost {currency} {total.cost} against a normal {currency} {normal.cost} "
                f"(mean of {normal.weeks} previous same weekday(s))"
            )
        if total.calls > normal.calls * DAY_FACTOR + HOUR_CALLS_FLOOR:
            out.append(f"{total.calls} calls against a normal {normal.calls:.1f}")
        for c in by_country:
            if c.new_country:
                out.append(
                    f"calls to {c.country}, not called in the previous {normal.weeks} week(s): "
                    f"{c.bucket.calls} calls, {currency} {c.bucket.cost}"
                )
    for h in by_hour:
        for flag in h.flags:
            out.append(f"{h.hour:02d}:00-{h.hour + 1:02d}:00: {flag}")
    return out


def daily_report(
    policy: Policy,
    account: str,
    day: date,
    *,
    engine: Engine | None = None,
    records: Path | None = None,
    limits: Limits | None = None,
    now: datetime | None = None,
) -> DailyReport:
    """Load the records (store or file) and build the report for ``account`` on ``day``."""
    acc = policy.account(account)
    since, until = history_bounds(day, acc.timezone)
    if engine is not None:
        frame = load_db(engine, account, since, until)
        first = first_local_day(engine, account, acc.timezone)
    elif records is not None:
        frame, first_start = load_file(records, account, since, until)
        first = None if first_start is None else first_start.astimezone(acc.tz).date()
    else:
        raise ValueError("give a database or a records file")
    return build_daily(
        frame,
        account=account,
        day=day,
        timezone=acc.timezone,
        currency=acc.currency,
        limits=limits if limits is not None else acc.limits,
        first_day=first,  # type: ignore[arg-type]
        now=now,
    )


def first_local_day(engine: Engine, account: str, tz: str) -> date | None:
    from sqlalchemy import func

    from tollguard.store.schema import rated_records as t

    with engine.connect() as conn:
        value = conn.execute(select(func.min(t.c.start)).where(t.c.account == account)).scalar()
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(ZoneInfo(tz)).date()  # type: ignore[no-any-return]
