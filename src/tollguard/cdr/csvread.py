"""CSV layouts (Asterisk, FreeSWITCH, acc, mapped) to the canonical text fields.

Each batch of raw lines is checked for its field count with one vectorized pass (quoted
sections removed, separators counted); lines with the wrong count or unbalanced quotes
are quarantined, the rest go through ``polars.read_csv`` as strings. If Polars refuses a
batch anyway, Python's ``csv`` module reads it line by line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from tollguard.cdr.blocks import RawBlock, count_byte, decode
from tollguard.cdr.disposition import DispositionMode
from tollguard.cdr.mapping import CANONICAL_FIELDS, ColumnMapping
from tollguard.cdr.quarantine import QuarantinedLine

QUOTED = r'"(?:[^"]|"")*"'

Prepare = Callable[[pl.DataFrame], pl.DataFrame]


def unique_names(names: list[str]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for i, name in enumerate(names):
        base = name.strip() or f"column_{i + 1}"
        candidate, n = base, 2
        while candidate in seen or candidate.startswith("_"):
            candidate, n = f"{base}_{n}", n + 1
            if candidate.startswith("_"):
                candidate = f"c{candidate}"
        seen.add(candidate)
        out.append(candidate)
    return out


def split_fields(
    lines: pl.DataFrame, names: list[str], separator: str, source_file: str, layout: str
) -> tuple[pl.DataFrame, list[QuarantinedLine]]:
    """Rows of ``_line``/``_raw`` to ``_line``, ``_raw`` and one String column per name."""
    width = len(names)
    unquoted = pl.col("_raw").str.replace_all(QUOTED, "")
    checked = lines.with_columns(
        _fields=unquoted.str.count_matches(separator, literal=True) + 1,
        _stray=unquoted.str.contains('"', literal=True),
    )
    ok = (pl.col("_fields") == width) & ~pl.col("_stray")
    bad = checked.filter(~ok)
    quarantined = [
        QuarantinedLine(
            source_file,
            line,
            "unbalanced quotes" if stray else f"expected {width} fields ({layout}), found {count}",
            raw,
        )
        for line, raw, count, stray in bad.select("_line", "_raw", "_fields", "_stray").iter_rows()
    ]
    good = checked.filter(ok).select("_line", "_raw")
    if good.height == 0:
        empty = pl.DataFrame(
            schema={"_line": pl.Int64, "_raw": pl.String, **dict.fromkeys(names, pl.String)}
        )
        return empty, quarantined
    text = good.get_column("_raw").str.join("\n").item()
    parsed: pl.DataFrame | None
    try:
        parsed = pl.read_csv(
            io.BytesIO(text.encode("utf-8")),
            has_header=False,
            separator=separator,
            quote_char='"',
            infer_schema=False,
            new_columns=names,
            empty_string_is_null=False,
            raise_if_empty=False,
        )
        if parsed.height != good.height or parsed.width != width:
            parsed = None
    except (pl.exceptions.PolarsError, ValueError):
        parsed = None
    if parsed is None:
        parsed, more = _python_split(good, names, separator, source_file, layout)
        quarantined.extend(more)
        return parsed, quarantined
    return pl.concat([good, parsed], how="horizontal"), quarantined


def _python_split(
    good: pl.DataFrame, names: list[str], separator: str, source_file: str, layout: str
) -> tuple[pl.DataFrame, list[QuarantinedLine]]:
    kept_lines: list[int] = []
    kept_raw: list[str] = []
    columns: list[list[str]] = [[] for _ in names]
    quarantined: list[QuarantinedLine] = []
    for line, raw in good.iter_rows():
        row = next(csv.reader([raw], delimiter=separator, quotechar='"'), [])
        if len(row) != len(names):
            quarantined.append(
                QuarantinedLine(
                    source_file,
                    line,
                    f"expected {len(names)} fields ({layout}), found {len(row)}",
                    raw,
                )
            )
            continue
        kept_lines.append(line)
        kept_raw.append(raw)
        for col, value in zip(columns, row, strict=True):
            col.append(value)
    data: dict[str, pl.Series] = {
        "_line": pl.Series(kept_lines, dtype=pl.Int64),
        "_raw": pl.Series(kept_raw, dtype=pl.String),
    }
    for name, values in zip(names, columns, strict=True):
        data[name] = pl.Series(values, dtype=pl.String)
    return pl.DataFrame(data), quarantined


class BlockRaw:
    """Raw text of lines in a block, looked up only for the few lines that need it."""

    def __init__(self, block: RawBlock) -> None:
        self.block = block
        self._newlines: np.ndarray | None = None  # type: ignore[type-arg]

    def newlines(self) -> np.ndarray:  # type: ignore[type-arg]
        if self._newlines is None:
            self._newlines = self.block.newlines()
        return self._newlines

    def lines(self, numbers: list[int]) -> list[str]:
        out = []
        data, nl, first = self.block.data, self.newlines(), self.block.first_line
        for number in numbers:
            i = number - first
            start = int(nl[i - 1]) + 1 if i else 0
            out.append(decode(data[start : int(nl[i])]).removesuffix("\r"))
        return out


@dataclass(frozen=True)
class FrameRaw:
    frame: pl.DataFrame  # _line, _raw

    def lines(self, numbers: list[int]) -> list[str]:
        wanted = pl.DataFrame({"_line": pl.Series(numbers, dtype=pl.Int64)})
        joined = wanted.join(self.frame.select("_line", "_raw"), on="_line", how="left")
        return [r or "" for r in joined.get_column("_raw").to_list()]


def split_block(
    block: RawBlock, names: list[str], separator: str
) -> tuple[pl.DataFrame, BlockRaw] | None:
    """Fast path: the whole block straight into ``polars.read_csv``.

    Taken only when every line is well-formed; otherwise None, and the caller reads the
    block line by line, which explains each bad line. Polars refuses rows with too many
    fields, lines with unbalanced quotes (row count changes) and invalid UTF-8. Rows
    with too few fields leave the last column null; when some last value is null, the
    separators in the block must equal (width - 1) per non-blank line plus the
    separators inside quoted values. Unquoted empty values are null in the result
    (``normalize`` treats null and empty alike).
    """
    if len(separator.encode()) != 1 or separator == '"':
        return None
    width = len(names)
    if block.first_line + block.lines >= 1 << 32:
        return None  # the row index is 32-bit
    try:
        parsed = pl.read_csv(
            block.pieces[0] if len(block.pieces) == 1 else list(block.pieces),
            has_header=False,
            separator=separator,
            quote_char='"',
            infer_schema=False,
            new_columns=names,
            raise_if_empty=False,
            # Numbered by Polars, in the same chunks as the fields (no realignment).
            row_index_name="_line",
            row_index_offset=block.first_line,
        )
    except (pl.exceptions.PolarsError, ValueError):
        return None
    if parsed.height != block.lines or parsed.width != width + 1:
        return None
    # A short row (or a blank line) leaves its last column null, as does an unquoted
    # empty value (a quoted one reads as ""); without a null last value there is
    # nothing to count.
    deficit = 0
    if parsed.get_column(names[-1]).null_count():
        inside = parsed.select(
            pl.sum_horizontal(
                [pl.col(c).str.count_matches(separator, literal=True).cast(pl.Int64) for c in names]
            ).sum()
        ).item()
        deficit = (
            block.lines * (width - 1)
            + int(inside or 0)
            - sum(count_byte(piece, ord(separator)) for piece in block.pieces)
        )
    raw = BlockRaw(block)
    frame = parsed.with_columns(pl.col("_line").cast(pl.Int64))
    if deficit:
        if width == 1:
            return None
        newlines = raw.newlines()
        starts = np.empty_like(newlines)
        starts[0] = 0
        starts[1:] = newlines[:-1] + 1
        lengths = newlines - starts
        arr = np.frombuffer(block.data, dtype=np.uint8)
        has_cr = lengths > 0
        has_cr[has_cr] = arr[newlines[has_cr] - 1] == 13
        blank = (lengths - has_cr) == 0
        if deficit != (width - 1) * int(blank.sum()):
            return None  # some line has too few fields
        frame = frame.filter(pl.Series(~blank))
    return frame, raw


def select_canonical(resolved: dict[str, str]) -> Prepare:
    """Rename source columns to canonical fields (others are dropped)."""

    def prepare(frame: pl.DataFrame) -> pl.DataFrame:
        exprs = [pl.col("_line")]
        exprs += [
            pl.col(src).alias(key) for key, src in resolved.items() if key in CANONICAL_FIELDS
        ]
        return frame.select(exprs)

    return prepare


def acc_prepare(names: list[str], mapping: ColumnMapping | None) -> tuple[Prepare, DispositionMode]:
    """Kamailio/OpenSIPS acc rows to canonical fields.

    start = created (OpenSIPS) or start_time (Kamailio acc_cdrs) or time; answer = time when
    created is also there; billsec = duration (talk time; fractions rounded up);
    setup_seconds = setuptime; end = end_time or derived; unique id = callid/from_tag;
    account = account/accountcode column, else src_user; rows whose method is not INVITE
    (BYE, ACK... transaction rows) are quarantined as not being calls.
    """
    by_lower = {n.strip().lower(): n for n in names}
    explicit = dict(mapping.columns) if mapping else {}

    def col(*options: str) -> pl.Expr:
        for opt in options:
            if opt in by_lower:
                stripped = pl.col(by_lower[opt]).str.strip_chars()
                return pl.when(stripped != "").then(stripped)
        return pl.lit(None, pl.String)

    has_code = "sip_code" in by_lower or "code" in by_lower

    def prepare(frame: pl.DataFrame) -> pl.DataFrame:
        method = col("method")
        created, time_ = col("created"), col("time", "timestamp")
        callid, from_tag = col("callid", "call_id"), col("from_tag")
        code = col("sip_code", "code")
        reason = col("sip_reason", "reason")
        out = frame.select(
            pl.col("_line"),
            _reason=pl.when(method.is_not_null() & (method.str.to_uppercase() != "INVITE")).then(
                pl.format("method {} is not a call (only INVITE rows are call records)", method)
            ),
            unique_id=pl.when(from_tag.is_not_null())
            .then(pl.concat_str([callid, pl.lit("/"), from_tag]))
            .otherwise(callid),
            account=pl.coalesce(
                col("account", "accountcode", "account_code"), col("src_user", "from_user")
            ),
            caller=col("src_user", "from_user", "caller", "src"),
            callee=col("dst_user", "dst_ouser", "to_user", "ruri_user", "callee", "dst"),
            start=pl.coalesce(created, col("start_time"), time_),
            answer=pl.when(created.is_not_null()).then(time_),
            end=col("end_time"),
            billsec=col("duration").fill_null("0"),
            setup_seconds=col("setuptime"),
            disposition=pl.concat_str([code, reason], separator=" ", ignore_nulls=True)
            if has_code
            else col("disposition"),
            channel=pl.coalesce(col("src_ip"), col("src_domain")),
            dst_channel=pl.coalesce(col("dst_ip"), col("dst_domain")),
        )
        if explicit:
            resolved = {k: by_lower.get(v.lower(), v) for k, v in explicit.items()}
            out = out.with_columns(
                [frame.get_column(src).alias(key) for key, src in resolved.items()]
            )
        return out

    return prepare, ("sip" if has_code else "any")
