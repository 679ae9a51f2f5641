"""Alembic migrations of the tollguard store (run with ``tollguard db upgrade``)."""
