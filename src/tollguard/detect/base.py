"""The detector interface, findings, and the per-account context detectors read.

A detector is a small stateful object: ``observe(record, ctx)`` sees every call record
of an account (in event time order) and returns findings. A finding says which
situation (subject) the record belongs to and, when a threshold is crossed, how bad it
is. The engine turns findings into deduplicated, escalating alerts and does the
enforcement bookkeeping; detectors never see alerts.

Speed: the engine computes everything detectors share once per record and leaves it in
the context (epoch seconds ``start_ts``/``end_ts``, cost in integer ten-thousandths
``cost_e4``, local hour/day indices); money is integer e4 inside the detectors and
becomes a ``Decimal`` only in findings and alerts. Resolved per-account settings are
cached in the context.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal, Protocol
from zoneinfo import ZoneInfo

from mypy_extensions import mypyc_attr

from tollguard.cdr.model import CallRecord, cost_from_e4, e4_from_cost
from tollguard.detect.alert import Severity
from tollguard.detect.books import Books
from tollguard.detect.clock import ZoneOffsets
from tollguard.detect.population import Population
from tollguard.detect.signature import Signature
from tollguard.policy import ResolvedAccount

SubjectKind = Literal["number", "prefix", "country", "account", "number_type"]
BlockScope = Literal["account", "number", "prefix", "destination", "none"]
ZERO = Decimal(0)
E4 = Decimal(10000)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Detectors that judge the account's own volume, hours and simultaneity: on a
# terminating account (``traffic = "terminating"``) they give at most warnings.
ACCOUNT_LEVEL = frozenset({"destination", "deviation", "unusual_hours", "concurrency"})
# Non-geographic number types some detectors are about (premium rate, satellite, ...).
SPECIAL_TYPES = frozenset({"PREMIUM_RATE", "SATELLITE", "SHARED_COST", "UAN", "PERSONAL_NUMBER"})


def e4_of(value: Decimal | None) -> int:
    """A Decimal amount as integer ten-thousandths (0 for None)."""
    return 0 if value is None else e4_from_cost(value)


dec = cost_from_e4  # integer ten-thousandths as an exact Decimal with four places


@dataclass(slots=True)
class Finding:
    """One record's place in a (possibly alerting) situation.

    ``severity`` None means: the record belongs to the situation but no threshold is
    crossed; the engine then only updates an alert that is already open. ``records``,
    ``cost`` and ``prior_ids`` describe the whole pattern so far (used when the alert
    is created); later member records are added one by one by the engine.
    """

    subject: str
    subject_kind: SubjectKind
    severity: Severity | None
    started_at: datetime
    records: int
    cost: Decimal
    explanation: dict[str, Any]
    situation: str = ""  # distinguishes situations on one subject (e.g. the limit parameter)
    prior_ids: tuple[str, ...] = ()  # evidence seen before this record (oldest first, capped)
    block: BlockScope = "account"  # what enforcement blocks when this goes critical
    global_scope: bool = False  # keyed without the account (terminating-side pumping)
    detector: str = ""  # filled in by the engine


@dataclass(slots=True)
class Settings:
    """A detector's effective settings for one account (defaults merged with the policy)."""

    enabled: bool
    report_only: bool
    warning: dict[str, float]
    critical: dict[str, float]
    options: dict[str, Any]
    prepared: Any = None  # a detector's own pre-parsed view of these settings


