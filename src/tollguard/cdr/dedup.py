"""Drop records whose id was seen before: 8 bytes per remembered record.

Record ids are reduced to 64-bit hashes kept in sorted NumPy arrays ("runs"). Each
batch adds one run; runs of similar size are merged (like an LSM tree), so there are
at most ~log2(n) runs and lookups are binary searches. Memory is 8 bytes per distinct
record plus a transient copy while merging.

Within a frame, ids are compared exactly (first occurrence wins); against earlier
frames, by hash. Two different ids share a 64-bit hash with probability about
n^2 / 2^65 (1e-3 at 190 million records); such a pair would drop the later record.
The hash is Polars' own and is stable within one process, which is all an in-memory
deduplicator needs.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl

_SEED = 0x746F6C6C  # any fixed seed
U64 = npt.NDArray[np.uint64]


class Deduplicator:
    """Remembers record ids; ``filter`` keeps only the first occurrence of each."""

    def __init__(self, column: str = "record_id") -> None:
        self.column = column
        self._runs: list[U64] = []

    def __len__(self) -> int:
        """Number of distinct ids remembered."""
        return sum(len(run) for run in self._runs)

    @property
    def runs(self) -> int:
        return len(self._runs)

    @property
    def nbytes(self) -> int:
        return sum(run.nbytes for run in self._runs)

    def _hashes(self, ids: pl.Series) -> U64:
        return ids.hash(seed=_SEED).to_numpy().astype(np.uint64, copy=False)

    def _seen(self, hashes: U64) -> npt.NDArray[np.bool_]:
        seen = np.zeros(len(hashes), dtype=bool)
        for run in self._runs:
            pos = np.searchsorted(run, hashes)
            pos[pos == len(run)] = 0
            seen |= run[pos] == hashes
        return seen

    def _add(self, hashes: U64) -> None:
        run = np.unique(hashes)  # sorted, distinct
        self._runs.append(run)
        while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
            newer = self._runs.pop()
            older = self._runs.pop()
            merged = np.concatenate((older, newer))
            merged.sort(kind="stable")
            self._runs.append(merged)

    def filter(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
        """(frame without ids seen before or repeated inside it, number of rows dropped)."""
        if frame.height == 0:
            return frame, 0
        ids = frame.get_column(self.column)
        if ids.null_count():
            raise ValueError(f"{ids.null_count()} record(s) without {self.column}")
        first = ids.is_first_distinct().to_numpy()
        hashes = self._hashes(ids)
        keep = first & ~self._seen(hashes)
        kept_hashes = hashes[keep]
        if len(kept_hashes):
            self._add(kept_hashes)
        dropped = int(frame.height - int(keep.sum()))
        if dropped == 0:
            return frame, 0
        return frame.filter(pl.Series(keep)), dropped
