"""The core tables (revision ``0001_core``), as SQLAlchemy Core metadata.

Money is stored exactly as integer ten-thousandths (``cost_e4`` BigInteger), the same
unit the rated frames carry; rates stay the decimal text of the deck (``Numeric`` for
the deck rows). Times are timezone-aware UTC (``timestamptz`` on PostgreSQL; ISO text
on SQLite, read back naive UTC by SQLAlchemy).

Other rooms add their own tables in later revisions (cases: ``0002_cases``) on the same
``metadata`` object or their own; nothing here refers to them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

TS = DateTime(timezone=True)

accounts = Table(
    "accounts",
    metadata,
    Column("account", String(200), primary_key=True),  # accountcode, trunk, PBX name
    Column("name", String(200), nullable=False, server_default=""),
    Column("created_at", TS, nullable=False),
)

# Versioned policy text. scope "*" is the global policy file; otherwise an account id.
policies = Table(
    "policies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scope", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("toml", Text, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("comment", Text, nullable=False, server_default=""),
    UniqueConstraint("scope", "version"),
)

rate_decks = Table(
    "rate_decks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("source", Text, nullable=False),  # file the deck was loaded from
    Column("sha256", String(64), nullable=False),
    Column("loaded_at", TS, nullable=False),
    UniqueConstraint("name", "sha256"),
)

rate_deck_rows = Table(
    "rate_deck_rows",
    metadata,
    Column("deck_id", Integer, ForeignKey("rate_decks.id", ondelete="CASCADE"), primary_key=True),
    Column("row", Integer, primary_key=True),  # 1-based line in the deck file
    Column("prefix", String(32), nullable=False),
    Column("destination", Text, nullable=False),
    Column("rate_per_minute", Numeric(24, 8), nullable=False),
    Column("connect_fee", Numeric(18, 4), nullable=False),
    Column("per_call_fee", Numeric(18, 4), nullable=False),
    Column("first_increment", Integer, nullable=False),
    Column("next_increment", Integer, nullable=False),
    Column("effective_from", TS, nullable=True),
    Column("currency", String(3), nullable=False),
)

# One row per committed ingest transaction.
ingest_batches = Table(
    "ingest_batches",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("source", Text, nullable=False),
    Column("committed_at", TS, nullable=False),
    Column("received", Integer, nullable=False),  # records read (valid lines)
    Column("inserted", Integer, nullable=False),
    Column("duplicates", Integer, nullable=False),
    Column("quarantined", Integer, nullable=False),
)

# Every RECORD_SCHEMA, NUMBERING_SCHEMA and RATING_SCHEMA column, in that order.
RATED_COLUMNS: list[Column[object]] = [
    Column("record_id", String(300), primary_key=True),
    Column("source", String(200), nullable=False),
    Column("account", String(200), nullable=False),
    Column("caller", Text, nullable=False),
    Column("callee", Text, nullable=False),
    Column("start", TS, nullable=False),
    Column("answer", TS, nullable=True),
    Column("end", TS, nullable=False),
    Column("duration", BigInteger, nullable=False),
    Column("billsec", BigInteger, nullable=False),
    Column("disposition", String(20), nullable=False),
    Column("hangup_cause", Text, nullable=True),
    Column("channel", Text, nullable=True),
    Column("dst_channel", Text, nullable=True),
    Column("source_file", Text, nullable=True),
    Column("source_line", BigInteger, nullable=True),
    Column("caller_e164", String(32), nullable=True),
    Column("callee_e164", String(32), nullable=True),
    Column("country", String(8), nullable=True),
    Column("number_type", String(32), nullable=True),
    Column("risk", String(100), nullable=True),
    Column("deck", String(200), nullable=True),
    Column("deck_row", BigInteger, nullable=True),
    Column("prefix", String(32), nullable=True),
    Column("destination", Text, nullable=True),
    Column("rate_per_minute", String(40), nullable=True),  # decimal text as in the deck
    Column("billing", String(20), nullable=True),
    Column("charged_seconds", BigInteger, nullable=True),
    Column("cost_e4", BigInteger, nullable=True),  # exact: 1/10000 currency unit; null unrated
    Column("currency", String(3), nullable=True),
    # added at ingest
    Column("local_day", Date, nullable=False),  # call start's calendar day, account time zone
    Column("ingested_at", TS, nullable=False),
    Column("batch_id", String(36), nullable=False),
]

rated_records = Table(
    "rated_records",
    metadata,
    *RATED_COLUMNS,
    Index(None, "start"),
    Index(None, "account", "local_day"),
    Index(None, "local_day"),
)

# Lines that could not be read. ``line_key`` makes re-delivery of the same bad line
# (NATS redelivery, a retried HTTP batch) a no-op: sha256 of source, position and raw.
quarantined_lines = Table(
    "quarantined_lines",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("line_key", String(64), nullable=False, unique=True),
    Column("source", Text, nullable=False),  # file path, "nats:<stream>", "http"
    Column("position", BigInteger, nullable=False),  # 1-based line (file) or stream sequence
    Column("format", String(40), nullable=True),  # format the line was read as
    Column("header", Text, nullable=True),  # header line of header-based formats
    Column("reason", Text, nullable=False),
    Column("raw", Text, nullable=False),
    Column("corrected_raw", Text, nullable=True),  # text used by the last retry, if changed
    Column("status", String(20), nullable=False, server_default="open"),  # open | reingested
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("created_at", TS, nullable=False),
    Column("reingested_at", TS, nullable=True),
    Column("record_id", String(300), nullable=True),  # the record made from it on retry
    Column("batch_id", String(36), nullable=True),
    Index(None, "status"),
)

# Daily counters kept after the rated records are purged (one row per account and day).
counter_snapshots = Table(
    "counter_snapshots",
    metadata,
    Column("account", String(200), primary_key=True),
    Column("day", Date, primary_key=True),  # local day in the account's time zone
    Column("calls", BigInteger, nullable=False),
    Column("answered", BigInteger, nullable=False),
    Column("billsec", BigInteger, nullable=False),
    Column("cost_e4", BigInteger, nullable=False),
    Column("unrated", BigInteger, nullable=False),
    Column("taken_at", TS, nullable=False),
)

# Where a watched file was read up to, committed with the records it produced.
ingest_positions = Table(
    "ingest_positions",
    metadata,
    Column("path", Text, primary_key=True),  # the watched path as given (absolute)
    Column("device", BigInteger, nullable=False),
    Column("inode", BigInteger, nullable=False),
    Column("offset", BigInteger, nullable=False),  # bytes consumed (always at a line end)
    Column("line", BigInteger, nullable=False),  # physical lines consumed
    Column("fingerprint", String(64), nullable=False),  # sha256 of the first fp_len bytes
    Column("fp_len", Integer, nullable=False),
    Column("format", String(40), nullable=True),  # format detected at the file's start
    Column("header", Text, nullable=True),  # header line, for header-based formats
    Column("updated_at", TS, nullable=False),
)

CORE_TABLES = (
    accounts,
    policies,
    rate_decks,
    rate_deck_rows,
    ingest_batches,
    rated_records,
    quarantined_lines,
    counter_snapshots,
    ingest_positions,
)
