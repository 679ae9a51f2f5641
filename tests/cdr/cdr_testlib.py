"""Helpers for the CDR reader tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from tollguard.cdr.model import RECORD_SCHEMA
from tollguard.cdr.quarantine import QuarantinedLine
from tollguard.cdr.read import ReadBatch, read_records


def read_all(
    path: Path, **kwargs: Any
) -> tuple[pl.DataFrame, list[QuarantinedLine], list[ReadBatch]]:
    batches = list(read_records(path, **kwargs))
    frames = [b.frame for b in batches]
    frame = pl.concat(frames) if frames else pl.DataFrame(schema=RECORD_SCHEMA)
    quarantined = [q for b in batches for q in b.quarantined]
    return frame, quarantined, batches


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def row(frame: pl.DataFrame, line: int) -> dict[str, Any]:
    rows = frame.filter(pl.col("source_line") == line).to_dicts()
    assert len(rows) == 1, f"expected one record from line {line}, got {len(rows)}"
    return rows[0]


def write(path: Path, lines: list[str], encoding: str = "utf-8") -> Path:
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path
