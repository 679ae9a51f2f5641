"""Tables of the case side: alerts, cases, case events, audit log, payout holds,
notifications (with dead letters) and false-positive tuning.

Registered on the shared ``metadata`` of ``tollguard.store.schema`` when it exists, so
one ``create_all``/Alembic history covers everything. Money is integer ten-thousandths
(``*_e4``) like the rest of tollguard; times are timezone-aware UTC (``UTCDateTime``
gives aware datetimes back on SQLite too).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

try:  # the storage engineer's shared metadata
    from tollguard.store.schema import metadata as _shared_metadata

    metadata: MetaData = _shared_metadata
except ImportError:  # pragma: no cover - before store/schema.py exists
    metadata = MetaData()


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: tollguard stores UTC-aware times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


alerts = Table(
    "alerts",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("case_id", String(40), nullable=False, index=True),
    Column("detector", String(80), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("account", String(200), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("subject_kind", String(20), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("detected_at", UTCDateTime(), nullable=False),
    Column("escalated_at", UTCDateTime()),
    Column("records", Integer, nullable=False),
    Column("cost_e4", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("report_only", Integer, nullable=False, default=0),
    Column("payload", Text, nullable=False),  # Alert.to_dict() as JSON
    Column("received_at", UTCDateTime(), nullable=False),
)

cases = Table(
    "cases",
    metadata,
    Column("id", String(40), primary_key=True),  # "C-000001"
    Column("key", String(300), nullable=False, index=True),  # grouping key
    Column("account", String(200), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("subject_kind", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("assignee", String(200)),
    Column("title", Text, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("cost_e4", BigInteger, nullable=False, default=0),  # sum of the alerts' largest cost
    Column("records", Integer, nullable=False, default=0),
    Column("alert_count", Integer, nullable=False, default=0),
    Column("first_record_at", UTCDateTime(), nullable=False),  # onset
    Column("first_alert_at", UTCDateTime(), nullable=False),
    Column("last_alert_at", UTCDateTime(), nullable=False),
    Column("first_notified_at", UTCDateTime()),
    Column("acknowledged_at", UTCDateTime()),
    Column("blocked_at", UTCDateTime()),
    Column("verdict_at", UTCDateTime()),
    Column("closed_at", UTCDateTime()),
    Column("escalated_at", UTCDateTime()),
    Column("reopened", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)
Index("ix_cases_status", cases.c.status)

case_events = Table(
    "case_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", String(40), nullable=False, index=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("kind", String(40), nullable=False),  # opened, alert, ack, comment, action, ...
    Column("actor", String(200), nullable=False),
    Column("text", Text, nullable=False, default=""),
    Column("data", Text, nullable=False, default="{}"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(80), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("data", Text, nullable=False),  # canonical JSON
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("prev_hash", name="uq_audit_log_prev_hash"),  # the chain cannot fork
)

payout_holds = Table(
    "payout_holds",
    metadata,
    Column("id", String(40), primary_key=True),  # "H-000001"
    Column("number", String(40), nullable=False, index=True),
    Column("period_start", Date, nullable=False),
    Column("period_end", Date, nullable=False),
    Column("amount_e4", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),  # held | released | forfeited
    Column("reason", Text, nullable=False),
    Column("case_id", String(40)),
    Column("held_at", UTCDateTime(), nullable=False),
    Column("held_by", String(200), nullable=False),
    Column("resolved_at", UTCDateTime()),
    Column("resolved_by", String(200)),
    Column("resolution", Text),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", String(40), primary_key=True),  # also the X-Tollguard-Delivery header
    Column("case_id", String(40), index=True),
    Column("event", String(40), nullable=False),  # case.opened, case.escalated, ...
    Column("channel", String(16), nullable=False),  # webhook | email
    Column("target", Text, nullable=False),  # URL or address
    Column("contact", String(200), nullable=False, default=""),
    Column("secret_env", String(200)),
    Column("status", String(16), nullable=False),  # pending | sent | dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("payload", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime()),
)
Index("ix_notifications_status", notifications.c.status)

case_tuning = Table(
    "case_tuning",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account", String(200), nullable=False),
    Column("detector", String(80), nullable=False),
    Column("option", String(80), nullable=False),  # known_countries, known_numbers, ...
    Column("value", String(200), nullable=False),
    Column("case_id", String(40), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("account", "detector", "option", "value", name="uq_case_tuning"),
)

CASE_TABLES = (alerts, cases, case_events, audit_log, payout_holds, notifications, case_tuning)
