"""The detector interface, findings, and the per-account context detectors read.

A detector is a small stateful object: ``observe(record, ctx)`` sees every call record
of an account (in event time order) and returns findings. A finding says which
situation (subject) the record belongs to and, when a threshold is crossed, how bad it
is. The engine turns findings into deduplicated, escalating alerts and does the
enforcement bookkeeping; detectors never see alerts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from tollguard.cdr.model import CallRecord
from tollguard.detect.alert import Severity
from tollguard.detect.signature import Signature
from tollguard.policy import ResolvedAccount

SubjectKind = Literal["number", "prefix", "country", "account", "number_type"]
BlockScope = Literal["account", "number", "prefix", "none"]
ZERO = Decimal(0)


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


class Overlap:
    """Known calls of one account as (start, end) epoch seconds, for concurrency.

    CDRs arrive at the end of each call, so when a record arrives every call that ended
    earlier is known. The peak number of simultaneous calls inside the new call's
    interval, among the known calls plus the new one, is exact once the last call of a
    group of overlapping calls has arrived (the peak instant lies inside that call).
    Calls older than ``horizon_s`` before the newest end are forgotten (bounded state);
    calls longer than the horizon are undercounted.
    """

    __slots__ = ("horizon_s", "items")

    SLACK_S: ClassVar[float] = 600.0  # tolerated disorder of arrival (end times)

    def __init__(self, horizon_s: float = 6 * 3600.0) -> None:
        self.horizon_s = horizon_s
        self.items: deque[tuple[float, float]] = deque()

    def _overlapping(self, start: float, end: float, cap: int = 4000) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for s2, e2 in reversed(self.items):
            if e2 <= start - self.SLACK_S:
                break
            if e2 > start and s2 < end:
                out.append((s2, e2))
                if len(out) >= cap:
                    break
        return out

    def active_at(self, t: float) -> int:
        """Known calls in progress at instant t (start <= t < end)."""
        return sum(1 for s2, e2 in self._overlapping(t, t + 1e-6) if s2 <= t)

    def peak_with(self, start: float, end: float) -> int:
        """Peak simultaneous calls within [start, end) counting a new call over it."""
        if end <= start:
            end = start + 1e-6
        events: list[tuple[float, int]] = [(start, 1), (end, -1)]
        for s2, e2 in self._overlapping(start, end):
            events.append((max(s2, start), 1))
            events.append((min(e2, end), -1))
        events.sort()  # at equal times -1 sorts before +1: a call ending at t is not active at t
        peak = cur = 0
        for _, step in events:
            cur += step
            peak = max(peak, cur)
        return peak

    def add(self, start: float, end: float) -> None:
        self.items.append((start, end))
        limit = end - self.horizon_s
        while self.items and self.items[0][1] < limit:
            self.items.popleft()


class AccountContext:
    """Everything detectors may read or keep about one account.

    The engine fills the event-time fields before each record: ``now`` (the record's
    end, UTC), ``local`` (the end in the account's time zone), ``hour_index`` and
    ``day_index`` (local hours/days since 1970-01-01), ``slot`` (hour of week, Monday
    00-01 = 0) and ``peak`` (simultaneous calls around this record).
    """

    __slots__ = (
        "_settings",
        "account",
        "clean",
        "day_index",
        "hour_index",
        "local",
        "now",
        "overlap",
        "peak",
        "policy",
        "sig",
        "slot",
        "state",
        "tz",
    )

    def __init__(self, account: str, policy: ResolvedAccount, sig: Signature) -> None:
        self.account = account
        self.policy = policy
        self.tz = ZoneInfo(policy.timezone)
        self.sig = sig
        self.overlap = Overlap()
        self.state: dict[str, Any] = {}
        self._settings: dict[str, Settings] = {}
        self.now: datetime = datetime.min
        self.local: datetime = datetime.min
        self.hour_index = 0
        self.day_index = 0
        self.slot = 0
        self.peak = 1
        self.clean = True

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


@runtime_checkable
class Detector(Protocol):
    """One fraud pattern. ``observe`` is called for every record of every account for
    which the detector is enabled, in event-time order; ``finish`` at end of input."""

    name: str
    default_warning: ClassVar[dict[str, float]]
    default_critical: ClassVar[dict[str, float]]
    default_options: ClassVar[dict[str, Any]]

    def observe(self, record: CallRecord, ctx: AccountContext) -> list[Finding]: ...

    def finish(self) -> list[tuple[Finding, AccountContext]]: ...


class BaseDetector:
    """Defaults for the lifecycle hooks; subclasses set the class attributes."""

    name: str = ""
    default_warning: ClassVar[dict[str, float]] = {}
    default_critical: ClassVar[dict[str, float]] = {}
    default_options: ClassVar[dict[str, Any]] = {}

    def finish(self) -> list[tuple[Finding, AccountContext]]:
        return []


def cost_of(record: CallRecord) -> Decimal:
    return record.cost if record.cost is not None else ZERO


def money(value: Decimal | float) -> str:
    return f"{Decimal(value).quantize(Decimal('0.01'))}"


@dataclass(slots=True)
class Tally:
    """A pattern's running size: calls, cost, first time and capped evidence ids."""

    started_at: datetime
    calls: int = 0
    cost: Decimal = ZERO
    ids: list[str] = field(default_factory=list)
    last: datetime | None = None

    CAP: ClassVar[int] = 50

    def add(self, record: CallRecord) -> None:
        self.calls += 1
        self.cost += cost_of(record)
        if len(self.ids) < self.CAP:
            self.ids.append(record.record_id)
        self.last = record.end

    def prior(self) -> tuple[str, ...]:
        return tuple(self.ids)