class Overlap:
    """Known calls of one account as (start, end) epoch seconds, for concurrency.

    CDRs arrive at the end of each call, so when a record arrives every call that ended
    earlier is known. The peak number of simultaneous calls inside the new call's
    interval, among the known calls plus the new one, is exact once the last call of a
    group of overlapping calls has arrived (the peak instant lies inside that call).
    Calls older than ``horizon_s`` before the newest end are forgotten (bounded state);
    calls longer than the horizon are undercounted.

    ``bound`` answers "at most how many?" in O(log n) from a running maximum of the
    ends, so the exact sweep of ``peak_with`` runs only when a caller needs it.
    """

    __slots__ = ("disorder", "ends", "head", "horizon_s", "max_end", "run_max", "starts")

    SLACK_S: ClassVar[float] = 600.0  # tolerated disorder of arrival (end times)

    def __init__(self, horizon_s: float = 6 * 3600.0) -> None:
        self.horizon_s = horizon_s
        # calls in arrival order from index ``head`` on (older ones are forgotten);
        # ``run_max[i]`` is the largest end among calls 0..i, so it never decreases
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.run_max: list[float] = []
        self.head = 0
        self.max_end = float("-inf")
        # the largest lateness of an arrival seen so far (capped at SLACK_S): a call that
        # arrived before another ended at most this much after it, so a backwards scan
        # may stop there (records in end order: 0, the scan stops at the first call
        # that ended before the new one started)
        self.disorder = 0.0

    def _overlapping(self, start: float, end: float, cap: int = 4000) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        stop = start - self.disorder
        starts, ends = self.starts, self.ends
        for i in range(len(ends) - 1, self.head - 1, -1):
            e2 = ends[i]
            if e2 <= stop:
                break
            s2 = starts[i]
            if e2 > start and s2 < end and s2 < e2:  # a zero-length call is never active
                out.append((s2, e2))
                if len(out) >= cap:
                    break
        return out

    def bound(self, start: float) -> int:
        """An upper bound of ``peak_with(start, ...)``: one plus the known calls that
        may still have been in progress at ``start``."""
        return 1 + len(self.run_max) - bisect_right(self.run_max, start, self.head)

    def active_at(self, t: float) -> int:
        """Known calls in progress at instant t (start <= t < end)."""
        return sum(1 for s2, e2 in self._overlapping(t, t + 1e-6) if s2 <= t)

    def peak_with(self, start: float, end: float) -> int:
        """Peak simultaneous calls within [start, end) counting a new call over it."""
        if end <= start:
            end = start + 1e-6
        if self.disorder == 0.0:
            return self._peak_in_order(start, end)
        over = self._overlapping(start, end)
        if not over:
            return 1
        if len(over) == 1:
            return 2
        events: list[tuple[float, int]] = [(start, 1), (end, -1)]
        for s2, e2 in over:
            events.append((s2 if s2 > start else start, 1))
            events.append((e2 if e2 < end else end, -1))
        events.sort()  # at equal times -1 sorts before +1: a call ending at t is not active at t
        peak = cur = 0
        for _, step in events:
            cur += step
            if cur > peak:
                peak = cur
        return peak

    def _peak_in_order(self, start: float, end: float) -> int:
        """``peak_with`` when calls arrived in end order: the known ends are sorted, so
        the overlapping calls are a tail of the list and only their starts need sorting.
        The peak lies at a start instant: one (the new call) plus the starts up to it
        minus the ends up to it (a call ending at t is not active at t)."""
        lo = bisect_right(self.ends, start, self.head)
        ends = self.ends
        n = len(ends)
        if lo == n:
            return 1
        starts = self.starts[lo:]
        starts.sort()
        cut = bisect_left(starts, end)  # only calls that started before the new one ended
        if cut < len(starts):
            del starts[cut:]
        peak = 1
        j = lo
        for k, s2 in enumerate(starts, 2):
            while j < n and ends[j] <= s2:
                j += 1
            active = k - (j - lo)
            if active > peak:
                peak = active
        return peak

    def add(self, start: float, end: float) -> None:
        if end >= self.max_end:
            self.max_end = end
        elif self.disorder < self.SLACK_S:
            self.disorder = min(max(self.disorder, self.max_end - end), self.SLACK_S)
        self.starts.append(start)
        self.ends.append(end)
        self.run_max.append(self.max_end)
        limit = end - self.horizon_s
        ends, head = self.ends, self.head
        while ends[head] < limit:
            head += 1
        if head > 32 and head * 2 > len(ends):  # forget the old calls (amortized O(1))
            del self.starts[:head], self.ends[:head], self.run_max[:head]
            head = 0
        self.head = head


NO_TIME = float("-inf")  # an account clock that has seen no record yet


