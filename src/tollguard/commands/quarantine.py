"""`tollguard quarantine list|retry`: the lines that could not be read, and their second chance."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from tollguard.clikit import fail, load_policy_with_overrides

console = Console(stderr=True)
q_app = typer.Typer(
    help="Quarantined CDR lines: list them, re-ingest them after a fix.", no_args_is_help=True
)

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL; default $TOLLGUARD_DATABASE_URL or ./tollguard.db."),
]


def register(app: typer.Typer) -> None:
    app.add_typer(q_app, name="quarantine")


@q_app.command("list")
def list_cmd(
    db: DbOption = None,
    status: Annotated[str, typer.Option(help="open, reingested or all.")] = "open",
    limit: Annotated[int | None, typer.Option(help="At most this many lines.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Show quarantined lines with source, position, reason and raw text."""
    from tollguard.ingest.retry import list_quarantined
    from tollguard.store.engine import make_engine
    from tollguard.store.migrate import ensure_schema

    engine = make_engine(db)
    ensure_schema(engine)
    rows = list_quarantined(engine, None if status == "all" else status, limit)
    engine.dispose()
    if as_json:
        for row in rows:
            sys.stdout.buffer.write(orjson.dumps(row.to_dict()) + b"\n")
        return
    table = Table(title=f"Quarantined lines ({status}): {len(rows)}", title_justify="left")
    for col in ("id", "source", "line", "status", "tries", "reason", "raw"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            str(r.id), r.source, str(r.position), r.status, str(r.attempts), r.reason,
            (r.corrected_raw or r.raw)[:120],
        )  # fmt: skip
    Console().print(table)


@q_app.command("retry")
def retry_cmd(
    ids: Annotated[list[int] | None, typer.Argument(help="Quarantine ids (see `list`).")] = None,
    all_open: Annotated[bool, typer.Option("--all", help="Every open line.")] = False,
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="Read as this format.")] = None,
    line: Annotated[
        str | None, typer.Option("--line", help="Corrected text for the (single) line.")
    ] = None,
    policy: Annotated[Path | None, typer.Option(help="Policy TOML (context, decks).")] = None,
    rates: Annotated[str | None, typer.Option(help="Rate deck CSV.")] = None,
    utc: Annotated[bool, typer.Option("--utc", help="CDR times are UTC, not local.")] = False,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print outcomes as JSON.")] = False,
) -> None:
    """Re-ingest quarantined lines after a fix: a corrected --line or a forced --format."""
    if not ids and not all_open:
        fail("give quarantine ids or --all", "tollguard quarantine list")
    if line is not None and (all_open or not ids or len(ids) != 1):
        fail("--line corrects one line: give exactly one id")
    from tollguard.ingest.core import Ingestor
    from tollguard.ingest.retry import retry_quarantined
    from tollguard.store.engine import make_engine
    from tollguard.store.migrate import ensure_schema

    pol = load_policy_with_overrides(policy)
    engine = make_engine(db)
    ensure_schema(engine)
    try:
        result = retry_quarantined(
            Ingestor(engine, pol, rates=rates, assume_utc=utc),
            None if all_open else ids,
            fmt=fmt,
            corrected=line,
        )
    except KeyError as exc:
        fail(str(exc.args[0]), "tollguard quarantine list --status all")
    finally:
        engine.dispose()
    if as_json:
        out = [vars(o) for o in result.outcomes]
        sys.stdout.buffer.write(orjson.dumps(out) + b"\n")
    else:
        for o in result.outcomes:
            if o.ok:
                console.print(f"[green]#{o.id} stored as {o.record_id}[/green]")
            else:
                console.print(f"[red]#{o.id} still unreadable:[/red] {o.reason}")
        console.print(f"{result.reingested} re-ingested, {result.still_bad} still quarantined")
    if result.still_bad:
        raise typer.Exit(1)
