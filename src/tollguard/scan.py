"""`tollguard scan`: read CDR files, normalize, price every call, summarize, detect.

One batch at a time flows reader -> dedup -> numbering -> rating -> (output, summary,
detection), so memory depends on the batch size and the number of accounts and
destinations, not on the number of records.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from tollguard.cdr.blocks import prefetch
from tollguard.cdr.dedup import Deduplicator
from tollguard.cdr.mapping import ColumnMapping
from tollguard.cdr.model import CallRecord, Disposition, cost_from_e4
from tollguard.cdr.quarantine import QuarantinedLine
from tollguard.cdr.read import read_records
from tollguard.cdr.records import records_from_frame
from tollguard.numbering.classify import NumberClassifier
from tollguard.numbering.risk import RiskList
from tollguard.policy import Policy
from tollguard.rated_output import QuarantineWriter, RatedWriter
from tollguard.rating.rate import Rater

if TYPE_CHECKING:
    from tollguard.detect.alert import Alert
    from tollguard.detect.engine import Engine

QUARANTINE_KEEP = 1000  # lines kept in the result for display; all are counted (and written out)
UNRATED_KEEP = 1000
TOP_DESTINATIONS = 5


@dataclass
class AccountTotals:
    calls: int = 0
    answered: int = 0
    billable_seconds: int = 0
    cost_e4: int = 0
    unrated: int = 0
    by_destination: dict[tuple[str, str], list[int]] = field(
        default_factory=dict
    )  # (dest, country) -> [calls, secs, cost]
    by_country: dict[str, list[int]] = field(default_factory=dict)  # country -> [calls, cost]

    @property
    def cost(self) -> Decimal:
        return cost_from_e4(self.cost_e4)

    def top_destinations(self, n: int = TOP_DESTINATIONS) -> list[dict[str, Any]]:
        ranked = sorted(self.by_destination.items(), key=lambda kv: (-kv[1][2], -kv[1][0], kv[0]))
        return [
            {
                "destination": dest,
                "country": country,
                "calls": calls,
                "billable_seconds": secs,
                "cost": str(cost_from_e4(cost)),
            }
            for (dest, country), (calls, secs, cost) in ranked[:n]
        ]

    def countries(self) -> dict[str, dict[str, Any]]:
        ranked = sorted(self.by_country.items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))
        return {c: {"calls": n, "cost": str(cost_from_e4(e4))} for c, (n, e4) in ranked}


@dataclass
class FileReport:
    path: str
    format: str
    records: int = 0
    rejected: int = 0
    duplicates: int = 0


@dataclass
class Enforcement:
    blocked_at: str | None  # the whole account, from then on
    cost_incurred: Decimal
    cost_prevented: Decimal
    calls_refused: int
    # numbers, ranges or this account's destinations ("country:TL") blocked, and since when
    blocked_subjects: dict[str, str] = field(default_factory=dict)

    @property
    def first_block(self) -> str | None:
        times = [t for t in [self.blocked_at, *self.blocked_subjects.values()] if t]
        return min(times) if times else None


@dataclass
class HistoryReport:
    """Files the engine learned from before the scanned ones (``ScanOptions.history``)."""

    files: list[FileReport] = field(default_factory=list)
    records: int = 0
    first: datetime | None = None
    last: datetime | None = None
    earlier_scanned: int = 0  # scanned records that ended before the history's last one

    def to_json(self) -> dict[str, Any]:
        return {
            "files": [vars(f) for f in self.files],
            "records": self.records,
            "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None,
            "scanned_records_before_its_end": self.earlier_scanned,
        }


@dataclass
class ScanResult:
    currency: str
    records: int = 0
    rejected: int = 0
    duplicates: int = 0
    unrated: int = 0
    files: list[FileReport] = field(default_factory=list)
    accounts: dict[str, AccountTotals] = field(default_factory=dict)
    quarantined: list[QuarantinedLine] = field(default_factory=list)
    unrated_calls: list[dict[str, Any]] = field(default_factory=list)
    unrated_reasons: dict[str, int] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)
    enforcement: dict[str, Enforcement] = field(default_factory=dict)
    detection: bool = False
    history: HistoryReport | None = None

    @property
    def cost(self) -> Decimal:
        return cost_from_e4(sum(a.cost_e4 for a in self.accounts.values()))

    def to_json(self) -> dict[str, Any]:
        accounts: dict[str, Any] = {}
        for name, acc in sorted(self.accounts.items()):
            entry: dict[str, Any] = {
                "calls": acc.calls,
                "answered": acc.answered,
                "billable_seconds": acc.billable_seconds,
                "minutes": str((Decimal(acc.billable_seconds) / 60).quantize(Decimal("0.01"))),
                "cost": str(acc.cost),
                "unrated": acc.unrated,
                "top_destinations": acc.top_destinations(),
                "countries": acc.countries(),
            }
            if name in self.enforcement:
                enf = self.enforcement[name]
                entry["enforcement"] = {
                    "blocked_at": enf.blocked_at,
                    "cost_incurred": str(enf.cost_incurred),
                    "cost_prevented": str(enf.cost_prevented),
                    "calls_refused": enf.calls_refused,
                    "blocked_subjects": enf.blocked_subjects,
                }
            accounts[name] = entry
        out: dict[str, Any] = {
            "records": self.records,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "unrated": self.unrated,
            "currency": self.currency,
            "cost": str(self.cost),
            "files": [vars(f) for f in self.files],
            "accounts": accounts,
            "rejected_lines": [q.to_dict() for q in self.quarantined],
            "unrated_calls": self.unrated_calls,
            "unrated_reasons": self.unrated_reasons,
        }
        if self.detection:
            out["alerts"] = [a.to_dict() for a in self.alerts]
        if self.history is not None:
            out["history"] = self.history.to_json()
        return out


ProgressHook = Callable[[str, int], None]  # (file, records done in this batch)


@dataclass
class ScanOptions:
    fmt: str = "auto"
    rates: str | None = None
    out: Path | None = None
    quarantine_out: Path | None = None
    detect: bool = False
    enforce: bool = False
    assume_utc: bool = False
    batch_rows: int = 250_000
    mapping: ColumnMapping | None = None
    source: str | None = None
    # files detection learns from first (signatures, population, open windows); their
    # calls are not counted and their alerts not reported
    history: Sequence[Path] = ()


class Scanner:
    """Runs the pipeline for a policy; reusable across files in one scan."""

    def __init__(self, policy: Policy, options: ScanOptions) -> None:
        self.policy = policy
        self.options = options
        risk_list = (
            RiskList.merged(policy.resolve_path(policy.defaults.risk_list))
            if policy.defaults.risk_list
            else RiskList.bundled()
        )
        self.classifier = NumberClassifier(risk_list)
        self.rater = Rater(policy, options.rates)
        self.dedup = Deduplicator()
        self.currency = policy.defaults.currency or "EUR"
        self.engine: Engine | None = None
        if options.detect or options.enforce:
            from tollguard.detect.engine import Engine

            self.engine = Engine(policy, enforce=options.enforce)

    def rated_batches(
        self,
        paths: Sequence[Path],
        result: ScanResult,
        progress: ProgressHook | None = None,
        quarantine: QuarantineWriter | None = None,
    ) -> Iterator[pl.DataFrame]:
        """Yield rated frames; fill file reports, rejects and duplicates into ``result``."""
        ctx = self.policy.dialing_context()
        for path in paths:
            report: FileReport | None = None
            for batch in read_records(
                path,
                self.options.fmt,
                ctx,
                batch_rows=self.options.batch_rows,
                assume_utc=self.options.assume_utc,
                mapping=self.options.mapping,
                source=self.options.source,
            ):
                if report is None:
                    report = FileReport(str(path), batch.format)
                    result.files.append(report)
                report.rejected += len(batch.quarantined)
                result.rejected += len(batch.quarantined)
                room = QUARANTINE_KEEP - len(result.quarantined)
                result.quarantined.extend(batch.quarantined[: max(room, 0)])
                if quarantine is not None:
                    quarantine.write(batch.quarantined)
                frame, dropped = self.dedup.filter(batch.frame)
                report.duplicates += dropped
                result.duplicates += dropped
                report.records += frame.height
                if progress is not None:
                    progress(str(path), batch.frame.height + len(batch.quarantined))
                if frame.height == 0:
                    continue
                frame = self.classifier.classify_frame(frame, self.policy.dialing_context)
                yield self.rater.rate_frame(frame)


def _summarize(result: ScanResult, frame: pl.DataFrame, no_deck: list[str]) -> None:
    result.records += frame.height
    answered = pl.col("disposition") == Disposition.ANSWERED.value
    per_account = frame.group_by("account").agg(
        pl.len().alias("calls"),
        answered.sum().alias("answered"),
        pl.col("billsec").sum().alias("billsec"),
        pl.col("cost_e4").sum().alias("cost_e4"),
        pl.col("cost_e4").is_null().sum().alias("unrated"),
    )
    for row in per_account.iter_rows(named=True):
        acc = result.accounts.setdefault(row["account"], AccountTotals())
        acc.calls += row["calls"]
        acc.answered += row["answered"]
        acc.billable_seconds += row["billsec"] or 0
        acc.cost_e4 += row["cost_e4"] or 0
        acc.unrated += row["unrated"]
    per_dest = (
        frame.filter(pl.col("cost_e4").is_not_null())
        .group_by("account", "destination", "country")
        .agg(pl.len(), pl.col("billsec").sum(), pl.col("cost_e4").sum())
    )
    for account, dest, country, calls, secs, cost in per_dest.iter_rows():
        acc = result.accounts[account]
        d = acc.by_destination.setdefault((dest or "", country or ""), [0, 0, 0])
        d[0] += calls
        d[1] += secs or 0
        d[2] += cost or 0
        c = acc.by_country.setdefault(country or "??", [0, 0])
        c[0] += calls
        c[1] += cost or 0
    unrated = frame.filter(pl.col("cost_e4").is_null())
    result.unrated += unrated.height
    if unrated.height == 0:
        return
    unrated = unrated.with_columns(_unrated_kind(no_deck).alias("_kind"))
    for kind, count in unrated.get_column("_kind").value_counts().iter_rows():
        result.unrated_reasons[kind] = result.unrated_reasons.get(kind, 0) + count
    room = UNRATED_KEEP - len(result.unrated_calls)
    if room > 0:
        for row in unrated.head(room).iter_rows(named=True):
            result.unrated_calls.append(
                {
                    "record_id": row["record_id"],
                    "account": row["account"],
                    "callee": row["callee"],
                    "callee_e164": row["callee_e164"],
                    "source_file": row["source_file"],
                    "source_line": row["source_line"],
                    "reason": _unrated_reason(row),
                }
            )


UNRATED_KINDS = {
    "not_public": "callee is not a public number (internal extension, service code or junk)",
    "no_deck": "no rate deck applies to the account",
    "no_prefix": "no rate-deck prefix matches the callee",
}


def _unrated_kind(no_deck: list[str]) -> pl.Expr:
    return (
        pl.when(pl.col("callee_e164").is_null())
        .then(pl.lit("not_public"))
        .when(pl.col("account").is_in(no_deck))
        .then(pl.lit("no_deck"))
        .otherwise(pl.lit("no_prefix"))
    )


def _unrated_reason(row: dict[str, Any]) -> str:
    """The row's unrated kind (``_kind``), said about this call."""
    if row["_kind"] == "not_public":
        return f"callee {row['callee']!r} is not a public number (extension, service code or junk)"
    if row["_kind"] == "no_deck":
        return f"no rate deck applies to account {row['account']!r} (give --rates or rates=)"
    return f"no rate-deck prefix (in force at the call's start) matches {row['callee_e164']}"


