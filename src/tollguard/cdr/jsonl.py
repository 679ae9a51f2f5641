"""JSON Lines: one object per line with tollguard's field names (or their aliases).

Values may be strings or numbers; times are ISO 8601 (with an offset, or local time in
the dialing context's zone) or epoch numbers. ``record_id``, when present, is kept as
it is; otherwise the record id is ``<source>:<unique_id>`` like every other format.
A line that is not a JSON object is quarantined.
"""

from __future__ import annotations

from typing import Any

import orjson
import polars as pl

from tollguard.cdr.mapping import ALIASES, CANONICAL_FIELDS
from tollguard.cdr.quarantine import QuarantinedLine

_LOOKUP: dict[str, str] = {}
for _key, _aliases in ALIASES.items():
    for _alias in (_key, *_aliases):
        _LOOKUP.setdefault(_alias, _key)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | int | float):
        return str(value)
    return orjson.dumps(value).decode()


def parse_jsonl(
    lines: pl.DataFrame, source_file: str
) -> tuple[pl.DataFrame, list[QuarantinedLine]]:
    """Rows of ``_line``/``_raw`` to canonical text fields plus ``_record_id``."""
    keys = [*CANONICAL_FIELDS, "_record_id"]
    columns: dict[str, list[str | None]] = {k: [] for k in keys}
    kept_lines: list[int] = []
    kept_raw: list[str] = []
    quarantined: list[QuarantinedLine] = []
    for line, raw in lines.iter_rows():
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            quarantined.append(QuarantinedLine(source_file, line, f"not valid JSON: {exc}", raw))
            continue
        if not isinstance(obj, dict):
            quarantined.append(
                QuarantinedLine(
                    source_file, line, f"expected a JSON object, got {type(obj).__name__}", raw
                )
            )
            continue
        row: dict[str, str | None] = {}
        for name, value in obj.items():
            if name == "record_id":
                row["_record_id"] = _text(value)
                continue
            key = _LOOKUP.get(str(name).lower())
            if key is not None and key not in row:
                row[key] = _text(value)
        kept_lines.append(line)
        kept_raw.append(raw)
        for k in keys:
            columns[k].append(row.get(k))
    data: dict[str, pl.Series] = {
        "_line": pl.Series(kept_lines, dtype=pl.Int64),
        "_raw": pl.Series(kept_raw, dtype=pl.String),
    }
    for k in keys:
        data[k] = pl.Series(columns[k], dtype=pl.String)
    return pl.DataFrame(data), quarantined
