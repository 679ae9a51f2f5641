"""Core tables of the store: accounts, policies, rate decks, rated records, quarantine,
counter snapshots, ingest batches and positions.

Revision ID: 0001_core
Revises: (none)
Create Date: 2026-11-23 22:30:47.783876
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_core"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_accounts")),
    )
    op.create_table(
        "counter_snapshots",
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("answered", sa.BigInteger(), nullable=False),
        sa.Column("billsec", sa.BigInteger(), nullable=False),
        sa.Column("cost_e4", sa.BigInteger(), nullable=False),
        sa.Column("unrated", sa.BigInteger(), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account", "day", name=op.f("pk_counter_snapshots")),
    )
    op.create_table(
        "ingest_batches",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received", sa.Integer(), nullable=False),
        sa.Column("inserted", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("quarantined", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_batches")),
    )
    op.create_table(
        "ingest_positions",
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("device", sa.BigInteger(), nullable=False),
        sa.Column("inode", sa.BigInteger(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("line", sa.BigInteger(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("fp_len", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=40), nullable=True),
        sa.Column("header", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("path", name=op.f("pk_ingest_positions")),
    )
    op.create_table(
        "policies",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("toml", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("comment", sa.Text(), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policies")),
        sa.UniqueConstraint("scope", "version", name=op.f("uq_policies_scope_version")),
    )
    op.create_table(
        "quarantined_lines",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("line_key", sa.String(length=64), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(length=40), nullable=True),
        sa.Column("header", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("corrected_raw", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=20), server_default="open", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reingested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("record_id", sa.String(length=300), nullable=True),
        sa.Column("batch_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantined_lines")),
        sa.UniqueConstraint("line_key", name=op.f("uq_quarantined_lines_line_key")),
    )
    with op.batch_alter_table("quarantined_lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quarantined_lines_status"), ["status"], unique=False)

    op.create_table(
        "rate_decks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_decks")),
        sa.UniqueConstraint("name", "sha256", name=op.f("uq_rate_decks_name_sha256")),
    )
    op.create_table(
        "rated_records",
        sa.Column("record_id", sa.String(length=300), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("caller", sa.Text(), nullable=False),
        sa.Column("callee", sa.Text(), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answer", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration", sa.BigInteger(), nullable=False),
        sa.Column("billsec", sa.BigInteger(), nullable=False),
        sa.Column("disposition", sa.String(length=20), nullable=False),
        sa.Column("hangup_cause", sa.Text(), nullable=True),
        sa.Column("channel", sa.Text(), nullable=True),
        sa.Column("dst_channel", sa.Text(), nullable=True),
        sa.Column("source_file", sa.Text(), nullable=True),
        sa.Column("source_line", sa.BigInteger(), nullable=True),
        sa.Column("caller_e164", sa.String(length=32), nullable=True),
        sa.Column("callee_e164", sa.String(length=32), nullable=True),
        sa.Column("country", sa.String(length=8), nullable=True),
        sa.Column("number_type", sa.String(length=32), nullable=True),
        sa.Column("risk", sa.String(length=100), nullable=True),
        sa.Column("deck", sa.String(length=200), nullable=True),
        sa.Column("deck_row", sa.BigInteger(), nullable=True),
        sa.Column("prefix", sa.String(length=32), nullable=True),
        sa.Column("destination", sa.Text(), nullable=True),
        sa.Column("rate_per_minute", sa.String(length=40), nullable=True),
        sa.Column("billing", sa.String(length=20), nullable=True),
        sa.Column("charged_seconds", sa.BigInteger(), nullable=True),
        sa.Column("cost_e4", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("local_day", sa.Date(), nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("batch_id", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("record_id", name=op.f("pk_rated_records")),
    )
    with op.batch_alter_table("rated_records", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_rated_records_account_local_day"), ["account", "local_day"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_rated_records_start"), ["start"], unique=False)
        batch_op.create_index(batch_op.f("ix_rated_records_local_day"), ["local_day"], unique=False)

    op.create_table(
        "rate_deck_rows",
        sa.Column("deck_id", sa.Integer(), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("destination", sa.Text(), nullable=False),
        sa.Column("rate_per_minute", sa.Numeric(precision=24, scale=8), nullable=False),
        sa.Column("connect_fee", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("per_call_fee", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("first_increment", sa.Integer(), nullable=False),
        sa.Column("next_increment", sa.Integer(), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.ForeignKeyConstraint(
            ["deck_id"],
            ["rate_decks.id"],
            name=op.f("fk_rate_deck_rows_deck_id_rate_decks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("deck_id", "row", name=op.f("pk_rate_deck_rows")),
    )


def downgrade() -> None:
    op.drop_table("rate_deck_rows")
    with op.batch_alter_table("rated_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rated_records_local_day"))
        batch_op.drop_index(batch_op.f("ix_rated_records_start"))
        batch_op.drop_index(batch_op.f("ix_rated_records_account_local_day"))

    op.drop_table("rated_records")
    op.drop_table("rate_decks")
    with op.batch_alter_table("quarantined_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantined_lines_status"))

    op.drop_table("quarantined_lines")
    op.drop_table("policies")
    op.drop_table("ingest_positions")
    op.drop_table("ingest_batches")
    op.drop_table("counter_snapshots")
    op.drop_table("accounts")