def scan_records(
    paths: Sequence[Path],
    policy: Policy,
    result: ScanResult | None = None,
    progress: ProgressHook | None = None,
    options: ScanOptions | None = None,
) -> Iterator[CallRecord]:
    """The records of CDR files read, numbered, rated and deduplicated as ``scan`` does,
    in event order per batch; file reports, rejects and duplicates go into ``result``."""
    scanner = Scanner(policy, options or ScanOptions())
    if result is None:
        result = ScanResult(currency=scanner.currency, detection=False)
    for frame in scanner.rated_batches(paths, result, progress, None):
        yield from records_from_frame(frame)


def run_scan(
    paths: Sequence[Path],
    policy: Policy,
    options: ScanOptions,
    progress: ProgressHook | None = None,
) -> ScanResult:
    scanner = Scanner(policy, options)
    result = ScanResult(currency=scanner.currency, detection=scanner.engine is not None)
    writer = RatedWriter(options.out) if options.out else None
    quarantine = QuarantineWriter(options.quarantine_out) if options.quarantine_out else None
    with _long_lived_state(detecting=scanner.engine is not None):
        if options.history and scanner.engine is not None:
            result.history = _learn_history(scanner, scanner.engine, options.history, progress)
        batches = scanner.rated_batches(paths, result, progress, quarantine)
        if scanner.engine is not None:
            # the engine is the slowest stage: read, number and rate the next batch in a
            # thread meanwhile (Polars releases the GIL while it works)
            batches = prefetch(batches)
        try:
            for frame in batches:
                accounts = frame.get_column("account").unique().to_list()
                no_deck = [a for a in accounts if scanner.rater.deck_for(a) is None]
                _summarize(result, frame, no_deck)
                if writer is not None:
                    writer.write(frame)
                if result.history is not None and result.history.last is not None:
                    early = frame.get_column("end") < result.history.last
                    result.history.earlier_scanned += int(early.sum())
                if scanner.engine is not None:
                    for record in records_from_frame(frame):
                        # with enforce=True the engine itself counts calls it would refuse
                        scanner.engine.process(record)
        finally:
            if writer is not None:
                writer.close()
            if quarantine is not None:
                quarantine.close()
    if scanner.engine is not None:
        scanner.engine.finish()
        result.alerts = list(scanner.engine.alerts)
        if options.enforce:
            for account, summary in scanner.engine.enforcement().items():
                result.enforcement[account] = Enforcement(
                    blocked_at=summary.blocked_at.isoformat() if summary.blocked_at else None,
                    cost_incurred=summary.cost_incurred,
                    cost_prevented=summary.cost_prevented,
                    calls_refused=summary.calls_refused,
                    blocked_subjects={
                        k: v.isoformat() for k, v in summary.blocked_subjects.items()
                    },
                )
    return result


@contextmanager
def _long_lived_state(detecting: bool) -> Iterator[None]:
    """Detection keeps its state for the whole run while a million short-lived records
    pass through: the cyclic collector would rescan that state again and again (about 4%
    of a detection scan). Collect young objects less often and leave what exists at the
    start (policy, decks, numbering tables) out of the scans; restored afterwards."""
    if not detecting:
        yield
        return
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(threshold[0], 50_000), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _learn_history(
    scanner: Scanner, engine: Engine, paths: Sequence[Path], progress: ProgressHook | None
) -> HistoryReport:
    """Run the history through detection, then start reporting afresh: what the engine
    learned stays, the history's alerts, blocks and counts do not."""
    learned = ScanResult(currency=scanner.currency)
    report = HistoryReport(files=learned.files)
    for frame in prefetch(scanner.rated_batches(paths, learned, progress, None)):
        ends = frame.get_column("end")
        first, last = ends.min(), ends.max()
        if isinstance(first, datetime) and (report.first is None or first < report.first):
            report.first = first
        if isinstance(last, datetime) and (report.last is None or last > report.last):
            report.last = last
        report.records += frame.height
        for record in records_from_frame(frame):
            engine.process(record)
    engine.start_reporting()
    return report
