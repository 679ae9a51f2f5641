"""Opening the case database: the shared store engine, schema brought up by Alembic."""

from __future__ import annotations

from sqlalchemy import Engine

from tollguard.store.engine import make_engine, resolve_url


def default_url() -> str:
    """``--db`` default: $TOLLGUARD_DATABASE_URL, else ./tollguard.db (SQLite)."""
    return resolve_url(None)


def open_engine(url: str | None = None, *, migrate: bool = True) -> Engine:
    """An engine for ``url``; with ``migrate`` the schema is brought to the newest
    revision first (core 0001 and cases 0002; idempotent)."""
    engine = make_engine(url)
    if migrate:
        ensure_schema(engine)
    return engine


def ensure_schema(engine: Engine) -> None:
    from tollguard.store.migrate import upgrade

    upgrade(engine)
