"""Every store test runs twice: on a SQLite file and on a private PostgreSQL schema."""

from __future__ import annotations

from tests.dbfixtures import db_url, engine

__all__ = ["db_url", "engine"]