class AccountContext:
    """Everything detectors may read or keep about one account.

    The engine fills the event-time fields before each record: ``now_ts`` (the
    account's clock: the record's end, epoch seconds; ``now`` is it as a UTC datetime),
    ``start_ts``/``end_ts`` (epoch seconds), ``cost_e4`` (the record's cost
    in integer ten-thousandths), ``offset`` (the account zone's UTC offset at the end,
    seconds), ``hour_index`` and ``day_index`` (local hours/days since 1970-01-01),
    ``slot`` (hour of week, Monday 00-01 = 0) and ``peak`` (simultaneous calls around
    this record, computed on first use; ``peak_bound`` bounds it cheaply). ``local``
    (the end in the account's zone) is computed on demand.
    """

    __slots__ = (
        "_peak",
        "_settings",
        "_silent",
        "account",
        "active",
        "books",
        "clean",
        "cost_e4",
        "cur",
        "day_index",
        "end_ts",
        "has_limits",
        "home",
        "hour_index",
        "now_ts",
        "offset",
        "overlap",
        "peak_bound",
        "policy",
        "population",
        "sig",
        "slot",
        "start_ts",
        "state",
        "terminating",
        "tz",
        "zone",
    )

    def __init__(self, account: str, policy: ResolvedAccount, sig: Signature) -> None:
        self.account = account
        self.policy = policy
        self.tz = ZoneInfo(policy.timezone)
        self.sig = sig
        self.overlap = Overlap()
        self.state: dict[str, Any] = {}
        self._settings: dict[str, Settings] = {}
        self._silent: tuple[int, float, bool] = (-1, 0.0, False)
        self.home = policy.context.country
        self.terminating = policy.traffic == "terminating"
        self.has_limits = _nonempty(policy.limits)
        # enabled detectors: (detector, capped to warnings, settings, only special calls)
        self.active: list[tuple[BaseDetector, bool, Settings, bool]] = []
        # set by the engine: the settings of the detector being called, the UTC offsets
        # of this account's zone, its enforcement counters and the population priors
        self.cur: Settings | None = None
        self.zone = ZoneOffsets(self.tz)  # the engine shares one per zone
        self.books = Books()
        self.population: Population | None = None
        self.now_ts = NO_TIME
        self.start_ts = 0.0
        self.end_ts = 0.0
        self.cost_e4 = 0
        self.offset = 0.0
        self.hour_index = 0
        self.day_index = 0
        self.slot = 0
        self._peak = 1
        self.peak_bound = 1
        self.clean = True

    def next_record_peak(self) -> None:
        """A new record (``start_ts``/``end_ts`` set): its peak is computed on first use;
        its cheap bound now."""
        self._peak = -1
        self.peak_bound = self.overlap.bound(self.start_ts)

    @property
    def peak(self) -> int:
        """Simultaneous calls around the current record (exact sweep on first use per
        record; ``peak_bound`` is a cheap upper bound of it)."""
        peak = self._peak
        if peak < 0:
            peak = self._peak = self.overlap.peak_with(self.start_ts, self.end_ts)
        return peak

    @property
    def now(self) -> datetime:
        """The account's clock as a UTC datetime (``datetime.min`` before any record)."""
        if self.now_ts == NO_TIME:
            return datetime.min
        return datetime.fromtimestamp(self.now_ts, UTC)

    @property
    def local(self) -> datetime:
        """The current record's end in the account's time zone."""
        if self.now_ts == NO_TIME:
            return datetime.min
        return datetime.fromtimestamp(self.now_ts, self.tz)

    def settings(self, detector: Detector) -> Settings:
        cached = self._settings.get(detector.name)
        if cached is None:
            raw = self.policy.detector(detector.name)
            cached = Settings(
                enabled=raw.enabled,
                report_only=raw.report_only or self.policy.report_only,
                warning={**detector.default_warning, **raw.warning},
                critical={**detector.default_critical, **raw.critical},
                options={**detector.default_options, **raw.options},
            )
            self._settings[detector.name] = cached
        return cached

    def silent(self, fraction: float) -> bool:
        """Is the current hour of week one in which this account is normally silent?
        (expected rate below ``fraction`` of its average; cached per local hour)."""
        hour, frac, value = self._silent
        if hour == self.hour_index and frac == fraction:
            return value
        sig = self.sig
        value = sig.slot_rate(self.slot) < fraction * sig.level_rate
        self._silent = (self.hour_index, fraction, value)
        return value


