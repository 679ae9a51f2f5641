"""Alembic revisions: 0001_core (store), 0002_cases (cases) and later ones."""
