"""`tollguard audit ...`: the tamper-evident log of alerts, notifications and actions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tollguard.cases import audit as audit_log
from tollguard.cases.clisupport import DbOpt, JsonOpt, db, emit_json
from tollguard.clikit import fail

app = typer.Typer(help="The audit log (hash-chained): list, verify, export.", no_args_is_help=True)
out = Console()


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="audit")


@app.command("verify")
def verify(
    file: Annotated[
        Path | None, typer.Option("--file", help="Verify an exported log (JSON Lines) instead.")
    ] = None,
    db_url: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the hash chain. Exit 1 and name the first bad entry when it is broken."""
    if file is not None:
        if not file.is_file():
            fail(f"no such file: {file}")
        result = audit_log.verify_file(file)
    else:
        with db(db_url).connect() as conn:
            result = audit_log.verify_db(conn)
    if as_json:
        emit_json({"ok": result.ok, "checked": result.checked, "first_bad": result.first_bad,
                   "reason": result.reason, "head": result.head})  # fmt: skip
    elif result.ok:
        out.print(f"[green]{result.message()}[/green]")
    else:
        Console(stderr=True).print(f"[bold red]{result.message()}[/bold red]")
    if not result.ok:
        raise typer.Exit(1)


@app.command("list")
def list_entries(
    since: Annotated[int, typer.Option(help="Entries after this sequence number.")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    db_url: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show entries in order."""
    with db(db_url).connect() as conn:
        entries = list(audit_log.read(conn, since=since, limit=limit))
    if as_json:
        emit_json([e.to_dict() for e in entries])
        return
    for e in entries:
        out.print(f"{e.seq:>6}  {e.at.isoformat()}  {e.actor:<14} {e.action:<20} {e.subject}  "
                  f"[dim]{e.hash[:12]}[/dim]", highlight=False)  # fmt: skip


@app.command("export")
def export(
    out_file: Annotated[Path, typer.Option("--out", help="JSON Lines file to write.")],
    db_url: DbOpt = None,
) -> None:
    """Write the whole log as JSON Lines (verifiable with `audit verify --file`)."""
    with db(db_url).connect() as conn:
        n = audit_log.export_jsonl(conn, out_file)
    out.print(f"{n} entries written to {out_file}")
