"""From a frame of text fields to ``RECORD_SCHEMA``, vectorized, with a reason per bad row.

Input: one row per physical line with ``_line``, ``_reason`` (null, or why the
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
from typing import Literal, Protocol

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


def _localize(naive: pl.Expr, tz: str, ambiguous: Literal["earliest", "latest"]) -> pl.Expr:
    return naive.dt.replace_time_zone(
        tz, ambiguous=ambiguous, non_existent="null"
    ).dt.convert_time_zone("UTC")


_HOUR_US = 3_600_000_000


def _hour_offsets(first: int, count: int, tz: str) -> pl.Series:
    """UTC offset (microseconds) of each local hour ``first ..`` (hours since the epoch).

    Null for an hour whose first and last microsecond do not both read the same way,
    earliest and latest: a DST change, a gap or an overlap falls in it.
    """
    start = pl.int_range(first, first + count, dtype=pl.Int64, eager=True) * _HOUR_US
    hours = pl.DataFrame({"s": start.cast(pl.Datetime("us")), "e": (start + _HOUR_US - 1)})
    hours = hours.with_columns(pl.col("e").cast(pl.Datetime("us")))
    offsets = [
        pl.col(edge).to_physical() - _localize(pl.col(edge), tz, ambiguous).to_physical()  # type: ignore[arg-type]
        for edge in ("s", "e")
        for ambiguous in ("earliest", "latest")
    ]
    same = pl.all_horizontal([o == offsets[0] for o in offsets[1:]])
    return hours.select(pl.when(same).then(offsets[0])).to_series()


def local_to_utc(naive: pl.Series, tz: str) -> pl.Series:
    """``_localize(naive, tz, "earliest")``, with the offset looked up per local hour.

    Times in an hour with a DST change (or any other change of offset) are converted
    one by one, as are all times when they spread over more hours than there are times.
    """
    if tz == "UTC" or naive.len() == 0:
        return naive.dt.replace_time_zone("UTC")

    def exact(values: pl.Series) -> pl.Series:
        return values.to_frame().select(_localize(pl.first(), tz, "earliest")).to_series()

    local = naive.to_physical()
    hours = local // _HOUR_US
    low, high = hours.min(), hours.max()
    if not isinstance(low, int) or not isinstance(high, int):
        return exact(naive)  # no times at all
    first, last = low, high
    if last - first >= naive.len():
        return exact(naive)
    offset = _hour_offsets(first, last - first + 1, tz).gather(hours - first)
    utc = (local - offset).cast(UTC_DATETIME).rename(naive.name)
    odd = offset.is_null() & naive.is_not_null()
    if odd.any():
        utc = utc.scatter(odd.arg_true(), exact(naive.filter(odd)))
    return utc


def _epoch(text: pl.Expr) -> pl.Expr:
    number = text.cast(pl.Float64, strict=False)
    seconds = pl.when(text.str.contains(r"^\d{1,11}(?:\.\d+)?$")).then(
        (number * 1_000_000).round(0)
    )
    millis = pl.when(text.str.contains(r"^\d{12,14}$")).then(number * 1000)
    micros = pl.when(text.str.contains(r"^\d{15,17}$")).then(number)
    return pl.coalesce(seconds, millis, micros).cast(pl.Int64).cast(UTC_DATETIME)


def _naive_and_fixed(text: pl.Expr, time_format: str) -> tuple[pl.Expr, pl.Expr]:
    """(naive local datetime, UTC datetime from an offset or epoch) parsed from ``text``."""
    if time_format == FLEXIBLE:
        groups = text.str.extract_groups(_FLEX_RX)

        def part(i: int, default: str = "00") -> pl.Expr:
            return groups.struct.field(str(i)).fill_null(default).str.zfill(2)

        normal = pl.concat_str(
            [
                groups.struct.field("1"), pl.lit("-"), part(2), pl.lit("-"), part(3), pl.lit(" "),
                part(4), pl.lit(":"), part(5), pl.lit(":"), part(6), pl.lit("."),
                groups.struct.field("7").fill_null("0"),
            ]
        )  # fmt: skip
        naive = normal.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us", strict=False)
        aware_text = text.str.replace(r"Z$", "+00:00")
        aware = pl.when(text.str.contains(_AWARE_RX)).then(
            pl.coalesce(
                aware_text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", time_unit="us", strict=False),
                aware_text.str.to_datetime("%Y-%m-%d %H:%M:%S%.f%z", time_unit="us", strict=False),
            ).dt.convert_time_zone("UTC")
        )
        return naive, pl.coalesce(aware, _epoch(text))
    parsed = text.str.to_datetime(time_format, time_unit="us", strict=False)
    if "%z" in time_format or "%:z" in time_format:
        return pl.lit(None, pl.Datetime("us")), parsed.dt.convert_time_zone("UTC")
    return parsed, pl.lit(None, UTC_DATETIME)


def _parse_seconds(text: pl.Expr) -> pl.Expr:
    """Whole seconds (fractions rounded up) or null."""
    as_int = text.cast(pl.Int64, strict=False)
    as_float = text.cast(pl.Float64, strict=False)
    finite = as_float.is_finite() & (as_float.abs() < 1e12)
    return pl.coalesce(as_int, pl.when(finite).then(as_float.ceil().cast(pl.Int64, strict=False)))


def _seconds(expr: pl.Expr) -> pl.Expr:
    return pl.duration(seconds=expr)


def _ceil_seconds(delta: pl.Expr) -> pl.Expr:
    """Whole seconds of a duration, fractions rounded up (as switches bill)."""
    return (delta.dt.total_microseconds() + 999_999) // 1_000_000


def _text(column: str) -> pl.Expr:
    return pl.col(column).fill_null("")


class RawSource(Protocol):
    """The original text of physical lines, fetched only for the lines that need it."""

    def lines(self, numbers: list[int]) -> list[str]: ...


def content_hash(line: str) -> str:
    """Stable 64-bit content hash of a raw line, as 16 hex digits."""
    return hashlib.blake2b(line.encode("utf-8"), digest_size=8).hexdigest()


TIMES = ("start", "answer", "end")
SECONDS = {"duration": "_duration0", "billsec": "_billsec0", "setup_seconds": "_setup"}


def _checks(conv: Conversion) -> list[tuple[pl.Expr, pl.Expr]]:
    """(condition, message) pairs in priority order; the first true one is the reason."""
    tz = pl.lit(conv.timezone)
    out: list[tuple[pl.Expr, pl.Expr]] = [
        (pl.col("_reason").is_not_null(), pl.col("_reason")),
        (~pl.col("_start_p"), pl.lit("no start time")),
    ]
    for c in TIMES:
        p, n, f, v = (pl.col(f"_{c}_{k}") for k in "pnfv")
        gap = n.is_not_null() & f.is_null() & v.is_null()
        out.append(
            (gap, pl.format("{} time '{}' does not exist in {} (skipped by the DST change)",
                            pl.lit(c), pl.col(c), tz))
        )  # fmt: skip
        out.append(
            (p & v.is_null(),
             pl.format("{} time '{}' is not a date/time I can read", pl.lit(c), pl.col(c)))
        )  # fmt: skip
    labels = {"duration": "duration", "billsec": "billsec", "setup_seconds": "setup time"}
    for c, parsed in SECONDS.items():
        present, value = pl.col(f"_{c}_p"), pl.col(parsed)
        out.append(
            (present & value.is_null(),
             pl.format("{} '{}' is not a number of seconds", pl.lit(labels[c]), pl.col(c)))
        )  # fmt: skip
        out.append((value < 0, pl.format("negative {} {}", pl.lit(labels[c]), value)))
    s, e, a, disp = pl.col("_start_v"), pl.col("_end2"), pl.col("_answer3"), pl.col("_disp")

    def shown(column: str, value: pl.Expr) -> pl.Expr:
        return pl.coalesce(pl.col(column), value.dt.to_string("%Y-%m-%d %H:%M:%S UTC"))

    what = pl.lit(describe_mode(conv.disposition))
    out += [
        (pl.col("_duration1").is_null(), pl.lit("no end time and no duration")),
        (e < s, pl.format("end {} is before start {}", shown("end", e), pl.col("start"))),
        (pl.col("_duration1") < 0, pl.format("negative duration {}", pl.col("_duration1"))),
        (disp.is_null(),
         pl.format("'{}' is not {}", pl.col("disposition").fill_null(""), what)),
        (a.is_not_null() & (a < s),
         pl.format("answer {} is before start {}", shown("answer", a), pl.col("start"))),
        (a.is_not_null() & (a > e),
         pl.format("answer {} is after end {}", shown("answer", a), shown("end", e))),
    ]  # fmt: skip
    return out


def _later_readings(frame: pl.DataFrame, conv: Conversion) -> pl.DataFrame:
    """DST overlap: an end/answer that reads before start takes its later reading."""
    if conv.timezone == "UTC":
        return frame
    s = pl.col("_start_v")
    need = (pl.col("_end_v") < s) | (pl.col("_answer_v") < s)
    mask = frame.select(need.fill_null(False)).to_series()
    if not mask.any():
        return frame
    fixes = []
    for c in ("end", "answer"):
        v, later = (
            pl.col(f"_{c}_v"),
            pl.coalesce(pl.col(f"_{c}_f"), _localize(pl.col(f"_{c}_n"), conv.timezone, "latest")),
        )
        fixes.append(pl.when((v < s) & (later >= s)).then(later).otherwise(v).alias(f"_{c}_v"))
    fixed = frame.filter(mask).with_columns(fixes)
    idx = mask.arg_true()
    return frame.with_columns(
        [
            frame.get_column(f"_{c}_v").scatter(idx, fixed.get_column(f"_{c}_v"))
            for c in ("end", "answer")
        ]
    )


def _time_text(column: str) -> pl.Expr:
    text = _blank_to_null(pl.col(column))
    return pl.when(text != "0").then(text)  # FreeSWITCH/Kamailio write 0 for "never"


def _fixed_format(conv: Conversion) -> str | None:
    """The strftime format when times are naive and in one known format."""
    fmt = conv.time_format
    if fmt == FLEXIBLE or "%z" in fmt or "%:z" in fmt:
        return None
    return fmt


def _parse_fields(frame: pl.DataFrame, conv: Conversion) -> pl.DataFrame:
    """Add, per time column, ``_{c}_p`` (a time was written), ``_{c}_n`` (naive local)
    and ``_{c}_f`` (UTC, from an offset or epoch); per seconds column ``_{c}_p`` and the
    whole seconds (``SECONDS``).

    The text is first read as written (no stripping, no fallbacks), which is all a
    well-formed file needs; a column where some value does not read that way, other
    than an empty value or ``0`` for a time, is read the general way instead, with
    the same results.
    """
    fmt = _fixed_format(conv)
    quick: dict[str, pl.Expr] = {}
    if fmt is not None:
        for c in TIMES:
            quick[f"_{c}_n"] = pl.col(c).str.to_datetime(
                fmt, time_unit="us", strict=False, cache=False
            )
    for c, parsed in SECONDS.items():
        quick[parsed] = pl.col(c).cast(pl.Int64, strict=False)
    tried = frame.with_columns(**quick)
    absent = {c: ["", "0"] if c in TIMES else [""] for c in (*TIMES, *SECONDS)}
    misses = tried.select(
        **{
            c: (pl.col(name).is_null() & ~pl.col(c).is_in(absent[c]).fill_null(True)).any()
            for c, name in [(c, f"_{c}_n") for c in TIMES if fmt is not None]
            + list(SECONDS.items())
        }
    ).row(0, named=True)
    exprs: list[pl.Expr] = []
    for c in TIMES:
        if fmt is not None and not misses[c]:
            exprs += [
                pl.col(f"_{c}_n").is_not_null().alias(f"_{c}_p"),
                pl.lit(None, UTC_DATETIME).alias(f"_{c}_f"),
            ]
            continue
        text = _time_text(c)
        naive, fixed = _naive_and_fixed(text, conv.time_format)
        exprs += [
            text.is_not_null().alias(f"_{c}_p"),
            naive.alias(f"_{c}_n"),
            fixed.alias(f"_{c}_f"),
        ]
    for c, parsed in SECONDS.items():
        if not misses[c]:
            exprs.append(pl.col(parsed).is_not_null().alias(f"_{c}_p"))
            continue
        text = _blank_to_null(pl.col(c))
        exprs += [text.is_not_null().alias(f"_{c}_p"), _parse_seconds(text).alias(parsed)]
    return tried.with_columns(exprs)


def normalize(
    frame: pl.DataFrame, conv: Conversion, raw: RawSource
) -> tuple[pl.DataFrame, list[QuarantinedLine]]:
    """Records (RECORD_SCHEMA) and quarantined lines from canonical text fields."""
    missing = [c for c in CANONICAL_FIELDS if c not in frame.columns]
    if "_reason" not in frame.columns:
        missing.append("_reason")
    if missing:
        frame = frame.with_columns([pl.lit(None, pl.String).alias(c) for c in missing])

    work = _parse_fields(frame, conv)
    local = [
        local_to_utc(work.get_column(f"_{c}_n"), conv.timezone).alias(f"_{c}_v") for c in TIMES
    ]
    work = work.with_columns(local).with_columns(
        _blank_to_null(pl.col("disposition")).alias("_cause"),
        *[pl.coalesce(pl.col(f"_{c}_f"), pl.col(f"_{c}_v")).alias(f"_{c}_v") for c in TIMES],
    )
    work = _later_readings(work, conv)

    s, b0 = pl.col("_start_v"), pl.col("_billsec0")
    answered = pl.col("_disp") == ANSWERED
    checks = _checks(conv)
    work = (
        work.lazy()
        .with_columns(
            _duration1=pl.coalesce(
                pl.col("_duration0"), _ceil_seconds(pl.col("_end_v") - s), pl.col("_setup") + b0, b0
            )
        )
        .with_columns(_end2=pl.coalesce(pl.col("_end_v"), s + _seconds(pl.col("_duration1"))))
        .with_columns(
            _answer2=pl.coalesce(
                pl.col("_answer_v"),
                pl.when(pl.col("_setup").is_not_null() & (b0.fill_null(1) > 0)).then(
                    s + _seconds(pl.col("_setup"))
                ),
                pl.when(b0 > 0).then(pl.max_horizontal(s, pl.col("_end2") - _seconds(b0))),
            ),
            _disp=disposition_expr(
                conv.disposition, pl.col("_cause"), b0, pl.col("_answer_v").is_not_null()
            ),
        )
        # Answered, but no answer time written or derivable: answered at start.
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
        .with_columns(_bad=pl.any_horizontal([cond.fill_null(False) for cond, _ in checks]))
        .collect()
    )
    quarantined: list[QuarantinedLine] = []
    good = work.lazy()
    if work.get_column("_bad").any():
        bad = work.filter(pl.col("_bad")).select(
            "_line",
            pl.coalesce([pl.when(cond).then(msg) for cond, msg in checks]).alias("_problem"),
        )
        numbers = bad.get_column("_line").to_list()
        quarantined = [
            QuarantinedLine(conv.source_file, line, reason or "unreadable line", text)
            for line, reason, text in zip(
                numbers, bad.get_column("_problem").to_list(), raw.lines(numbers), strict=True
            )
        ]
        good = good.filter(~pl.col("_bad"))
    uid = _blank_to_null(pl.col("unique_id"))
    seq = _blank_to_null(pl.col("sequence"))
    uid = (
        pl.when(seq.is_not_null() & uid.is_not_null())
        .then(pl.concat_str([uid, pl.lit("/"), seq]))
        .otherwise(uid)
    )
    prefix = conv.source + ":"
    record_id = pl.concat_str([pl.lit(prefix), uid])
    if "_record_id" in work.columns:
        record_id = pl.coalesce(_blank_to_null(pl.col("_record_id")), record_id)
    records = (
        good.select(
            record_id=record_id,
            source=pl.lit(conv.source, pl.String),
            account=_text("account").str.strip_chars(),
            caller=_text("caller").str.strip_chars(),
            callee=_text("callee").str.strip_chars(),
            start=pl.col("_start_v"),
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
        )
        .cast(RECORD_SCHEMA)  # type: ignore[arg-type]
        .collect()
    )
    ids = records.get_column("record_id")
    if ids.null_count():
        # No unique id: the id is a hash of the line's content.
        need_hash = ids.is_null()
        numbers = records.get_column("source_line").filter(need_hash).to_list()
        hashed = pl.Series(
            [f"{prefix}h:{content_hash(line)}" for line in raw.lines(numbers)], dtype=pl.String
        )
        records = records.with_columns(ids.scatter(need_hash.arg_true(), hashed))
    return records, quarantined
