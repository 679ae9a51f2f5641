"""`tollguard notify ...`: the dead-letter list of failed deliveries, and a test message."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tollguard.cases.clisupport import (
    DbOpt,
    JsonOpt,
    NowOpt,
    SmtpOpt,
    db,
    emit_json,
    parse_time,
    policy,
)
from tollguard.clikit import fail

app = typer.Typer(help="Notifications: dead letters and test messages.", no_args_is_help=True)
dead = typer.Typer(help="Deliveries that failed after every retry.", no_args_is_help=True)
app.add_typer(dead, name="dead-letters")
out = Console()


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="notify")


def _notifier(db_url: str | None, smtp: str | None, policy_path: Path | None = None):  # type: ignore[no-untyped-def]
    from tollguard.notify.dispatch import Notifier
    from tollguard.notify.mail import MailSender, SmtpSettings

    try:
        settings = SmtpSettings.from_url(smtp) if smtp else SmtpSettings.from_env()
    except ValueError as exc:
        fail(str(exc), "see docs/notifications.md for SMTP URLs")
    return Notifier(
        db(db_url), policy(policy_path), mail=MailSender(settings) if settings else None
    )


@dead.command("list")
def dead_list(db_url: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Show deliveries that failed after every retry."""
    letters = _notifier(db_url, None).dead_letters()
    if as_json:
        emit_json([d.to_dict() for d in letters])
        return
    if not letters:
        out.print("no dead letters")
    for d in letters:
        out.print(
            f"{d.id}  {d.created_at.isoformat()}  {d.event}  {d.channel} {d.target}  "
            f"case {d.case_id}  {d.attempts} attempts: {d.last_error}",
            highlight=False,
        )


@dead.command("replay")
def dead_replay(
    ids: Annotated[list[str] | None, typer.Argument(help="Ids to replay (default: all).")] = None,
    smtp: SmtpOpt = None,
    now: NowOpt = None, db_url: DbOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Send dead letters again (same delivery id, fresh timestamp and signature)."""
    notifier = _notifier(db_url, smtp)
    try:
        results = notifier.replay(ids or [], now=parse_time(now) or datetime.now(UTC))
    except (KeyError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        emit_json([r.to_dict() for r in results])
    else:
        for r in results:
            out.print(
                f"{r.id}  {r.status}  {r.target}" + (f"  {r.last_error}" if r.last_error else "")
            )
    if any(r.status != "sent" for r in results):
        raise typer.Exit(1)
