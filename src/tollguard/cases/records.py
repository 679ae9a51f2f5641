"""Rated records for evidence and payouts: from a ``scan --out`` file (Parquet or CSV) or
from the store's ``rated_records`` table. Money comes back as exact integer ``cost_e4``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
from sqlalchemy import Engine, inspect, select

from tollguard.cdr.model import UTC_DATETIME

COLUMNS = [
    "record_id", "account", "caller", "callee", "caller_e164", "callee_e164", "country",
    "number_type", "start", "answer", "end", "duration", "billsec", "disposition",
    "source_file", "source_line", "deck", "deck_row", "prefix", "destination",
    "rate_per_minute", "billing", "charged_seconds", "cost_e4", "currency",
]  # fmt: skip
_TIMES = ("start", "answer", "end")
_INTS = {"duration", "billsec", "deck_row", "charged_seconds", "source_line", "cost_e4"}


def load_rated_file(path: Path) -> pl.DataFrame:
    """Read a rated-records file written by ``tollguard scan --out``."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pl.read_parquet(path)
    elif suffix == ".csv":
        frame = pl.read_csv(path, infer_schema=False)  # all text: money stays exact
    else:
        raise ValueError(f"{path}: rated records must be .parquet or .csv (from `scan --out`)")
    return normalize(frame, str(path))


def normalize(frame: pl.DataFrame, source: str = "<frame>") -> pl.DataFrame:
    """Columns of ``COLUMNS`` with exact ``cost_e4`` (Int64) and UTC datetimes."""
    if "cost_e4" not in frame.columns:
        if "cost" not in frame.columns:
            raise ValueError(f"{source}: no cost or cost_e4 column; is it a rated file?")
        frame = frame.with_columns(_cost_e4(frame["cost"]).alias("cost_e4"))
    missing = [c for c in ("record_id", "account", "start", "end") if c not in frame.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}")
    exprs: list[pl.Expr] = []
    for name in COLUMNS:
        if name not in frame.columns:
            exprs.append(pl.lit(None).alias(name))
            continue
        col = pl.col(name)
        if name in _TIMES:
            if frame.schema[name] == pl.String:
                col = col.str.to_datetime(time_zone="UTC", time_unit="us")
            col = col.cast(UTC_DATETIME)
        elif (
            name in {"duration", "billsec", "deck_row", "charged_seconds", "source_line"}
            or name == "cost_e4"
        ):
            col = col.cast(pl.Int64)
        else:
            col = col.cast(pl.String)
        exprs.append(col.alias(name))
    return frame.select(exprs)


def _cost_e4(series: pl.Series) -> pl.Series:
    """Exact Decimal/decimal-text money to integer ten-thousandths (no float on the way)."""
    text = series.cast(pl.String)
    values: list[int | None] = []
    from decimal import Decimal, InvalidOperation

    for v in text.to_list():
        if v is None or v == "":
            values.append(None)
            continue
        try:
            e4 = Decimal(v) * 10000
        except InvalidOperation:
            raise ValueError(f"cost {v!r} is not a decimal number") from None
        if e4 != e4.to_integral_value():
            raise ValueError(f"cost {v!r} has more than 4 decimal places")
        values.append(int(e4))
    return pl.Series(values, dtype=pl.Int64)


def load_rated_db(
    engine: Engine,
    *,
    accounts: list[str] | None = None,
    callees: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pl.DataFrame | None:
    """Rated records from the store (None when the table does not exist)."""
    if not inspect(engine).has_table("rated_records"):
        return None
    from tollguard.store.schema import rated_records as t

    query = select(*[t.c[name] for name in COLUMNS])
    if accounts:
        query = query.where(t.c.account.in_(accounts))
    if callees:
        query = query.where(t.c.callee_e164.in_(callees))
    if since is not None:
        query = query.where(t.c.end >= since)
    if until is not None:
        query = query.where(t.c.start <= until)
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(query)]
    frame = pl.DataFrame(rows, schema=COLUMNS, orient="row", infer_schema_length=None)
    return normalize(frame, "rated_records")
