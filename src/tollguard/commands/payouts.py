"""`tollguard payouts ...`: hold, release and forfeit the payout of premium-rate numbers."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tollguard.cases.clisupport import (
    ActorOpt,
    DbOpt,
    JsonOpt,
    NowOpt,
    actor_name,
    db,
    emit_json,
    parse_day,
    parse_time,
)
from tollguard.cases.payouts import Hold, PayoutError, PayoutLedger, amount_for_number
from tollguard.clikit import fail

app = typer.Typer(help="Payout holds on numbers under suspicion.", no_args_is_help=True)
out = Console()
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (required, kept in the ledger).")]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="payouts")


def _show(hold: Hold, as_json: bool) -> None:
    if as_json:
        emit_json(hold.to_dict())
    else:
        out.print(
            f"{hold.id}  {hold.status}  {hold.number}  {hold.period_start}..{hold.period_end}"
            f"  {hold.currency} {hold.amount}  ({hold.resolution or hold.reason})"
        )


@app.command("hold")
def hold(
    number: Annotated[str, typer.Argument(help="The number (E.164), e.g. +319091234567.")],
    period_from: Annotated[str, typer.Option("--from", help="First day (YYYY-MM-DD).")],
    period_to: Annotated[str, typer.Option("--to", help="Last day (YYYY-MM-DD).")],
    reason: ReasonOpt,
    amount: Annotated[str | None, typer.Option(help="Amount to hold.")] = None,
    records: Annotated[
        Path | None, typer.Option(help="Rated records: hold the exact sum of calls to NUMBER.")
    ] = None,
    currency: Annotated[str, typer.Option(help="Currency of --amount.")] = "EUR",
    case: Annotated[str | None, typer.Option(help="Case id this hold belongs to.")] = None,
    actor: ActorOpt = None, now: NowOpt = None, db_url: DbOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Hold the payout of NUMBER for a period."""
    start, end = parse_day(period_from, "--from"), parse_day(period_to, "--to")
    if amount is not None:
        try:
            total = Decimal(amount)
        except InvalidOperation:
            fail(f"--amount {amount!r} is not a number")
    elif records is not None:
        from tollguard.cases.records import load_rated_file

        try:
            total, calls, currency = amount_for_number(load_rated_file(records), number, start, end)
        except (ValueError, OSError) as exc:
            fail(str(exc))
        if not as_json:
            out.print(f"{calls} calls to {number} from {start} to {end}: {currency} {total}")
    else:
        fail("give --amount or --records FILE", "the rated records give the exact sum")
    try:
        h = PayoutLedger(db(db_url)).hold(
            number, start, end, total, currency=currency, reason=reason, actor=actor_name(actor),
            case_id=case, now=parse_time(now),
        )  # fmt: skip
    except PayoutError as exc:
        fail(str(exc), exc.hint or None)
    _show(h, as_json)


@app.command("release")
def release(
    hold_id: Annotated[str, typer.Argument(help="Hold id (H-...).")], reason: ReasonOpt,
    actor: ActorOpt = None, now: NowOpt = None, db_url: DbOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Release a held payout (the traffic was genuine)."""
    try:
        h = PayoutLedger(db(db_url)).release(
            hold_id, reason, actor=actor_name(actor), now=parse_time(now)
        )
    except PayoutError as exc:
        fail(str(exc), exc.hint or None)
    _show(h, as_json)


@app.command("forfeit")
def forfeit(
    hold_id: Annotated[str, typer.Argument(help="Hold id (H-...).")], reason: ReasonOpt,
    actor: ActorOpt = None, now: NowOpt = None, db_url: DbOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Forfeit a held payout (misuse established)."""
    try:
        h = PayoutLedger(db(db_url)).forfeit(
            hold_id, reason, actor=actor_name(actor), now=parse_time(now)
        )
    except PayoutError as exc:
        fail(str(exc), exc.hint or None)
    _show(h, as_json)


@app.command("list")
def list_holds(
    number: Annotated[str | None, typer.Option(help="Only this number.")] = None,
    status: Annotated[str | None, typer.Option(help="held, released or forfeited.")] = None,
    db_url: DbOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Every hold, and the totals held, released and forfeited per number."""
    ledger = PayoutLedger(db(db_url))
    try:
        holds = ledger.holds(number=number, status=status)
    except PayoutError as exc:
        fail(str(exc), exc.hint or None)
    report = ledger.report(number=number)
    if as_json:
        emit_json({"holds": [h.to_dict() for h in holds], "totals": report})
        return
    table = Table("hold", "number", "period", "amount", "status", "reason / resolution", "case")
    for h in holds:
        table.add_row(h.id, h.number, f"{h.period_start}..{h.period_end}",
                      f"{h.currency} {h.amount}", h.status, h.resolution or h.reason,
                      h.case_id or "")  # fmt: skip
    out.print(table)
    totals = Table("number", "currency", "held", "released", "forfeited")
    for r in report:
        totals.add_row(r["number"], r["currency"], r["held"], r["released"], r["forfeited"])
    out.print(totals)
