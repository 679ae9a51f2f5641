"""Parse physical lines (from a byte offset of a growing file, a NATS message, an HTTP
body) with the same layouts, field splitting and normalization as ``cdr.read``.

``cdr.read.read_records`` reads whole files; live ingestion needs the same steps on a
slice of lines whose physical line numbers are known. The layout is decided once per
source (from the file's first lines, or from a sample written to a scratch file) and
then reused for every slice, so ids and quarantine positions agree with ``scan``.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from tollguard.cdr.blocks import BOM, BOM_BYTES, RawBlock
from tollguard.cdr.csvread import FrameRaw, split_block, split_fields
from tollguard.cdr.jsonl import parse_jsonl
from tollguard.cdr.normalize import RawSource, normalize
from tollguard.cdr.quarantine import QuarantinedLine
from tollguard.cdr.read import ReadPlan, plan_read
from tollguard.policy import DialingContext


@dataclass
class ParsedLines:
    frame: pl.DataFrame  # RECORD_SCHEMA
    quarantined: list[QuarantinedLine]
    format: str


@dataclass(frozen=True)
class LineParser:
    """A decided layout for one source; ``parse`` turns lines into records."""

    plan: ReadPlan
    source_file: str  # the name records and quarantined lines carry

    @property
    def format(self) -> str:
        return self.plan.detected.name

    @property
    def header_line(self) -> int:
        return self.plan.detected.header_line

    @classmethod
    def for_file(
        cls,
        path: Path,
        fmt: str,
        ctx: DialingContext | None,
        *,
        assume_utc: bool = False,
        source_file: str | None = None,
        source: str | None = None,
    ) -> LineParser:
        """Decide the layout from ``path``'s first lines (raises CdrFormatError)."""
        timezone = "UTC" if assume_utc or ctx is None else ctx.timezone
        plan = plan_read(path, fmt, None, source, timezone)
        name = source_file or str(path)
        conv = dataclasses.replace(plan.conversion, source_file=name)
        return cls(dataclasses.replace(plan, conversion=conv), name)

    @classmethod
    def for_sample(
        cls,
        lines: Sequence[str],
        fmt: str,
        ctx: DialingContext | None,
        *,
        source_file: str,
        assume_utc: bool = False,
        source: str | None = None,
    ) -> LineParser:
        """Decide the layout from sample lines (a message or request body)."""
        with tempfile.TemporaryDirectory(prefix="tollguard-sample-") as tmp:
            sample = Path(tmp) / "sample.cdr"
            sample.write_text("".join(line + "\n" for line in lines[:50]), encoding="utf-8")
            return cls.for_file(
                sample, fmt, ctx, assume_utc=assume_utc, source_file=source_file, source=source
            )

    def parse_bytes(self, data: bytes, first_line: int, count: int) -> ParsedLines:
        """``count`` whole physical lines (``data`` ends with a newline) from ``first_line``."""
        if first_line == 1 and data.startswith(BOM_BYTES):
            data = data[len(BOM_BYTES) :]
        if not data.endswith(b"\n"):
            data += b"\n"
        block = RawBlock(data, first_line, count)
        detected, plan = self.plan.detected, self.plan
        header_here = first_line <= detected.header_line < first_line + count
        if plan.prepare is not None and not header_here:
            quick = split_block(block, plan.names, detected.separator or ",")
            if quick is not None:
                split, raw = quick
                records, bad = normalize(plan.prepare(split), plan.conversion, raw)
                bad.sort(key=lambda q: q.line)
                return ParsedLines(records, bad, detected.name)
        return self.parse_frame(block.text_frame())

    def parse_text(self, text: str, first_line: int, count: int) -> ParsedLines:
        """``count`` physical lines (``text``, newline-separated) starting at ``first_line``."""
        if first_line == 1 and text.startswith(BOM):
            text = text[1:]
        return self.parse_frame(lines_frame(text, first_line, count))

    def parse_lines(self, lines: Sequence[str], first_line: int = 1) -> ParsedLines:
        """Lines without their line endings, numbered from ``first_line``."""
        if not lines:
            return ParsedLines(pl.DataFrame(schema=_empty_schema()), [], self.format)
        return self.parse_text("\n".join(lines), first_line, len(lines))

    def parse_frame(self, frame: pl.DataFrame) -> ParsedLines:
        """Rows of ``_line`` / ``_raw`` (blank lines already dropped)."""
        detected, plan = self.plan.detected, self.plan
        if detected.header_line:
            frame = frame.filter(pl.col("_line") != detected.header_line)
        quarantined: list[QuarantinedLine]
        if plan.prepare is None:
            fields, quarantined = parse_jsonl(frame, self.source_file)
        else:
            split, quarantined = split_fields(
                frame,
                plan.names,
                detected.separator or ",",
                self.source_file,
                f"{detected.name} layout",
            )
            fields = plan.prepare(split)
        raw: RawSource = FrameRaw(frame)
        records, bad = normalize(fields, plan.conversion, raw)
        quarantined.extend(bad)
        quarantined.sort(key=lambda q: q.line)
        return ParsedLines(records, quarantined, detected.name)


def lines_frame(text: str, first_line: int, count: int) -> pl.DataFrame:
    """``_line`` (1-based physical number) and ``_raw`` (no line ending); blanks dropped."""
    raw = pl.Series("_raw", [text]).str.split("\n").explode().head(count)
    frame = pl.DataFrame(
        {
            "_line": pl.int_range(first_line, first_line + raw.len(), dtype=pl.Int64, eager=True),
            "_raw": raw.str.strip_suffix("\r"),
        }
    )
    return frame.filter(pl.col("_raw").str.strip_chars() != "")


def _empty_schema() -> dict[str, pl.DataType]:
    from tollguard.cdr.model import RECORD_SCHEMA

    return RECORD_SCHEMA
