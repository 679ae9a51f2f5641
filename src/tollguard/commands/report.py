"""`tollguard report daily` and `tollguard report schedule`: the daily traffic report."""

from __future__ import annotations

import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sqlalchemy import Engine

from tollguard.clikit import fail, load_policy_with_overrides

app = typer.Typer(help="Daily traffic reports: figures against limits and normal traffic.",
                  no_args_is_help=True)  # fmt: skip


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="report")


DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Database with rated records (default: $TOLLGUARD_DATABASE_URL)."),
]
RecordsOpt = Annotated[
    Path | None,
    typer.Option("--records", help="Rated records file from `scan --out` (.parquet or .csv)."),
]
PolicyOpt = Annotated[
    Path | None, typer.Option("--policy", help="Policy TOML (time zone, currency, limits).")
]


def _source(db: str | None, records: Path | None) -> tuple[Engine | None, Path | None]:
    import os

    if db and records:
        fail("give --db or --records, not both")
    if records is not None:
        if not records.is_file():
            fail(f"no such file: {records}", "write one with `tollguard scan --out rated.parquet`")
        return None, records
    url = db or os.environ.get("TOLLGUARD_DATABASE_URL")
    if not url:
        fail("no records: give --db URL or --records FILE")
    from sqlalchemy import inspect

    from tollguard.store.engine import make_engine

    engine = make_engine(url)
    if not inspect(engine).has_table("rated_records"):
        fail(f"{url} has no rated records", "`tollguard ingest` or `tollguard db upgrade` first")
    return engine, None


@app.command("daily")
def daily(
    account: Annotated[str, typer.Option("--account", help="Account id.")],
    day: Annotated[
        str, typer.Option("--date", help="Local calendar day, YYYY-MM-DD (default: yesterday).")
    ] = "",
    fmt: Annotated[str, typer.Option("--format", help="html | pdf | csv")] = "html",
    db: DbOpt = None,
    records: RecordsOpt = None,
    policy: PolicyOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="File to write (default: stdout).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """One account's day: calls, minutes and cost against its limits and normal traffic.

    By hour and by destination, against its limits and its normal traffic (same
    weekday, previous four weeks)."""
    from tollguard.reports.daily import daily_report
    from tollguard.reports.daily_render import FORMATS, render

    if fmt not in FORMATS:
        fail(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    pol = load_policy_with_overrides(policy)
    tz = pol.account(account).tz
    try:
        when = date.fromisoformat(day) if day else datetime.now(tz).date() - timedelta(days=1)
    except ValueError:
        fail(f"--date {day!r} is not YYYY-MM-DD")
    engine, path = _source(db, records)
    report = daily_report(pol, account, when, engine=engine, records=path)
    if as_json:
        import orjson

        sys.stdout.buffer.write(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")
        return
    body = render(report, fmt)
    if out is None:
        if fmt == "pdf" and sys.stdout.isatty():
            fail("a PDF to a terminal: give --out FILE")
        sys.stdout.buffer.write(body)
        return
    out.write_bytes(body)
    t = report.total
    typer.echo(
        f"{out}: {account} {when}: {t.calls} calls, {t.minutes} min, {report.currency} {t.cost}"
        + (f"; {len(report.deviations)} deviation(s)" if report.deviations else ""),
        err=True,
    )


@app.command("schedule")
def schedule(
    schedule_file: Annotated[
        Path, typer.Option("--schedule", help="Schedule TOML (\\[accounts.X.report] daily_at).")
    ],
    policy: PolicyOpt = None,
    db: DbOpt = None,
    records: RecordsOpt = None,
    smtp: Annotated[
        str | None, typer.Option("--smtp", help="SMTP URL (default $TOLLGUARD_SMTP_URL).")
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(
            help="Where the last day sent per account is kept (default: <schedule>.sent.json)."
        ),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Send what is due now, then exit.")] = False,
    now: Annotated[
        str | None,
        typer.Option("--now", help="Pretend it is this time (ISO 8601 with zone; tests, replays)."),
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between looks (without --once).")] = 60,
) -> None:
    """Mail each account's report of yesterday at its local `daily_at`, CSV attached."""
    from tollguard.notify.mail import MailSender, SmtpSettings
    from tollguard.reports.daily_schedule import ScheduleError, SentLog, load_schedule, run_once

    pol = load_policy_with_overrides(policy)
    try:
        schedules = load_schedule(schedule_file, pol)
        settings = SmtpSettings.from_url(smtp) if smtp else SmtpSettings.from_env()
    except (ScheduleError, ValueError) as exc:
        fail(str(exc))
    if settings is None:
        fail("no SMTP server: give --smtp URL or set TOLLGUARD_SMTP_URL",
             "docs/notifications.md shows the URL forms")  # fmt: skip
    engine, path = _source(db, records)
    sent = SentLog(state or schedule_file.with_suffix(".sent.json"))
    mail = MailSender(settings)
    at: datetime | None = None
    if now:
        try:
            at = datetime.fromisoformat(now.replace("Z", "+00:00"))
        except ValueError:
            fail(f"--now {now!r} is not ISO 8601")
        if at.tzinfo is None:
            fail("--now needs a zone, e.g. 2026-10-24T07:05:00+02:00")
    while True:
        results = run_once(schedules, pol, at or datetime.now(UTC), sent, mail,
                           engine=engine, records=path)  # fmt: skip
        for r in results:
            state_text = "sent" if r.sent else f"NOT sent ({r.error})"
            typer.echo(f"{r.account} {r.day}: {state_text} to {', '.join(r.to)}", err=True)
        if once or at is not None:
            failed = [r for r in results if not r.sent]
            raise typer.Exit(1 if failed else 0)
        time.sleep(interval)
