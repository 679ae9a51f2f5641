"""From a frame of text fields to ``RECORD_SCHEMA``, vectorized, with a reason per bad row.

Input: one row per physical line with ``_line``, ``_raw``, ``_reason`` (null, or why the
line was already rejected) and the canonical fields of ``mapping.CANONICAL_FIELDS`` as
strings (absent columns are treated as empty). Output: the records and the quarantined
lines. Nothing is done per row in Python except the content hash of lines without a
unique id.

Time rules
* Times without an offset are local times in the dialing context's time zone (or UTC
  with ``assume_utc``). A local time in a DST overlap takes the earlier instant; an
  end or answer time that would then fall before the start takes the later one. A
  local time that does not exist (DST gap) quarantines the line.
* Epoch values: up to 11 digits seconds (fraction allowed), 12-14 digits milliseconds,
  15-17 digits microseconds; ``0`` means "no time" (FreeSWITCH writes it for answer).
Derived values: missing end = start + duration; missing duration = end - start (or
setup + billsec); missing billsec = end - answer; missing answer = start + setup, or
end - billsec when billsec > 0, else (answered calls) start. A record that is not
answered has answer null and billsec 0, whatever the switch wrote.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import polars as pl

from tollguard.cdr.disposition import ANSWERED, DispositionMode, describe_mode, disposition_expr
from tollguard.cdr.mapping import CANONICAL_FIELDS
from tollguard.cdr.model import RECORD_SCHEMA, UTC_DATETIME
from tollguard.cdr.quarantine import QuarantinedLine

ASTERISK_TIME = "%Y-%m-%d %H:%M:%S"
FLEXIBLE = "flexible"
_FLEX_RX = (
    r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})[ T](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:[.,](\d{1,9}))?)?$"
)
_AWARE_RX = r"(?:[+-]\d{2}:?\d{2}|Z)$"


@dataclass(frozen=True)
class Conversion:
    source: str
    source_file: str
    timezone: str  # IANA name for times without offset
    time_format: str = FLEXIBLE  # FLEXIBLE or a strftime format
    disposition: DispositionMode = "any"


def _blank_to_null(expr: pl.Expr) -> pl.Expr:
    stripped = expr.str.strip_chars()
    return pl.when(stripped != "").then(stripped)


@dataclass(frozen=True)
class _Times:
    value: pl.Expr  # UTC datetime (earliest for ambiguous), null when missing/invalid
    later: pl.Expr | None  # UTC datetime with "latest" for ambiguous local times
    present: pl.Expr  # bool: something was written
    gap: pl.Expr  # bool: a local time that does not exist


def _localize(naive: pl.Expr, tz: str, ambiguous: Literal["earliest", "latest"]) -> pl.Expr:
    return naive.dt.replace_time_zone(
        tz, ambiguous=ambiguous, non_existent="null"
    ).dt.convert_time_zone("UTC")


def _epoch(text: pl.Expr) -> pl.Expr:
    seconds = pl.when(text.str.contains(r"^\d{1,11}(?:\.\d+)?$")).then(
        (text.cast(pl.Float64, strict=False) * 1_000_000).round(0)
    )
    millis = pl.when(text.str.contains(r"^\d{12,14}$")).then(
        text.cast(pl.Float64, strict=False) * 1000
    )
    micros = pl.when(text.str.contains(r"^\d{15,17}$")).then(text.cast(pl.Float64, strict=False))
    return pl.coalesce(seconds, millis, micros).cast(pl.Int64).cast(UTC_DATETIME)


def _parse_time(column: str, conv: Conversion) -> _Times:
    text = _blank_to_null(pl.col(column))
    text = pl.when(text != "0").then(text)  # FreeSWITCH/Kamailio write 0 for "never"
    tz = conv.timezone
    if conv.time_format == FLEXIBLE:
        groups = text.str.extract_groups(_FLEX_RX)

        def part(i: int, default: str = "00") -> pl.Expr:
            return groups.struct.field(str(i)).fill_null(default).str.zfill(2)

        normal = pl.concat_str(
            [
                groups.struct.field("1"),
                pl.lit("-"),
                part(2),
                pl.lit("-"),
                part(3),
                pl.lit(" "),
                part(4),
                pl.lit(":"),
                part(5),
                pl.lit(":"),
                part(6),
                pl.lit("."),
                groups.struct.field("7").fill_null("0"),
            ]
        )
        naive = normal.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us", strict=False)
        aware_text = text.str.replace(r"Z$", "+00:00")
        aware = pl.when(text.str.contains(_AWARE_RX)).then(
            pl.coalesce(
                aware_text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", time_unit="us", strict=False),
                aware_text.str.to_datetime("%Y-%m-%d %H:%M:%S%.f%z", time_unit="us", strict=False),
            ).dt.convert_time_zone("UTC")
        )
        fixed = pl.coalesce(aware, _epoch(text))
    else:
        has_offset = "%z" in conv.time_format or "%:z" in conv.time_format
        parsed = text.str.to_datetime(conv.time_format, time_unit="us", strict=False)
        if has_offset:
            fixed = parsed.dt.convert_time_zone("UTC")
            naive = pl.lit(None, pl.Datetime("us"))
        else:
            fixed = pl.lit(None, UTC_DATETIME)
            naive = parsed
    local = _localize(naive, tz, "earliest")
    later = None if tz == "UTC" else _localize(naive, tz, "latest")
    value = pl.coalesce(fixed, local)
    gap = naive.is_not_null() & local.is_null() & fixed.is_null()
    return _Times(
        value=value,
        later=pl.coalesce(fixed, later) if later is not None else None,
        present=text.is_not_null(),
        gap=gap,
    )


@dataclass(frozen=True)
class _Seconds:
    value: pl.Expr  # Int64 or null
    present: pl.Expr
    invalid: pl.Expr  # written but not a number


def _parse_seconds(column: str) -> _Seconds:
    text = _blank_to_null(pl.col(column))
    as_int = text.cast(pl.Int64, strict=False)
    as_float = text.cast(pl.Float64, strict=False)
    finite = as_float.is_finite() & (as_float.abs() < 1e12)
    value = pl.coalesce(as_int, pl.when(finite).then(as_float.ceil().cast(pl.Int64, strict=False)))
    return _Seconds(
        value=value, present=text.is_not_null(), invalid=text.is_not_null() & value.is_null()
    )


def _seconds(expr: pl.Expr) -> pl.Expr:
    return pl.duration(seconds=expr)


def _ceil_seconds(delta: pl.Expr) -> pl.Expr:
    """Whole seconds of a duration, fractions rounded up (as switches bill)."""
    return (delta.dt.total_microseconds() + 999_999) // 1_000_000


def _text(column: str) -> pl.Expr:
    return pl.col(column).fill_null("")


def _reason(condition: pl.Expr, message: pl.Expr | str) -> pl.Expr:
    msg = pl.lit(message) if isinstance(message, str) else message
    return pl.when(condition).then(msg)


def content_hashes(raw: pl.Series) -> pl.Series:
    """Stable 64-bit content hash of each raw line, as 16 hex digits."""
    return pl.Series(
        [
            hashlib.blake2b(line.encode("utf-8"), digest_size=8).hexdigest()
            for line in raw.to_list()
        ],
        dtype=pl.String,
    )


def normalize(frame: pl.DataFrame, conv: Conversion) -> tuple[pl.DataFrame, list[QuarantinedLine]]:
    missing = [c for c in CANONICAL_FIELDS if c not in frame.columns]
    if missing:
        frame = frame.with_columns([pl.lit(None, pl.String).alias(c) for c in missing])
    if "_reason" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.String).alias("_reason"))

    start = _parse_time("start", conv)
    answer = _parse_time("answer", conv)
    end = _parse_time("end", conv)
    duration = _parse_seconds("duration")
    billsec = _parse_seconds("billsec")
    setup = _parse_seconds("setup_seconds")
    cause = _blank_to_null(pl.col("disposition"))

    step1 = frame.with_columns(
        _start=start.value,
        _answer0=answer.value,
        _answer_late=answer.later if answer.later is not None else answer.value,
        _end0=end.value,
        _end_late=end.later if end.later is not None else end.value,
        _duration0=duration.value,
        _billsec0=billsec.value,
        _setup=setup.value,
        _cause=cause,
        _problem=pl.coalesce(
            pl.col("_reason"),
            _reason(~start.present, "no start time"),
            _reason(
                start.gap,
                pl.format(
                    "start time '{}' does not exist in {} (skipped by the DST change)",
                    pl.col("start"),
                    pl.lit(conv.timezone),
                ),
            ),
            _reason(
                start.value.is_null(),
                pl.format("start time '{}' is not a date/time I can read", pl.col("start")),
            ),
            _reason(
                answer.gap,
                pl.format(
                    "answer time '{}' does not exist in {} (skipped by the DST change)",
                    pl.col("answer"),
                    pl.lit(conv.timezone),
                ),
            ),
            _reason(
                answer.present & answer.value.is_null(),
                pl.format("answer time '{}' is not a date/time I can read", pl.col("answer")),
            ),
            _reason(
                end.gap,
                pl.format(
                    "end time '{}' does not exist in {} (skipped by the DST change)",
                    pl.col("end"),
                    pl.lit(conv.timezone),
                ),
            ),
            _reason(
                end.present & end.value.is_null(),
                pl.format("end time '{}' is not a date/time I can read", pl.col("end")),
            ),
            _reason(
                duration.invalid,
                pl.format("duration '{}' is not a number of seconds", pl.col("duration")),
            ),
            _reason(duration.value < 0, pl.format("negative duration {}", duration.value)),
            _reason(
                billsec.invalid,
                pl.format("billsec '{}' is not a number of seconds", pl.col("billsec")),
            ),
            _reason(billsec.value < 0, pl.format("negative billsec {}", billsec.value)),
            _reason(
                setup.invalid,
                pl.format("setup time '{}' is not a number of seconds", pl.col("setup_seconds")),
            ),
            _reason(setup.value < 0, pl.format("negative setup time {}", setup.value)),
        ),
    )
    s = pl.col("_start")
    # DST overlap: prefer the later reading of end/answer when the earlier one precedes start.
    end_v = (
        pl.when((pl.col("_end0") < s) & (pl.col("_end_late") >= s))
        .then(pl.col("_end_late"))
        .otherwise(pl.col("_end0"))
    )
    answer_v = (
        pl.when((pl.col("_answer0") < s) & (pl.col("_answer_late") >= s))
        .then(pl.col("_answer_late"))
        .otherwise(pl.col("_answer0"))
    )
    step2 = step1.with_columns(_end1=end_v, _answer1=answer_v)
    b0 = pl.col("_billsec0")
    step3 = step2.with_columns(
        _duration1=pl.coalesce(
            pl.col("_duration0"),
            _ceil_seconds(pl.col("_end1") - s),
            pl.col("_setup") + b0,
            b0,
        ),
    ).with_columns(
        _end2=pl.coalesce(pl.col("_end1"), s + _seconds(pl.col("_duration1"))),
    )
    step4 = step3.with_columns(
        _answer2=pl.coalesce(
            pl.col("_answer1"),
            pl.when(pl.col("_setup").is_not_null() & (b0.fill_null(1) > 0)).then(
                s + _seconds(pl.col("_setup"))
            ),
            pl.when(b0 > 0).then(pl.col("_end2") - _seconds(b0)),
        ),
    )
    disp = disposition_expr(
        conv.disposition, pl.col("_cause"), b0, pl.col("_answer1").is_not_null()
    )
    answered = pl.col("_disp") == ANSWERED
    # Answered, but no answer time written or derivable: answered at start.
    step5 = (
        step4.with_columns(_disp=disp)
        .with_columns(_answer3=pl.when(answered).then(pl.coalesce(pl.col("_answer2"), s)))
        .with_columns(
            _billsec1=pl.when(answered)
            .then(
                pl.coalesce(
                    b0, _ceil_seconds(pl.col("_end2") - pl.col("_answer3")), pl.lit(0, pl.Int64)
                )
            )
            .otherwise(pl.lit(0, pl.Int64))
        )
    )
    e, a = pl.col("_end2"), pl.col("_answer3")
    checked = step5.with_columns(
        _problem=pl.coalesce(
            pl.col("_problem"),
            _reason(pl.col("_duration1").is_null(), "no end time and no duration"),
            _reason(e < s, pl.format("end {} is before start {}", pl.col("end"), pl.col("start"))),
            _reason(
                pl.col("_duration1") < 0, pl.format("negative duration {}", pl.col("_duration1"))
            ),
            _reason(
                pl.col("_disp").is_null(),
                pl.format(
                    "'{}' is not {}", pl.col("disposition"), pl.lit(describe_mode(conv.disposition))
                ),
            ),
            _reason(
                (pl.col("_disp") == ANSWERED) & a.is_not_null() & (a < s),
                pl.format("answer {} is before start {}", pl.col("answer"), pl.col("start")),
            ),
            _reason(
                (pl.col("_disp") == ANSWERED) & a.is_not_null() & (a > e),
                pl.format("answer {} is after end {}", pl.col("answer"), pl.col("end")),
            ),
        )
    )
    bad = checked.filter(pl.col("_problem").is_not_null())
    quarantined = [
        QuarantinedLine(source_file=conv.source_file, line=line, reason=reason, raw=raw)
        for line, reason, raw in bad.select("_line", "_problem", "_raw").iter_rows()
    ]
    good = checked.filter(pl.col("_problem").is_null())
    uid = _blank_to_null(pl.col("unique_id"))
    seq = _blank_to_null(pl.col("sequence"))
    good = good.with_columns(
        _uid=pl.when(seq.is_not_null() & uid.is_not_null())
        .then(pl.concat_str([uid, pl.lit("/"), seq]))
        .otherwise(uid)
    )
    need_hash = good.get_column("_uid").is_null()
    if bool(need_hash.any()):
        hashed = content_hashes(good.get_column("_raw").filter(need_hash))
        full = pl.repeat(None, good.height, dtype=pl.String, eager=True).scatter(
            need_hash.arg_true(), hashed
        )
        good = good.with_columns(_uid=pl.coalesce(pl.col("_uid"), pl.lit("h:") + pl.lit(full)))
    record_id = pl.concat_str([pl.lit(conv.source + ":"), pl.col("_uid")])
    if "_record_id" in good.columns:
        record_id = pl.coalesce(_blank_to_null(pl.col("_record_id")), record_id)
    records = good.select(
        record_id=record_id,
        source=pl.lit(conv.source, pl.String),
        account=_text("account").str.strip_chars(),
        caller=_text("caller").str.strip_chars(),
        callee=_text("callee").str.strip_chars(),
        start=pl.col("_start"),
        answer=pl.col("_answer3"),
        end=pl.col("_end2"),
        duration=pl.col("_duration1").cast(pl.Int64),
        billsec=pl.col("_billsec1").cast(pl.Int64),
        disposition=pl.col("_disp"),
        hangup_cause=pl.col("_cause").fill_null(""),
        channel=_text("channel"),
        dst_channel=_text("dst_channel"),
        source_file=pl.lit(conv.source_file, pl.String),
        source_line=pl.col("_line").cast(pl.Int64),
    ).cast(RECORD_SCHEMA)  # type: ignore[arg-type]
    return records, quarantined
