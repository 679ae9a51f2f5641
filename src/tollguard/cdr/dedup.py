"""Drop records whose id was seen before: 8 bytes per remembered record.

Record ids are reduced to 64-bit hashes kept in sorted NumPy arrays ("runs"). Each
batch adds one run; runs of similar size are merged (like an LSM tree), so there are
at most ~log2(n) runs and lookups are binary searches. Memory is 8 bytes per distinct
record plus a transient copy while merging.

Ids are compared by hash, within a frame (first occurrence wins) and against earlier
frames. Two different ids share a 64-bit hash with probability about n^2 / 2^65
(1e-3 at 190 million records); such a pair would drop the later record.
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

    def _add_run(self, run: U64) -> None:
        """Remember ``run`` (sorted, distinct, none remembered yet)."""
        self._runs.append(run)
        while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
            newer = self._runs.pop()
            older = self._runs.pop()
            merged = np.concatenate((older, newer))
            merged.sort(kind="stable")  # two sorted runs: a linear merge
            self._runs.append(merged)

    def filter(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
        """(frame without ids seen before or repeated inside it, number of rows dropped)."""
        if frame.height == 0:
            return frame, 0
        ids = frame.get_column(self.column)
        if ids.null_count():
            raise ValueError(f"{ids.null_count()} record(s) without {self.column}")
        hashes = self._hashes(ids)
        ordered = np.sort(hashes)
        # The usual case: no repeats inside the frame, none seen before. The sorted
        # hashes are then the new run as they are.
        if not (ordered[1:] == ordered[:-1]).any() and not self._seen(ordered).any():
            self._add_run(ordered)
            return frame, 0
        first = pl.Series(hashes).is_first_distinct().to_numpy()
        keep = first & ~self._seen(hashes)
        kept = np.sort(hashes[keep])
        if len(kept):
            self._add_run(kept)
        dropped = int(frame.height - int(keep.sum()))
        if dropped == 0:
            return frame, 0
        return frame.filter(pl.Series(keep)), dropped
