"""`tollguard cases ...`: alerts into cases, the analyst workflow, and the evidence pack."""

from __future__ import annotations

from collections import Counter
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from tollguard.cases.clisupport import (
    ActorOpt,
    DbOpt,
    JsonOpt,
    NowOpt,
    PolicyOpt,
    SmtpOpt,
    actor_name,
    db,
    emit_json,
    parse_day,
    parse_time,
    policy,
)
from tollguard.cases.model import Case, CaseError, Timer, human_duration
from tollguard.cases.service import CaseService
from tollguard.clikit import fail
from tollguard.detect.alert import Alert

app = typer.Typer(
    help="Cases: alerts grouped per account or number, workflow, timers, evidence.",
    no_args_is_help=True,
)
out = Console()


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="cases")


def _service(
    url: str | None,
    policy_path: Path | None = None,
    *,
    notify: bool = False,
    smtp: str | None = None,
) -> CaseService:
    engine = db(url)
    pol = policy(policy_path)
    notifier = None
    if notify and pol is not None:
        from tollguard.notify.dispatch import Notifier
        from tollguard.notify.mail import MailSender, SmtpSettings

        try:
            settings = SmtpSettings.from_url(smtp) if smtp else SmtpSettings.from_env()
        except ValueError as exc:
            fail(str(exc), "see docs/notifications.md for SMTP URLs")
        mail = MailSender(settings) if settings else None
        notifier = Notifier(engine, pol, mail=mail)
    return CaseService(engine, policy=pol, notifier=notifier)


def _guard(exc: CaseError) -> None:
    fail(str(exc), exc.hint or None)


def _print_case(case: Case) -> None:
    sev = "red" if case.severity == "critical" else "yellow"
    out.print(
        f"[bold]{case.id}[/bold]  [{sev}]{case.severity}[/{sev}]  {case.status}  {case.title}"
    )
    out.print(
        f"  account {case.account}  ·  {case.subject_kind} {case.subject}  ·  "
        f"{case.alert_count} alert(s), {case.records} records, {case.currency} {case.cost}"
        + (f"  ·  assigned to {case.assignee}" if case.assignee else "")
    )


