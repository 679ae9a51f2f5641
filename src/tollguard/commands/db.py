"""`tollguard db ...`: create/upgrade the store schema and purge old records."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from tollguard.clikit import fail

console = Console(stderr=True)

db_app = typer.Typer(
    help="The store: SQLite (default ./tollguard.db) or PostgreSQL ($TOLLGUARD_DATABASE_URL).",
    no_args_is_help=True,
)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        "--db",
        help="Database URL; default $TOLLGUARD_DATABASE_URL or sqlite:///./tollguard.db.",
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def upgrade_cmd(
    url: UrlOption = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Create or upgrade every table (runs the Alembic migrations)."""
    from sqlalchemy.exc import SQLAlchemyError

    from tollguard.store.engine import resolve_url
    from tollguard.store.migrate import upgrade

    try:
        upgrade(url, revision)
    except SQLAlchemyError as exc:
        fail(f"cannot upgrade {resolve_url(url)}: {exc}", "is the database reachable?")
    console.print(f"[green]database at revision {revision}[/green]: {_safe(resolve_url(url))}")


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@db_app.command("purge")
def purge_cmd(
    older_than_days: Annotated[
        int, typer.Option("--older-than-days", help="Delete rated records older than N days.")
    ],
    url: UrlOption = None,
) -> None:
    """Delete old rated records (by call day); their daily counters are kept as snapshots.

    Alerts, cases and evidence are not touched."""
    from tollguard.store.counters import purge_older_than
    from tollguard.store.engine import make_engine

    if older_than_days < 0:
        fail("--older-than-days must be 0 or more")
    engine = make_engine(url)
    result = purge_older_than(engine, older_than_days)
    engine.dispose()
    console.print(
        f"deleted {result.records_deleted:,} rated records from before {result.cutoff_day}; "
        f"{result.days_snapshotted:,} account-days kept in counter_snapshots"
    )


@db_app.command("counters")
def counters_cmd(
    url: UrlOption = None,
    account: Annotated[str | None, typer.Option(help="Only this account.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines output.")] = False,
) -> None:
    """Daily calls and cost per account (local day), from the stored records."""
    import sys

    import orjson
    from rich.table import Table

    from tollguard.store.counters import daily_counters
    from tollguard.store.engine import make_engine

    engine = make_engine(url)
    rows = daily_counters(engine, account)
    engine.dispose()
    if as_json:
        for r in rows:
            line = {
                "account": r.account, "day": r.day.isoformat(), "calls": r.calls,
                "answered": r.answered, "billsec": r.billsec, "cost": str(r.cost),
                "unrated": r.unrated,
            }  # fmt: skip
            sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
        return
    table = Table(title="Daily counters", title_justify="left")
    for col in ("account", "day", "calls", "answered", "minutes", "cost", "unrated"):
        table.add_column(col, justify="left" if col in {"account", "day"} else "right")
    for r in rows:
        table.add_row(
            r.account, r.day.isoformat(), f"{r.calls:,}", f"{r.answered:,}",
            f"{r.billsec / 60:,.1f}", str(r.cost), f"{r.unrated:,}",
        )  # fmt: skip
    Console().print(table)
