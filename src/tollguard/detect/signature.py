"""Per-account signatures (AT&T style) and the population priors they start from.

A signature is a small, fixed-size summary of an account's normal traffic, updated
online with exponential decay (half-life ``Priors.half_life_days``, 28 days by default):

* calls per hour of week (168 slots, local time): a decayed count ``c[h]`` and a decayed
  exposure ``e[h]`` (how many times slot h has passed, in weeks); each slot decays once
  per passage, so an account that stops calling at night forgets its night traffic;
* cost per call (decayed first and second moment) and answered duration (mean);
* countries and number types called (decayed counts, learned per closed day);
* the usual daily peak of simultaneous calls.

Records that took part in a critical finding are not learned (a hack must not become
normal); warnings are learned, so a real change of habit fades out of the alerts.

New accounts start from ``Priors``: a population hour-of-week shape (business hours;
nights and weekends nearly silent), a typical call level, cost per call, the population
share of each destination country and number type. ``Priors.learn`` builds them from a
calibration period of history.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from tollguard.cdr.model import CallRecord

HOURS_PER_WEEK = 168
EPOCH_SLOT_OFFSET = 72  # 1970-01-01 00:00 was a Thursday: local hour 0 is slot Thu 00 = 72
MAX_CATCH_UP_HOURS = 8 * HOURS_PER_WEEK  # beyond this, older empty hours change nothing

# Share of a business day's calls per local hour (weekdays) and weekends. Nights are not
# zero: a population prior must allow the odd late call.
_WEEKDAY = (
    0.003, 0.002, 0.002, 0.002, 0.002, 0.003, 0.006, 0.020,
    0.060, 0.110, 0.125, 0.110, 0.060, 0.090, 0.110, 0.100,
    0.075, 0.045, 0.022, 0.015, 0.012, 0.010, 0.006, 0.004,
)  # fmt: skip
_WEEKEND_FACTOR = 0.22  # a weekend day has ~a fifth of a weekday's calls
_WEEKEND = (
    0.008, 0.004, 0.003, 0.003, 0.003, 0.004, 0.008, 0.020,
    0.040, 0.070, 0.095, 0.100, 0.090, 0.090, 0.090, 0.085,
    0.075, 0.060, 0.045, 0.035, 0.030, 0.025, 0.015, 0.010,
)  # fmt: skip


def _default_shape() -> tuple[float, ...]:
    raw: list[float] = []
    for day in range(7):
        if day < 5:
            raw.extend(_WEEKDAY)
        else:
            raw.extend(v * _WEEKEND_FACTOR for v in _WEEKEND)
    mean = sum(raw) / len(raw)
    return tuple(v / mean for v in raw)


def local_hour_index(epoch_s: float, tz: ZoneInfo, offset_s: float) -> int:
    """Local hours since 1970-01-01 00:00 local time (``offset_s`` = UTC offset)."""
    del tz
    return int((epoch_s + offset_s) // 3600)


def slot_of(hour_index: int) -> int:
    """Hour of week, Monday 00:00-01:00 = 0 .. Sunday 23:00-24:00 = 167."""
    return (hour_index + EPOCH_SLOT_OFFSET) % HOURS_PER_WEEK


@dataclass
class Priors:
    """Population priors for accounts without (enough) history.

    ``shape`` is the relative call intensity per hour of week (mean 1); ``level`` the
    typical calls per hour of an account (averaged over the week); the ``*_weight``
    fields say how many observations the prior is worth.
    """

    shape: tuple[float, ...] = field(default_factory=_default_shape)
    level: float = 0.3  # calls per hour, week average
    level_shape: float = 1.0  # Gamma shape of the level prior (a new account's level is vague)
    slot_shape: float = 1.5  # Gamma shape of one slot's rate around level * shape[slot]
    cost_mean: float = 0.10  # per call, account currency
    cost_sd: float = 0.60
    cost_weight: float = 30.0  # prior worth 30 calls
    duration_mean: float = 150.0  # answered seconds
    country_share: dict[str, float] = field(default_factory=dict)  # "NL": 0.9 ...
    number_type_share: dict[str, float] = field(default_factory=dict)
    peak_concurrency: float = 2.0
    half_life_days: float = 28.0

    @classmethod
    def default(cls) -> Priors:
        return cls()

    @property
    def week_decay(self) -> float:
        return float(0.5 ** (7.0 / self.half_life_days))

    @property
    def day_decay(self) -> float:
        return float(0.5 ** (1.0 / self.half_life_days))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["shape"] = [round(v, 6) for v in self.shape]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Priors:
        """Priors from ``to_dict`` output; wrong keys, types or values are a ValueError."""
        fields = dict(data)
        unknown = sorted(set(fields) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown priors field(s): {', '.join(unknown)}")
        if "shape" in fields:
            shape = tuple(_number("shape", v) for v in fields["shape"])
            if len(shape) != HOURS_PER_WEEK:
                raise ValueError(f"priors shape needs {HOURS_PER_WEEK} values, got {len(shape)}")
            fields["shape"] = shape
        for name in ("country_share", "number_type_share"):
            if name in fields:
                table = fields[name]
                if not isinstance(table, dict):
                    raise ValueError(f"priors {name} must be an object of shares")
                fields[name] = {str(k): _number(f"{name}.{k}", v) for k, v in table.items()}
        for name in _POSITIVE:
            if name in fields:
                value = fields[name] = _number(name, fields[name])
                if value <= 0:
                    raise ValueError(f"priors {name} must be above 0, got {value}")
        return cls(**fields)

    @classmethod
    def learn(
        cls,
        records: Iterable[CallRecord],
        tz_of: dict[str, str] | str | Callable[[str], str] = "UTC",
        min_country_accounts: int = 1,
    ) -> Priors:
        """Population priors from a calibration period (e.g. a month of normal traffic).

        ``tz_of``: one IANA time zone for all accounts, a map account -> zone, or a
        function of the account (e.g. the policy's zone of each account).
        The shape is the average over accounts of each account's hour-of-week profile
        (so one busy account does not dominate), smoothed toward the default shape.
        A country called by fewer than ``min_country_accounts`` distinct accounts gets no
        share (one account's habit, or its hack, says nothing of the population).
        """
        per_account: dict[str, list[float]] = {}
        first: float | None = None
        last: float | None = None
        costs = 0.0
        costs2 = 0.0
        n_cost = 0
        dur = 0.0
        n_dur = 0
        countries: dict[str, float] = {}
        country_accounts: dict[str, set[str]] = {}  # up to min_country_accounts callers
        types: dict[str, float] = {}
        zones: dict[str, ZoneInfo] = {}
        for rec in records:
            if isinstance(tz_of, str):
                zone_name = tz_of
            elif isinstance(tz_of, dict):
                zone_name = tz_of.get(rec.account, "UTC")
            else:
                zone_name = tz_of(rec.account)
            tz = zones.get(zone_name)
            if tz is None:
                tz = zones[zone_name] = ZoneInfo(zone_name)
            ts = rec.end.timestamp()
            first = ts if first is None else min(first, ts)
            last = ts if last is None else max(last, ts)
            off = rec.end.astimezone(tz).utcoffset()
            h = slot_of(local_hour_index(ts, tz, off.total_seconds() if off else 0.0))
            per_account.setdefault(rec.account, [0.0] * HOURS_PER_WEEK)[h] += 1
            if rec.cost is not None:
                c = float(rec.cost)
                costs += c
                costs2 += c * c
                n_cost += 1
            if rec.answered and rec.billsec > 0:
                dur += rec.billsec
                n_dur += 1
            if rec.country:
                countries[rec.country] = countries.get(rec.country, 0.0) + 1
                callers = country_accounts.setdefault(rec.country, set())
                if len(callers) < min_country_accounts:
                    callers.add(rec.account)
            if rec.number_type:
                types[rec.number_type] = types.get(rec.number_type, 0.0) + 1
        base = cls()
        if not per_account or first is None or last is None:
            return base
        weeks = max((last - first) / (7 * 86400.0), 1.0 / 7)
        shape_sum = [0.0] * HOURS_PER_WEEK
        levels: list[float] = []
        for counts in per_account.values():
            total = sum(counts)
            levels.append(total / (weeks * HOURS_PER_WEEK))
            for i, v in enumerate(counts):
                shape_sum[i] += v / total * HOURS_PER_WEEK
        k = len(per_account)
        prior_w = 2.0  # the default shape counts as two accounts
        shape = [
            (s + prior_w * d) / (k + prior_w) for s, d in zip(shape_sum, base.shape, strict=True)
        ]
        mean = sum(shape) / HOURS_PER_WEEK
        total_calls = sum(countries.values()) or 1.0
        total_types = sum(types.values()) or 1.0
        cost_mean = costs / n_cost if n_cost else base.cost_mean
        cost_var = costs2 / n_cost - cost_mean * cost_mean if n_cost else base.cost_sd**2
        levels.sort()
        return cls(
            shape=tuple(v / mean for v in shape),
            level=levels[len(levels) // 2],  # the median account
            cost_mean=cost_mean,
            cost_sd=max(math.sqrt(max(cost_var, 0.0)), base.cost_sd / 4),
            duration_mean=dur / n_dur if n_dur else base.duration_mean,
            country_share={
                c: v / total_calls
                for c, v in sorted(countries.items())
                if len(country_accounts[c]) >= min_country_accounts
            },
            number_type_share={t: v / total_types for t, v in sorted(types.items())},
        )


_POSITIVE = (
    "level", "level_shape", "slot_shape", "cost_sd", "cost_weight", "duration_mean",
    "peak_concurrency", "half_life_days",
)  # fmt: skip


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"priors {name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"priors {name} must be a finite number >= 0, got {value!r}")
    return float(value)


class Signature:
    """One account's learned normal traffic (fixed size, see the module docstring)."""

    __slots__ = (
        "_week_decay",
        "bucket_calls",
        "bucket_clean",
        "c",
        "cost_n",
        "cost_s",
        "cost_s2",
        "countries",
        "day_countries",
        "day_index",
        "day_peak",
        "day_types",
        "dur_n",
        "dur_s",
        "e",
        "first_hour",
        "hour_index",
        "level_rate",
        "level_shape",
        "peak",
        "priors",
        "sum_c",
        "sum_e",
        "sum_epi",
        "types",
    )

    def __init__(self, priors: Priors) -> None:
        self.priors = priors
        self.c = [0.0] * HOURS_PER_WEEK
        self.e = [0.0] * HOURS_PER_WEEK
        self.sum_c = 0.0
        self.sum_e = 0.0
        self.sum_epi = 0.0
        self.hour_index: int | None = None
        self.first_hour: int | None = None
        self.day_index: int | None = None
        self.bucket_calls = 0  # all calls in the current local hour
        self.bucket_clean = 0  # calls in the current hour that will be learned
        self.cost_n = 0.0
        self.cost_s = 0.0
        self.cost_s2 = 0.0
        self.dur_n = 0.0
        self.dur_s = 0.0
        self.countries: dict[str, float] = {}
        self.types: dict[str, float] = {}
        self.day_countries: dict[str, int] = {}
        self.day_types: dict[str, int] = {}
        self.peak = priors.peak_concurrency
        self.day_peak = 0
        self.level_rate = priors.level
        self.level_shape = priors.level_shape
        self._week_decay = priors.week_decay

    # -- time ---------------------------------------------------------------
    def advance(self, hour_index: int, day_index: int) -> None:
        """Move to a new local hour/day: close and learn the finished buckets."""
        if self.hour_index is None:
            self.hour_index = self.first_hour = hour_index
            self.day_index = day_index
            return
        if hour_index > self.hour_index:
            lam = self._week_decay
            c, e, shape = self.c, self.e, self.priors.shape
            h = self.hour_index
            first = max(h + 1, hour_index - MAX_CATCH_UP_HOURS)
            if hour_index - first + 1 >= HOURS_PER_WEEK:
                s = (h + EPOCH_SLOT_OFFSET) % HOURS_PER_WEEK
                c[s] = c[s] * lam + self.bucket_clean
                e[s] = e[s] * lam + 1.0
                for hh in range(first, hour_index):
                    s = (hh + EPOCH_SLOT_OFFSET) % HOURS_PER_WEEK
                    c[s] *= lam
                    e[s] = e[s] * lam + 1.0
                self.sum_c = sum(c)
                self.sum_e = sum(e)
                self.sum_epi = sum(x * y for x, y in zip(e, shape, strict=True))
            else:  # update the sums by the changes of the slots touched
                s = (h + EPOCH_SLOT_OFFSET) % HOURS_PER_WEEK
                cs, es = c[s], e[s]
                new_c = cs * lam + self.bucket_clean
                new_e = es * lam + 1.0
                dc = new_c - cs
                de = new_e - es
                dpi = de * shape[s]
                c[s], e[s] = new_c, new_e
                for hh in range(first, hour_index):
                    s = (hh + EPOCH_SLOT_OFFSET) % HOURS_PER_WEEK
                    cs, es = c[s], e[s]
                    new_c = cs * lam
                    new_e = es * lam + 1.0
                    dc += new_c - cs
                    de += new_e - es
                    dpi += (new_e - es) * shape[s]
                    c[s], e[s] = new_c, new_e
                self.sum_c = max(self.sum_c + dc, 0.0)
                self.sum_e += de
                self.sum_epi += dpi
            self.hour_index = hour_index
            self.bucket_calls = 0
            self.bucket_clean = 0
            self._update_level()
        if self.day_index is not None and day_index > self.day_index:
            self._close_day(day_index - self.day_index)
            self.day_index = day_index

    def _update_level(self) -> None:
        """Gamma posterior of the account's level (calls per hour, week average): prior
        Gamma(a, a/level), Poisson counts c[h] with exposure e[h] * shape[h]."""
        p = self.priors
        a = p.level_shape
        self.level_rate = (a + self.sum_c) / (a / p.level + self.sum_epi)
        self.level_shape = a + self.sum_c

    def _close_day(self, days: int) -> None:
        lam = self.priors.day_decay ** min(days, 400)
        for table, today in ((self.countries, self.day_countries), (self.types, self.day_types)):
            for key in list(table):
                v = table[key] * lam
                if v < 0.01:
                    del table[key]
                else:
                    table[key] = v
            for key, n in today.items():
                table[key] = table.get(key, 0.0) + n
            today.clear()
        lam1 = self.priors.day_decay
        self.peak = max(self.peak * lam1, float(self.day_peak), 1.0)
        self.day_peak = 0

    # -- learning -----------------------------------------------------------
    def count(self, record: CallRecord, clean: bool) -> None:
        """Add a record to the current buckets (and, when clean, to what is learned)."""
        self.bucket_calls += 1
        if not clean:
            return
        self.bucket_clean += 1
        lam = 0.999  # per call: cost/duration moments follow the last ~1000 calls
        e4 = record.cost_e4
        if e4 is not None:
            v = e4 / 10000.0
            self.cost_n = self.cost_n * lam + 1.0
            self.cost_s = self.cost_s * lam + v
            self.cost_s2 = self.cost_s2 * lam + v * v
        if record.billsec > 0 and record.answered:
            self.dur_n = self.dur_n * lam + 1.0
            self.dur_s = self.dur_s * lam + record.billsec
        country = record.country
        if country:
            dc = self.day_countries
            dc[country] = dc.get(country, 0) + 1
        ntype = record.number_type
        if ntype:
            dt = self.day_types
            dt[ntype] = dt.get(ntype, 0) + 1

    def note_peak(self, peak: int, clean: bool) -> None:
        if clean and peak > self.day_peak:
            self.day_peak = peak

    # -- what is expected ---------------------------------------------------
    def slot_posterior(self, slot: int) -> tuple[float, float]:
        """Gamma(alpha, beta) posterior of the calls per hour in this hour-of-week slot.

        Prior: Gamma(s0, s0 / (level * shape[slot])) -- centred on the account's level
        times the population shape, with shape s0 (``Priors.slot_shape``), so an hour the
        account has never been observed in is uncertain; data: decayed calls c[slot] in
        decayed exposure e[slot] (weeks).
        """
        s0 = self.priors.slot_shape
        prior_mean = max(self.level_rate * self.priors.shape[slot], 1e-6)
        return s0 + self.c[slot], s0 / prior_mean + self.e[slot]

    def slot_rate(self, slot: int) -> float:
        """Expected calls in one hour of this slot (posterior mean)."""
        alpha, beta = self.slot_posterior(slot)
        return alpha / beta

    def rates(self, first_hour: int, hours: int) -> Iterator[float]:
        for h in range(first_hour, first_hour + hours):
            yield self.slot_rate(slot_of(h))

    def window(self, first_hour: int, hours: int) -> tuple[float, float]:
        """Expected calls over consecutive local hours and the Gamma shape of that
        expectation (slot uncertainties taken as fully correlated, which is cautious:
        an account that is busier than thought on a Saturday is busier all day)."""
        mu = 0.0
        sd = 0.0
        s0 = self.priors.slot_shape
        shape = self.priors.shape
        level = self.level_rate
        c, e = self.c, self.e
        for h in range(first_hour, first_hour + hours):
            slot = (h + EPOCH_SLOT_OFFSET) % HOURS_PER_WEEK
            prior_mean = level * shape[slot]
            if prior_mean < 1e-6:
                prior_mean = 1e-6
            alpha = s0 + c[slot]
            beta = s0 / prior_mean + e[slot]
            mu += alpha / beta
            sd += math.sqrt(alpha) / beta
        return mu, (mu * mu / (sd * sd) if sd > 0 else 1e9)

    def cost_moments(self) -> tuple[float, float]:
        """Posterior mean and second moment of the cost of one call."""
        p = self.priors
        w = p.cost_weight
        mean = (w * p.cost_mean + self.cost_s) / (w + self.cost_n)
        m2 = (w * (p.cost_sd**2 + p.cost_mean**2) + self.cost_s2) / (w + self.cost_n)
        return mean, max(m2, mean * mean)

    def duration_mean(self) -> float:
        w = 20.0
        return (w * self.priors.duration_mean + self.dur_s) / (w + self.dur_n)

    def history_hours(self) -> int:
        if self.hour_index is None or self.first_hour is None:
            return 0
        return self.hour_index - self.first_hour

    def knows_country(self, country: str, min_weight: float) -> bool:
        return self.countries.get(country, 0.0) >= min_weight

    def type_weight(self, number_type: str) -> float:
        return self.types.get(number_type, 0.0)