@app.command("import")
def import_alerts(
    alerts_file: Annotated[Path, typer.Argument(help="alerts.jsonl from `scan --alerts-out`.")],
    db_url: DbOpt = None,
    policy_path: PolicyOpt = None,
    notify: Annotated[bool, typer.Option(help="Tell the policy's contacts (webhook/mail).")] = True,
    smtp: Annotated[
        str | None, typer.Option(help="SMTP URL (default $TOLLGUARD_SMTP_URL).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Load alerts into cases (idempotent: importing the same file twice changes nothing).

    Times are the alerts' event times, so escalations fall due as they would have live."""
    if not alerts_file.is_file():
        fail(f"no such file: {alerts_file}", "write one with `tollguard scan --alerts-out FILE`")
    alerts: list[Alert] = []
    for number, line in enumerate(alerts_file.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            alerts.append(Alert.from_dict(orjson.loads(line)))
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
            fail(f"{alerts_file}:{number}: not an alert ({exc})", "one alert JSON per line")
    svc = _service(db_url, policy_path, notify=notify, smtp=smtp)
    results = svc.ingest_many(alerts)
    outcomes = Counter(r.outcome for r in results)
    case_ids = sorted({r.case.id for r in results})
    if as_json:
        emit_json(
            {
                "alerts": len(alerts),
                "outcomes": dict(outcomes),
                "cases": [svc.get(c).to_dict() for c in case_ids],
            }
        )
        return
    out.print(
        f"{len(alerts)} alert(s): "
        + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items()))
        + f"; {len(case_ids)} case(s)"
    )
    for cid in case_ids:
        _print_case(svc.get(cid))


@app.command("list")
def list_cases(
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            help="new, acknowledged, confirmed_fraud, false_positive, closed or open (repeatable).",
        ),
    ] = None,
    account: Annotated[str | None, typer.Option(help="Only this account.")] = None,
    assignee: Annotated[
        str | None, typer.Option(help="Only cases assigned to this person.")
    ] = None,
    severity: Annotated[str | None, typer.Option(help="warning or critical.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (newest first).")] = 200,
    db_url: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List cases, newest activity first."""
    svc = _service(db_url)
    try:
        cases = svc.list_cases(
            status=status, account=account, assignee=assignee, severity=severity, limit=limit
        )
    except CaseError as exc:
        _guard(exc)
    if as_json:
        emit_json([c.to_dict() for c in cases])
        return
    if not cases:
        out.print("no cases")
        return
    table = Table("case", "severity", "status", "account", "subject", "alerts", "cost",
                  "onset (UTC)", "to alert", "to block", "assignee")  # fmt: skip
    for c in cases:
        t = {x.name: x for x in c.timers()}

        def dur(name: str, t: dict[str, Timer] = t) -> str:
            timer = t[name]
            return human_duration(timer.since_onset) if timer.since_onset is not None else "-"

        table.add_row(
            c.id, c.severity, c.status, c.account, f"{c.subject_kind} {c.subject}",
            str(c.alert_count), f"{c.currency} {c.cost}",
            c.first_record_at.strftime("%Y-%m-%d %H:%M"), dur("first_alert"), dur("blocked"),
            c.assignee or "",
        )  # fmt: skip
    out.print(table)


@app.command("show")
def show(
    case_id: Annotated[str, typer.Argument(help="Case id (or a unique prefix).")],
    db_url: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One case: timers as durations from onset, alerts with explanations, history."""
    svc = _service(db_url)
    try:
        case = svc.get(case_id, detail=True)
    except CaseError as exc:
        _guard(exc)
    if as_json:
        emit_json(case.to_dict(detail=True))
        return
    _print_case(case)
    out.print("\n[bold]Timers[/bold]")
    for t in case.timers():
        out.print(f"  {t.sentence()}")
    out.print("\n[bold]Alerts[/bold]")
    for a in case.alerts:
        exp = a["explanation"]
        limit = exp.get("threshold", exp.get("expected"))
        out.print(
            f"  {a['id']}  {a['detector']}  {a['severity']}  {a['subject_kind']} {a['subject']}"
            f"  {a['records']} records  {a['currency']} {a['cost']}"
        )
        out.print(f"    {exp.get('parameter')} = {exp.get('value')} (vs {limit}): {exp.get('why')}")
    out.print("\n[bold]History[/bold]")
    for e in case.events:
        out.print(f"  {e.at.isoformat()}  {e.kind:<14} {e.actor:<12} {e.text}")


def _transition(verb: str, case_id: str, db_url: str | None, actor: str | None,
                now: str | None, note: str, as_json: bool, **kw: bool) -> CaseService:  # fmt: skip
    svc = _service(db_url)
    try:
        method = getattr(svc, verb)
        case = method(case_id, actor=actor_name(actor), now=parse_time(now), note=note, **kw)
    except CaseError as exc:
        _guard(exc)
    if as_json:
        emit_json(case.to_dict())
    else:
        _print_case(case)
    return svc


NoteOpt = Annotated[str, typer.Option("--note", "-m", help="Why (kept in the history).")]
IdArg = Annotated[str, typer.Argument(help="Case id (or a unique prefix).")]


@app.command("ack")
def ack(case_id: IdArg, note: NoteOpt = "", actor: ActorOpt = None, now: NowOpt = None,
        db_url: DbOpt = None, as_json: JsonOpt = False) -> None:  # fmt: skip
    """Acknowledge: someone is looking at it (stops escalation)."""
    _transition("ack", case_id, db_url, actor, now, note, as_json)


@app.command("confirm")
def confirm(case_id: IdArg, note: NoteOpt = "", actor: ActorOpt = None, now: NowOpt = None,
            db_url: DbOpt = None, as_json: JsonOpt = False) -> None:  # fmt: skip
    """Verdict: confirmed fraud."""
    _transition("confirm", case_id, db_url, actor, now, note, as_json)


@app.command("false-positive")
def false_positive(
    case_id: IdArg, note: NoteOpt = "", actor: ActorOpt = None, now: NowOpt = None,
    tune: Annotated[bool, typer.Option(help="Teach the account's detectors (known_*).")] = True,
    db_url: DbOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Verdict: false positive; what it called becomes known for the account.

    Its countries/numbers become known for the account; the policy snippet to load is
    printed (and kept: `tollguard cases tuning`)."""
    svc = _transition("false_positive", case_id, db_url, actor, now, note, as_json, tune=tune)
    if tune and not as_json:
        case = svc.get(case_id)
        out.print("\nTuning for the policy file (also: tollguard cases tuning):")
        out.print(svc.tuning_toml(case.account), markup=False, highlight=False)


@app.command("close")
def close(case_id: IdArg, note: NoteOpt = "", actor: ActorOpt = None, now: NowOpt = None,
          db_url: DbOpt = None, as_json: JsonOpt = False) -> None:  # fmt: skip
    """Close a case that has a verdict. It reopens by itself if the pattern returns."""
    _transition("close", case_id, db_url, actor, now, note, as_json)


@app.command("comment")
def comment(
    case_id: IdArg,
    text: Annotated[str, typer.Argument(help="The comment.")],
    actor: ActorOpt = None, now: NowOpt = None, db_url: DbOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Add a comment to the case's history."""
    svc = _service(db_url)
    try:
        case = svc.comment(case_id, text, actor=actor_name(actor), now=parse_time(now))
    except CaseError as exc:
        _guard(exc)
    emit_json(case.to_dict()) if as_json else _print_case(case)


@app.command("assign")
def assign(
    case_id: IdArg,
    assignee: Annotated[str, typer.Argument(help="Who works on it ('' to unassign).")],
    actor: ActorOpt = None, now: NowOpt = None, db_url: DbOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Assign the case to someone."""
    svc = _service(db_url)
    try:
        case = svc.assign(case_id, assignee, actor=actor_name(actor), now=parse_time(now))
    except CaseError as exc:
        _guard(exc)
    emit_json(case.to_dict()) if as_json else _print_case(case)


@app.command("action")
def action(
    case_id: IdArg,
    what: Annotated[str, typer.Argument(help="block, unblock, hold-payout, release-payout, other")],
    note: NoteOpt = "",
    amount: Annotated[str | None, typer.Option(help="hold-payout: amount to hold.")] = None,
    records: Annotated[
        Path | None, typer.Option(help="hold-payout: rated records to sum the amount from.")
    ] = None,
    period_from: Annotated[str | None, typer.Option("--from", help="hold-payout: 1st day.")] = None,
    period_to: Annotated[str | None, typer.Option("--to", help="hold-payout: last day.")] = None,
    actor: ActorOpt = None, now: NowOpt = None, db_url: DbOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Record an action taken (block, hold-payout, ...).

    `block` starts the case's block timer; `hold-payout` on a case about a number also
    writes a payout hold (see `tollguard payouts`)."""
    kind = what.replace("-", "_")
    svc = _service(db_url)
    who = actor_name(actor)
    at = parse_time(now)
    data: dict[str, str] = {}
    try:
        case = svc.get(case_id)
        if kind == "hold_payout":
            if case.subject_kind != "number":
                fail(f"case {case.id} is about account {case.account}, not a number",
                     "hold payouts on premium-rate number cases")  # fmt: skip
            from tollguard.cases.payouts import PayoutError, PayoutLedger

            start = parse_day(period_from, "--from") if period_from else case.first_record_at.date()
            end = parse_day(period_to, "--to") if period_to else case.last_alert_at.date()
            total, currency = _hold_amount(amount, records, case.subject, start, end, case)
            try:
                hold = PayoutLedger(svc.engine).hold(
                    case.subject, start, end, total, currency=currency,
                    reason=note or f"case {case.id}", actor=who, case_id=case.id, now=at,
                )  # fmt: skip
            except PayoutError as exc:
                fail(str(exc), exc.hint or None)
            data = {"hold": hold.id, "amount": str(hold.amount), "currency": hold.currency}
        case = svc.action(case.id, kind, actor=who, now=at, note=note, data=data)
    except CaseError as exc:
        _guard(exc)
    emit_json(case.to_dict()) if as_json else _print_case(case)


def _hold_amount(
    amount: str | None, records: Path | None, number: str, start: date, end: date, case: Case
) -> tuple[Decimal, str]:
    if amount is not None:
        try:
            return Decimal(amount), case.currency
        except InvalidOperation:
            fail(f"--amount {amount!r} is not a number")
    if records is not None:
        from tollguard.cases.payouts import amount_for_number
        from tollguard.cases.records import load_rated_file

        total, _, currency = amount_for_number(load_rated_file(records), number, start, end)
        return total, currency
    fail("hold-payout needs --amount or --records FILE", "the rated records give the exact sum")


@app.command("export")
def export(
    case_id: IdArg,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the case file to.")],
    records: Annotated[
        Path | None,
        typer.Option(help="Rated records (.parquet/.csv from `scan --out`); default: the store."),
    ] = None,
    policy_path: PolicyOpt = None,
    make_zip: Annotated[bool, typer.Option("--zip", help="Also write OUT.zip.")] = False,
    until: Annotated[str | None, typer.Option(help="Last call start to include (ISO).")] = None,
    actor: ActorOpt = None, now: NowOpt = None, db_url: DbOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Write the evidence pack (CSV, JSON, HTML and PDF, with SHA256SUMS).

    Records with their deck rows, reconciled totals, timeline, policy and alerts."""
    from tollguard.cases.records import load_rated_db, load_rated_file
    from tollguard.reports.evidence import ReconciliationError, export_case

    svc = _service(db_url, policy_path)
    try:
        case = svc.get(case_id)
    except CaseError as exc:
        _guard(exc)
    if records is not None:
        if not records.is_file():
            fail(f"no such file: {records}")
        try:
            frame = load_rated_file(records)
        except ValueError as exc:
            fail(str(exc))
    else:
        accounts = None if case.subject_kind == "number" else [case.account]
        db_frame = load_rated_db(svc.engine, accounts=accounts, since=case.first_record_at)
        if db_frame is None:
            fail("no rated records in the database", "pass --records rated.parquet (scan --out)")
        frame = db_frame
    try:
        result = export_case(
            svc, case.id, out_dir, frame, policy_path=policy_path, make_zip=make_zip,
            until=parse_time(until, name="--until"), actor=actor_name(actor), now=parse_time(now),
        )  # fmt: skip
    except ReconciliationError as exc:
        fail(f"totals do not reconcile: {exc}", "this is a bug; please report it", code=3)
    if as_json:
        emit_json(result.to_dict())
        return
    out.print(f"case file for {case.id} in {result.directory} ({result.records} records)")
    for t in result.totals:
        out.print(
            f"  total {t['currency']} {t['cost']} over {t['rated']} rated records (reconciled)"
        )
    for note in result.notes:
        out.print(f"  note: {note}")
    if result.zip_path:
        out.print(f"  zip: {result.zip_path}")


@app.command("tuning")
def tuning(
    account: Annotated[str | None, typer.Option(help="Only this account.")] = None,
    db_url: DbOpt = None,
) -> None:
    """Print what false positives taught, as a policy TOML snippet to merge."""
    print(_service(db_url).tuning_toml(account), end="")


@app.command("escalate")
def escalate(
    policy_path: Annotated[Path, typer.Option("--policy", help="Policy TOML (escalation).")],
    smtp: SmtpOpt = None,
    now: NowOpt = None, db_url: DbOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Escalate cases not acknowledged in time (run from cron, or by the live service)."""
    from datetime import UTC, datetime

    svc = _service(db_url, policy_path, notify=True, smtp=smtp)
    due = svc.escalate_due(parse_time(now) or datetime.now(UTC))
    if as_json:
        emit_json([c.to_dict() for c in due])
        return
    out.print(f"{len(due)} case(s) escalated")
    for c in due:
        _print_case(c)
