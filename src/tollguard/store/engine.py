"""Database engines: embedded SQLite by default, PostgreSQL for production.

``make_engine(None)`` uses ``TOLLGUARD_DATABASE_URL`` when set, else
``sqlite:///./tollguard.db``. SQLite connections run in WAL mode with foreign keys on
and a generous busy timeout, so a watcher, the API and the CLI can share one file.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

DEFAULT_URL = "sqlite:///./tollguard.db"
ENV_URL = "TOLLGUARD_DATABASE_URL"
SQLITE_BUSY_TIMEOUT_S = 60


def resolve_url(url: str | None) -> str:
    """The URL to use: the argument, else ``$TOLLGUARD_DATABASE_URL``, else the default."""
    chosen = url or os.environ.get(ENV_URL) or DEFAULT_URL
    parsed = make_url(chosen)
    if parsed.drivername in {"postgresql", "postgres"}:
        # plain postgresql:// means the psycopg (3) driver we ship, not psycopg2
        chosen = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return chosen


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """An engine for ``url`` (see module doc); keyword arguments go to ``create_engine``."""
    resolved = resolve_url(url)
    parsed = make_url(resolved)
    if parsed.drivername.startswith("sqlite"):
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_S)
        engine = create_engine(resolved, connect_args=connect_args, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            cur = dbapi_conn.cursor()
            if parsed.database not in (None, "", ":memory:"):
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=FULL")  # a commit survives power loss, not only a crash
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
            cur.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(resolved, **kwargs)
