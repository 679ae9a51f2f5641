"""Writers for scan output: rated records (Parquet or CSV) and quarantined lines (JSONL)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import IO

import orjson
import polars as pl
import pyarrow.parquet as pq

from tollguard.cdr.quarantine import QuarantinedLine

_E4 = pl.lit(Decimal("0.0001"), dtype=pl.Decimal(10, 4))


def money_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """Replace integer ten-thousandths by an exact Decimal(20,4) ``cost`` column."""
    cost = (pl.col("cost_e4").cast(pl.Decimal(24, 4)) * _E4).cast(pl.Decimal(20, 4))
    return frame.with_columns(cost.alias("cost")).drop("cost_e4")


class RatedWriter:
    """Appends rated batches to one file; the format follows the suffix."""

    def __init__(self, path: Path) -> None:
        self.path = path
        suffix = path.suffix.lower()
        if suffix not in {".parquet", ".csv"}:
            raise ValueError(f"--out {path}: use a .parquet or .csv file name")
        self._parquet: pq.ParquetWriter | None = None
        self._csv: IO[bytes] | None = None
        self._is_parquet = suffix == ".parquet"

    def write(self, frame: pl.DataFrame) -> None:
        out = money_columns(frame)
        if self._is_parquet:
            table = out.to_arrow()
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema, compression="zstd")
            self._parquet.write_table(table)
            return
        header = self._csv is None
        if self._csv is None:
            self._csv = self.path.open("wb")
        out.write_csv(self._csv, include_header=header)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._csv is not None:
            self._csv.close()


class QuarantineWriter:
    """Every rejected line, with file, line and reason, as JSON Lines."""

    def __init__(self, path: Path) -> None:
        self._fh = path.open("wb")

    def write(self, lines: Iterable[QuarantinedLine]) -> None:
        for line in lines:
            self._fh.write(orjson.dumps(line.to_dict()) + b"\n")

    def close(self) -> None:
        self._fh.close()