def _nonempty(limits: Any) -> bool:
    for name in type(limits).model_fields:
        value = getattr(limits, name)
        if value not in (None, [], {}):
            return True
    return False


class Detector(Protocol):
    """One fraud pattern. ``observe`` is called for every record of every account for
    which the detector is enabled, in event-time order; ``finish`` at end of input."""

    name: str
    default_warning: ClassVar[dict[str, float]]
    default_critical: ClassVar[dict[str, float]]
    default_options: ClassVar[dict[str, Any]]

    def observe(self, record: CallRecord, ctx: AccountContext) -> list[Finding]: ...

    def finish(self) -> list[tuple[Finding, AccountContext]]: ...


@mypyc_attr(allow_interpreted_subclasses=True)  # detectors of your own may extend it
class BaseDetector:
    """Defaults for the lifecycle hooks; subclasses set the class attributes."""

    name: str = ""
    default_warning: ClassVar[dict[str, float]] = {}
    default_critical: ClassVar[dict[str, float]] = {}
    default_options: ClassVar[dict[str, Any]] = {}

    def observe(self, record: CallRecord, ctx: AccountContext) -> list[Finding]:
        raise NotImplementedError(f"{type(self).__name__} must define observe()")

    def finish(self) -> list[tuple[Finding, AccountContext]]:
        return []


class ForeignDetector(BaseDetector):
    """A detector that does not extend ``BaseDetector``, behind its interface: the engine
    then calls every detector the same way, which the compiled path does directly
    instead of looking the method up by name for every record."""

    def __init__(self, inner: Detector) -> None:
        self.inner = inner
        self.name = inner.name

    def observe(self, record: CallRecord, ctx: AccountContext) -> list[Finding]:
        return self.inner.observe(record, ctx)

    def finish(self) -> list[tuple[Finding, AccountContext]]:
        return self.inner.finish()


def thresholds(settings: Settings, key: str) -> dict[str, int | float | None]:
    """A setting's warning and critical thresholds for an explanation. A whole number is
    written as one (20, not 20.0), however it was stored: the alert text must not depend
    on whether the compiled path (which reads thresholds as floats) ran."""
    return {
        "warning": _plain(settings.warning.get(key)),
        "critical": _plain(settings.critical.get(key)),
    }


def _plain(value: int | float | None) -> int | float | None:  # int: no float coercion
    if isinstance(value, float) and value.is_integer():  # not inf or nan: written as is
        return int(value)
    return value


def cost_of(record: CallRecord) -> Decimal:
    return record.cost if record.cost is not None else ZERO


def money(value: Decimal | float) -> str:
    return f"{Decimal(value).quantize(Decimal('0.01'))}"


def money_e4(value: int) -> str:
    """Integer ten-thousandths shown with two decimals (half-even, like ``money``)."""
    return money(Decimal(value) / E4)


NO_IDS: tuple[str, ...] = ()


class Tally:
    """A pattern's running size: calls, cost (integer e4), first time and capped
    evidence ids."""

    __slots__ = ("calls", "cost_e4", "ids", "last_ts", "started_at")

    CAP: ClassVar[int] = 50

    def __init__(self, started_at: datetime) -> None:
        self.started_at = started_at
        self.calls = 0
        self.cost_e4 = 0
        self.ids: list[str] = []
        self.last_ts = -1.0

    def add(self, record: CallRecord, ctx: AccountContext) -> None:
        self.calls += 1
        self.cost_e4 += ctx.cost_e4
        if len(self.ids) < 50:
            self.ids.append(record.record_id)
        self.last_ts = ctx.end_ts

    @property
    def cost(self) -> Decimal:
        return dec(self.cost_e4)

    def prior(self) -> tuple[str, ...]:
        return tuple(self.ids)
