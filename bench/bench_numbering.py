"""Numbering speed: fast-path classification vs phonenumbers, and the bulk frame path.

Run: ``python -m bench.bench_numbering [--numbers 30000] [--records 1000000]
[--unique 100000,1000000] [--skip-per-number]``

Prints classifications per second for
* phonenumbers ``parse`` + ``region_code_for_number`` + ``number_type`` (baseline),
* the fast path on numbers it has not seen (``NumberClassifier`` with an empty cache),
* the fast path on cached numbers,
and the ratio of each to the baseline, all on the same numbers in the same process
after a warm-up of both (metadata loading and pattern compilation are excluded).
Then the bulk path: ``classify_frame`` on record frames (``--records`` records, NL
context, callees dialed nationally / with 00 from random NL, DE, GB, US (+1 212/876)
and TL ranges, ``--unique`` distinct callees each), as records/s and as a ratio to a
bare ``polars.read_csv`` of the same records written as an 18-column Asterisk
Master.csv; and ``classify_series`` (bulk) vs ``classify`` (per-number fast path,
empty cache) on the frame's unique callee numbers. All in the same process, best of
a few runs, after a warm-up. No asserts.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import phonenumbers
import polars as pl
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from bench.cdrgen import write_asterisk
from tollguard.numbering.classify import NumberClassifier
from tollguard.numbering.risk import RiskList
from tollguard.policy import DialingContext

_TYPES = [
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.VOIP,
]


def sample(n: int, seed: int = 1) -> list[str]:
    """n distinct E.164 numbers: example numbers of every region with random tails."""
    rng = random.Random(seed)
    examples = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for t in _TYPES:
            ex = phonenumbers.example_number_for_type(region, t)
            if ex is not None:
                examples.append(phonenumbers.format_number(ex, PhoneNumberFormat.E164))
    out: set[str] = set(examples)
    while len(out) < n:
        e = rng.choice(examples)
        k = rng.randrange(1, 5)
        out.add(e[:-k] + "".join(str(rng.randrange(10)) for _ in range(k)))
    return sorted(out)[:n]


def baseline(numbers: list[str]) -> float:
    t0 = time.perf_counter()
    for e in numbers:
        num = phonenumbers.parse(e)
        phonenumbers.region_code_for_number(num)
        phonenumbers.number_type(num)
    return time.perf_counter() - t0


def fast_uncached(numbers: list[str], risks: RiskList) -> float:
    clf = NumberClassifier(risks)
    t0 = time.perf_counter()
    for e in numbers:
        clf.classify(e)
    return time.perf_counter() - t0


def fast_cached(numbers: list[str], clf: NumberClassifier) -> float:
    t0 = time.perf_counter()
    for e in numbers:
        clf.classify(e)
    return time.perf_counter() - t0


# Dialed in an NL context: national prefix, international 00 prefix; tail digits.
_DIALED = [
    ("06", 8),  # NL mobile
    ("020", 7),  # NL Amsterdam
    ("010", 7),  # NL Rotterdam
    ("0049151", 8),  # DE mobile
    ("004930", 8),  # DE Berlin
    ("00447", 9),  # GB mobile
    ("004420", 8),  # GB London
    ("001212", 7),  # US New York
    ("001876", 7),  # JM (+1 876, risk list)
    ("0067077", 6),  # TL mobile (risk list)
]


def record_frame(records: int, unique: int, seed: int = 5) -> pl.DataFrame:
    """``records`` records (account, caller, callee) with ~``unique`` distinct callees."""
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, len(_DIALED), unique)
    pool = pl.Series(
        [
            _DIALED[k][0] + str(rng.integers(10 ** (_DIALED[k][1] - 1), 10 ** _DIALED[k][1]))
            for k in kinds
        ],
        dtype=pl.String,
    ).unique(maintain_order=True)
    pick = rng.permutation(records) % pool.len() if unique >= records else None
    if pick is None:
        pick = rng.integers(0, pool.len(), records)
    callers = pl.Series([f"02012{i:05d}" for i in range(1000)], dtype=pl.String)
    return pl.DataFrame(
        {
            "account": pl.Series(rng.integers(0, 200, records)).cast(pl.String),
            "caller": callers.gather(rng.integers(0, 1000, records)),
            "callee": pool.gather(pick),
        }
    )


def asterisk_csv(frame: pl.DataFrame, path: Path) -> Path:
    """The records as an 18-column Asterisk Master.csv (other columns from cdrgen)."""
    write_asterisk(path, frame.height)
    cdr = pl.read_csv(path, has_header=False, infer_schema=False)
    cdr = cdr.with_columns(
        frame.get_column("account").alias("column_1"),
        frame.get_column("caller").alias("column_2"),
        frame.get_column("callee").alias("column_3"),
    )
    cdr.write_csv(path, include_header=False, quote_style="non_numeric")
    return path


def best(fn: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bulk_section(records: int, unique: int, risks: RiskList, per_number: bool) -> None:
    frame = record_frame(records, unique)
    ctx = DialingContext(country="NL")
    with tempfile.TemporaryDirectory() as tmp:
        path = asterisk_csv(frame, Path(tmp) / "Master.csv")
        t_read = best(lambda: pl.read_csv(path, has_header=False, infer_schema=False))
    NumberClassifier(risks).classify_frame(frame.head(50_000), lambda _acc: ctx)  # warm-up
    t_frame = best(lambda: NumberClassifier(risks).classify_frame(frame, lambda _acc: ctx))
    out = NumberClassifier(risks).classify_frame(frame, lambda _acc: ctx)
    callees = out.get_column("callee_e164").drop_nulls().unique()
    t_series = best(lambda: NumberClassifier(risks).classify_series(callees))
    n_callee = frame.get_column("callee").n_unique()
    print(
        f"classify_frame, {records:,} records, {n_callee:,} distinct callees "
        f"({callees.len():,} E.164):"
    )
    print(f"  polars.read_csv of the records (18-col Asterisk CSV): {t_read:6.2f} s  (1.0x)")
    print(
        f"  classify_frame:                 {t_frame:6.2f} s  {records / t_frame:12,.0f} records/s"
        f"  ({t_frame / t_read:.2f}x read_csv)"
    )
    line = (
        f"  classify_series, unique E.164:  {t_series:6.2f} s  "
        f"{callees.len() / t_series:12,.0f} numbers/s"
    )
    if per_number:
        numbers = callees.to_list()
        t_fast = best(lambda: fast_uncached(numbers, risks), runs=1)
        line += (
            f"\n  classify per number (fast path): {t_fast:6.2f} s  "
            f"{len(numbers) / t_fast:12,.0f} numbers/s  (bulk {t_fast / t_series:.1f}x faster)"
        )
    print(line)
    print(out.group_by("number_type").len().sort("len", descending=True).head(6))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--numbers", type=int, default=30_000)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument(
        "--unique",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[100_000, 1_000_000],
        help="distinct callees per bulk run, comma-separated",
    )
    ap.add_argument("--skip-per-number", action="store_true")
    args = ap.parse_args()

    risks = RiskList.bundled()
    numbers = sample(args.numbers)
    # Warm-up: phonenumbers loads metadata lazily, the fast path compiles per code.
    baseline(numbers[:: max(1, len(numbers) // 3000)])
    fast_uncached(numbers, risks)

    t_pn = min(baseline(numbers) for _ in range(2))
    t_fast = min(fast_uncached(numbers, risks) for _ in range(2))
    warm = NumberClassifier(risks)
    fast_cached(numbers, warm)
    t_cached = min(fast_cached(numbers, warm) for _ in range(3))
    n = len(numbers)
    print(f"numbers: {n} distinct E.164 from {len(phonenumbers.SUPPORTED_REGIONS)} regions")
    print(f"phonenumbers parse+region+type: {n / t_pn:12,.0f} /s  {t_pn / n * 1e6:6.2f} µs  (1.0x)")
    print(
        f"fast path, first sight:         {n / t_fast:12,.0f} /s  {t_fast / n * 1e6:6.2f} µs  "
        f"({t_pn / t_fast:.1f}x)"
    )
    print(
        f"fast path, cached:              {n / t_cached:12,.0f} /s  {t_cached / n * 1e6:6.2f} µs  "
        f"({t_pn / t_cached:.1f}x)"
    )

    for unique in args.unique:
        bulk_section(args.records, unique, risks, per_number=not args.skip_per_number)


if __name__ == "__main__":
    main()
