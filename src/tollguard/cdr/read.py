"""Read CDR files of any supported format into ``RECORD_SCHEMA`` frames, in batches.

    for batch in read_records("Master.csv", ctx=DialingContext(timezone="Europe/Amsterdam")):
        batch.frame        # records, RECORD_SCHEMA
        batch.quarantined  # lines that could not be read, with file, line and reason

See docs/formats.md for the formats, detection rules and quarantine behaviour.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from tollguard.cdr.blocks import is_gzip, iter_blocks, prefetch
from tollguard.cdr.csvread import (
    FrameRaw,
    Prepare,
    acc_prepare,
    select_canonical,
    split_block,
    split_fields,
    unique_names,
)
from tollguard.cdr.detect import (
    ACC_FORMATS,
    FORMATS,
    CdrFormatError,
    DetectedFormat,
    detect_format,
    layout_for,
)
from tollguard.cdr.disposition import DispositionMode
from tollguard.cdr.jsonl import parse_jsonl
from tollguard.cdr.mapping import ColumnMapping
from tollguard.cdr.model import RECORD_SCHEMA
from tollguard.cdr.normalize import ASTERISK_TIME, FLEXIBLE, Conversion, RawSource, normalize
from tollguard.cdr.quarantine import QuarantinedLine
from tollguard.policy import DialingContext

__all__ = [
    "FORMATS",
    "CdrFormatError",
    "ColumnMapping",
    "DetectedFormat",
    "ReadBatch",
    "detect_format",
    "read_records",
]


@dataclass
class ReadBatch:
    frame: pl.DataFrame  # RECORD_SCHEMA
    quarantined: list[QuarantinedLine] = field(default_factory=list)
    format: str = ""  # format name chosen
    lines_read: int = 0  # physical lines consumed in this batch (for progress)


@dataclass(frozen=True)
class ReadPlan:
    """How to read one file: its detected layout, column names, how to turn split
    fields into canonical columns, and the time/disposition conversion (also used by
    the durable ingest, which reads the same layouts line by line)."""

    detected: DetectedFormat
    names: list[str]
    prepare: Prepare | None  # None for jsonl
    conversion: Conversion


_DISPOSITION_MODE: dict[str, DispositionMode] = {
    "asterisk-csv": "asterisk",
    "asterisk-custom": "asterisk",
    "freeswitch-csv": "q850",
}


def plan_read(
    path: Path,
    fmt: str,
    mapping: ColumnMapping | None,
    source: str | None,
    timezone: str,
) -> ReadPlan:
    """Detect (or take) the file's layout and prepare how to read it."""
    detected = layout_for(path, fmt, mapping)
    name = detected.name
    src = source or name
    if name == "jsonl":
        conv = Conversion(src, str(path), timezone, FLEXIBLE, "any")
        return ReadPlan(detected, [], None, conv)
    names = unique_names(detected.columns)
    time_format = mapping.time_format if mapping and mapping.time_format else None
    if name in ACC_FORMATS:
        prepare, mode = acc_prepare(names, mapping)
        conv = Conversion(src, str(path), timezone, time_format or FLEXIBLE, mode)
        return ReadPlan(detected, names, prepare, conv)
    try:
        resolved = (mapping or ColumnMapping()).resolve(names)
    except ValueError as exc:
        raise CdrFormatError(f"{path}: {exc}") from exc
    if "start" not in resolved or not ({"end", "duration"} & resolved.keys()):
        raise CdrFormatError(
            f"{path}: the mapping must give a start column and an end or duration column; "
            f"found {resolved or 'none'} among {names}"
        )
    if name in _DISPOSITION_MODE:
        default_time = ASTERISK_TIME if name.startswith("asterisk") else FLEXIBLE
        conv = Conversion(
            src, str(path), timezone, time_format or default_time, _DISPOSITION_MODE[name]
        )
    else:
        conv = Conversion(src, str(path), timezone, time_format or FLEXIBLE, "any")
    return ReadPlan(detected, names, select_canonical(resolved), conv)


def read_records(
    path: str | Path,
    fmt: str = "auto",
    ctx: DialingContext | None = None,
    *,
    source: str | None = None,
    mapping: ColumnMapping | None = None,
    batch_rows: int = 250_000,
    assume_utc: bool = False,
) -> Iterator[ReadBatch]:
    """Read ``path`` in batches of at most ``batch_rows`` physical lines.

    ``fmt``: "auto" (detect; with a ``mapping`` it means csv-mapped) or one of FORMATS.
    ``ctx.timezone`` says how times without an offset are read (UTC without ctx or with
    ``assume_utc``). ``source`` namespaces record ids (default: the format name).
    Raises CdrFormatError at once when the layout cannot be used; bad lines never raise,
    they are quarantined. An empty file gives no batches.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such CDR file")
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, not {batch_rows}")
    timezone = "UTC" if assume_utc or ctx is None else ctx.timezone
    try:
        plan = plan_read(path, fmt, mapping, source, timezone)
    except CdrFormatError as exc:
        if fmt == "auto" and mapping is None and "has no lines" in str(exc):
            return iter(())
        raise
    return _batches(path, plan, batch_rows)


def _batches(path: Path, plan: ReadPlan, batch_rows: int, fast: bool = True) -> Iterator[ReadBatch]:
    detected, conv = plan.detected, plan.conversion
    layout = f"{detected.name} layout"
    last_line = 0
    blocks = iter_blocks(path, batch_rows)
    if is_gzip(path):  # decompress the next block while this one is parsed
        blocks = prefetch(blocks)
    while True:
        try:
            block = next(blocks)
        except StopIteration:
            return
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            problem = QuarantinedLine(
                str(path), last_line + 1, f"the file cannot be read past this point: {exc}", ""
            )
            yield ReadBatch(pl.DataFrame(schema=RECORD_SCHEMA), [problem], detected.name, 0)
            return
        last_line += block.lines
        quarantined: list[QuarantinedLine] = []
        raw: RawSource
        header_here = block.first_line <= detected.header_line < block.first_line + block.lines
        quick = None
        if fast and plan.prepare is not None and not header_here:
            quick = split_block(block, plan.names, detected.separator or ",")
        if quick is not None and plan.prepare is not None:
            split, raw = quick
            fields = plan.prepare(split)
        else:
            lines = block.text_frame()
            if header_here:
                lines = lines.filter(pl.col("_line") != detected.header_line)
            raw = FrameRaw(lines)
            if plan.prepare is None:
                fields, quarantined = parse_jsonl(lines, str(path))
            else:
                split, quarantined = split_fields(
                    lines, plan.names, detected.separator or ",", str(path), layout
                )
                fields = plan.prepare(split)
        records, bad = normalize(fields, conv, raw)
        quarantined.extend(bad)
        quarantined.sort(key=lambda q: q.line)
        yield ReadBatch(records, quarantined, detected.name, block.lines)
