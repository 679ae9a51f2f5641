"""Scheduled daily reports: per account, at a local time, mailed with the CSV attached.

Schedule file (TOML; the policy file itself rejects unknown keys, so the schedule sits
beside it with the same shape)::

    [defaults.report]
    format = "html"                 # body: html (with a plain-text part) | pdf attached too
    [accounts."hoek-techniek".report]
    daily_at = "07:00"              # local time of the account (policy time zone)
    to = ["it@hoek.example"]        # default: the account's contacts with an e-mail

At or after ``daily_at`` local time, the report of the previous local day is due; the
runner sends each due report once (the state file remembers the last day sent per
account), so running it every minute from cron or ``--loop`` is safe.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Engine

from tollguard.policy import Policy


class ScheduleError(ValueError):
    pass


@dataclass(frozen=True)
class ReportSchedule:
    account: str
    daily_at: time
    to: tuple[str, ...]
    pdf: bool = False


@dataclass
class SendResult:
    account: str
    day: date
    to: list[str]
    sent: bool
    error: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)


def load_schedule(path: Path, policy: Policy) -> list[ReportSchedule]:
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScheduleError(f"{path}: cannot read schedule: {exc}") from None
    return parse_schedule(data, policy, str(path))


def parse_schedule(data: dict[str, Any], policy: Policy, source: str) -> list[ReportSchedule]:
    defaults = (data.get("defaults") or {}).get("report") or {}
    out: list[ReportSchedule] = []
    for account, spec in (data.get("accounts") or {}).items():
        rep = {**defaults, **((spec or {}).get("report") or {})}
        where = f"{source}: accounts.{account}.report"
        if "daily_at" not in rep:
            continue
        try:
            at = time.fromisoformat(str(rep["daily_at"]))
        except ValueError:
            raise ScheduleError(f"{where}.daily_at: {rep['daily_at']!r}; use HH:MM") from None
        to = rep.get("to")
        if to is None:
            to = [c.email for c in policy.account(account).contacts if c.email]
        if not isinstance(to, list) or not all(isinstance(x, str) and "@" in x for x in to):
            raise ScheduleError(f"{where}.to: a list of e-mail addresses")
        if not to:
            raise ScheduleError(f"{where}: no recipients (give `to` or contacts with an email)")
        fmt = rep.get("format", "html")
        if fmt not in ("html", "pdf"):
            raise ScheduleError(f"{where}.format: html or pdf")
        out.append(ReportSchedule(account, at, tuple(to), fmt == "pdf"))
    return out


def due_day(schedule: ReportSchedule, tz: str, now: datetime) -> date:
    """The report day due at ``now``: yesterday once today's ``daily_at`` has passed,
    else the day before yesterday."""
    local = now.astimezone(ZoneInfo(tz))
    today = local.date()
    passed = local.time().replace(tzinfo=None) >= schedule.daily_at
    return today - timedelta(days=1 if passed else 2)


class SentLog:
    """Last day sent per account (a small JSON file written atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sent: dict[str, str] = {}
        if path.exists():
            self.sent = dict(orjson.loads(path.read_bytes()))

    def last(self, account: str) -> date | None:
        value = self.sent.get(account)
        return date.fromisoformat(value) if value else None

    def mark(self, account: str, day: date) -> None:
        self.sent[account] = day.isoformat()
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_bytes(orjson.dumps(self.sent, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        tmp.replace(self.path)


def run_once(
    schedules: list[ReportSchedule],
    policy: Policy,
    now: datetime,
    sent: SentLog,
    mail: Any,
    *,
    engine: Engine | None = None,
    records: Path | None = None,
) -> list[SendResult]:
    """Send every report due at ``now`` that was not sent yet (one per account: the
    latest due day; a runner that was down for days does not flood the inbox)."""
    from tollguard.reports.daily import daily_report
    from tollguard.reports.daily_render import render_csv, render_html, render_pdf

    results: list[SendResult] = []
    for sch in schedules:
        tz = policy.account(sch.account).timezone
        day = due_day(sch, tz, now)
        last = sent.last(sch.account)
        if last is not None and last >= day:
            continue
        report = daily_report(policy, sch.account, day, engine=engine, records=records, now=now)
        t = report.total
        subject = (
            f"tollguard daily report {sch.account} {day}: {t.calls} calls, "
            f"{report.currency} {t.cost}" + (" - DEVIATIONS" if report.deviations else "")
        )
        text = [
            f"Daily traffic report for {sch.account}, {day} ({report.zone_label}).",
            f"Calls {t.calls}, minutes {t.minutes}, cost {report.currency} {t.cost}.",
        ]
        if report.normal is not None:
            text.append(f"Normal: cost {report.currency} {report.normal.cost}, "
                        f"{report.normal.calls:.1f} calls.")  # fmt: skip
        text += ["", "Deviations:"] + [f"- {d}" for d in report.deviations or ["none"]]
        text += ["", "The figures per hour and destination are in the attached CSV."]
        msg = mail.build(list(sch.to), subject, "\n".join(text), html=render_html(report))
        name = f"tollguard-{sch.account}-{day}"
        msg.add_attachment(
            render_csv(report).encode("utf-8"), maintype="text", subtype="csv",
            filename=f"{name}.csv",
        )  # fmt: skip
        if sch.pdf:
            msg.add_attachment(
                render_pdf(report), maintype="application", subtype="pdf", filename=f"{name}.pdf"
            )
        delivery = mail.send(msg)
        result = SendResult(sch.account, day, list(sch.to), delivery.ok, delivery.error,
                            {"calls": t.calls, "cost": str(t.cost)})  # fmt: skip
        if delivery.ok:
            sent.mark(sch.account, day)
        results.append(result)
    return results
