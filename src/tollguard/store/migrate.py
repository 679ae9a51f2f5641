"""Run the store's Alembic migrations from code: no alembic.ini on disk needed."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from tollguard.store.engine import make_engine, resolve_url

MIGRATIONS = Path(__file__).parent / "migrations"
CORE_REVISION = "0001_core"


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(MIGRATIONS / "versions"))
    # ConfigParser interpolation: a literal % in a password must be doubled
    cfg.set_main_option("sqlalchemy.url", resolve_url(url).replace("%", "%%"))
    return cfg


def _with_engine(url: str | Engine | None, revision: str, *, down: bool = False) -> None:
    engine = url if isinstance(url, Engine) else make_engine(url)
    cfg = alembic_config(None if isinstance(url, Engine) else url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            if down:
                command.downgrade(cfg, revision)
            else:
                command.upgrade(cfg, revision)
    finally:
        if not isinstance(url, Engine):
            engine.dispose()


def upgrade(url: str | Engine | None = None, revision: str = "head") -> None:
    """Bring the database at ``url`` (or an engine) up to ``revision`` (default: newest)."""
    _with_engine(url, revision)


def downgrade(url: str | Engine | None, revision: str) -> None:
    _with_engine(url, revision, down=True)


def current_revisions(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def head_revisions() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def ensure_schema(engine: Engine) -> None:
    """Create the tables on a fresh database; refuse one that is behind (upgrade first)."""
    current = current_revisions(engine)
    if not current:
        upgrade(engine)
        return
    if CORE_REVISION not in current and not _descends_from_core(current):
        raise RuntimeError(f"database is at {current}, not a tollguard store")


def _descends_from_core(current: set[str]) -> bool:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    for rev in current:
        for ancestor in script.iterate_revisions(rev, "base"):
            if ancestor.revision == CORE_REVISION:
                return True
    return False
