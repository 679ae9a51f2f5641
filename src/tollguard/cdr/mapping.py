"""Which source column holds which record field, for CSV files with their own layout.

``ColumnMapping`` names, for each canonical field, the source column that holds it.
Fields left out are looked up among well-known column names (``ALIASES``: Asterisk,
FreeSWITCH, Kamailio/OpenSIPS and common billing-export names), so a file with a
header like ``calldate,src,dst,duration,billsec,disposition,accountcode,uniqueid``
needs no mapping at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# Canonical field -> what it is (used in docs and error messages).
CANONICAL_FIELDS: dict[str, str] = {
    "unique_id": "the switch's unique id of the call (record id = <source>:<unique_id>)",
    "sequence": "appended to unique_id as '<unique_id>/<sequence>' (Asterisk sequence)",
    "account": "who pays: account code, customer, trunk",
    "caller": "the A-number",
    "callee": "the B-number as dialed",
    "start": "when the call started (required)",
    "answer": "when the call was answered (empty when not answered)",
    "end": "when the call ended (or give duration)",
    "duration": "seconds from start to end (or give end)",
    "billsec": "billable seconds from answer to end",
    "setup_seconds": "seconds from start to answer (OpenSIPS setuptime)",
    "disposition": "outcome: disposition, Q.850 hangup cause or SIP code",
    "channel": "originating channel / trunk",
    "dst_channel": "terminating channel / trunk",
}

ALIASES: dict[str, tuple[str, ...]] = {
    "unique_id": ("unique_id", "uniqueid", "uuid", "call_uuid", "callid", "call_id", "cdr_id"),
    "sequence": ("sequence",),
    "account": ("account", "accountcode", "account_code", "customer", "tenant", "acct"),
    "caller": (
        "caller",
        "src",
        "caller_id_number",
        "a_number",
        "anumber",
        "calling_number",
        "ani",
        "src_user",
        "from_user",
        "from",
        "source_number",
    ),
    "callee": (
        "callee",
        "dst",
        "destination_number",
        "b_number",
        "bnumber",
        "called_number",
        "dnis",
        "dst_user",
        "to_user",
        "to",
        "destination",
    ),
    "start": (
        "start",
        "start_time",
        "start_stamp",
        "calldate",
        "call_date",
        "call_start",
        "started_at",
        "start_epoch",
        "created",
    ),
    "answer": ("answer", "answer_time", "answer_stamp", "answered_at", "answer_epoch"),
    "end": ("end", "end_time", "end_stamp", "ended_at", "hangup_time", "end_epoch"),
    "duration": ("duration", "duration_s", "duration_sec", "duration_seconds"),
    "billsec": ("billsec", "bill_sec", "billable", "billable_seconds", "billed_seconds"),
    "setup_seconds": ("setup_seconds", "setuptime", "setup_time"),
    "disposition": ("disposition", "hangup_cause", "status", "sip_code", "result"),
    "channel": ("channel", "channel_name", "src_channel", "src_ip"),
    "dst_channel": ("dst_channel", "dstchannel", "bridge_channel", "dst_ip"),
}


@dataclass(frozen=True)
class ColumnMapping:
    """Where each record field is in a CSV file.

    columns: canonical field -> source column name (see ``CANONICAL_FIELDS``).
    fields: the column names in order when the file has no header line (e.g. a
        ``cdr_custom`` template); None when the first line is a header.
    time_format: a strftime-style format for every time column, e.g.
        ``"%d/%m/%Y %H:%M:%S"``; None accepts ``YYYY-MM-DD HH:MM[:SS[.ffffff]]`` (``-``
        or ``/``, zero padding optional), ISO 8601 with an offset, and epoch seconds.
    separator: field separator; None detects one of ``, ; TAB |`` from the first line.
    """

    columns: Mapping[str, str] = field(default_factory=dict)
    fields: Sequence[str] | None = None
    time_format: str | None = None
    separator: str | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.columns) - set(CANONICAL_FIELDS))
        if unknown:
            raise ValueError(
                f"unknown record field(s) {unknown} in the column mapping; "
                f"use {sorted(CANONICAL_FIELDS)}"
            )
        if self.separator is not None and len(self.separator) != 1:
            raise ValueError(f"separator must be one character, not {self.separator!r}")

    @classmethod
    def from_strings(cls, items: Iterable[str], **kwargs: object) -> ColumnMapping:
        """Build from ``["start=calldate", "caller=from"]`` (as typed on a command line)."""
        columns: dict[str, str] = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise ValueError(
                    f"mapping {item!r} must look like FIELD=COLUMN, e.g. start=calldate"
                )
            columns[key.strip()] = value.strip()
        return cls(columns=columns, **kwargs)  # type: ignore[arg-type]

    def resolve(self, names: Sequence[str]) -> dict[str, str]:
        """Canonical field -> actual column name in ``names``, explicit first, then aliases.

        Raises ValueError when an explicitly mapped column is not in ``names``.
        """
        by_lower = {n.strip().lower(): n for n in names}
        out: dict[str, str] = {}
        for key, col in self.columns.items():
            actual = col if col in names else by_lower.get(col.strip().lower())
            if actual is None:
                raise ValueError(
                    f"mapped column {col!r} (for {key}) is not in the file's columns {list(names)}"
                )
            out[key] = actual
        taken = set(out.values())
        for key, aliases in ALIASES.items():
            if key in out:
                continue
            for alias in aliases:
                actual = by_lower.get(alias)
                if actual is not None and actual not in taken:
                    out[key] = actual
                    taken.add(actual)
                    break
        return out
