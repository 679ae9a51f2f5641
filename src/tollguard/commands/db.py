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
