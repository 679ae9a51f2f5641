"""Rating throughput: ``Rater.rate_frame`` on 1M random records.

Prints records/s and the ratio of its time to a plain Polars left join of the same
frame to the deck on a fixed-length (3-digit) prefix, run in the same process. The
deck has ~20k prefixes of 1..8 digits, 10% of them with a second, dated version;
two decks are assigned to different accounts.

    python -m bench.bench_rating [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from decimal import Decimal

import numpy as np
import polars as pl

from tollguard.cdr.model import NUMBERING_SCHEMA, RECORD_SCHEMA
from tollguard.rating.deck import RateDeck
from tollguard.rating.rate import Rater


def make_deck(name: str, rng: np.random.Generator, size: int = 20_000) -> RateDeck:
    lines = ["prefix,destination,rate_per_minute,connect_fee,billing,effective_from"]
    prefixes: set[str] = {str(d) for d in range(1, 10)}
    while len(prefixes) < size:
        length = int(rng.integers(2, 9))
        prefixes.add(str(int(rng.integers(10 ** (length - 1), 10**length))))
    for p in sorted(prefixes):
        rate = Decimal(int(rng.integers(0, 3_000_000))).scaleb(-6)
        fee = Decimal(int(rng.choice([0, 0, 0, 500]))).scaleb(-4)
        billing = str(rng.choice(["60/60", "30/6", "1/1"]))
        lines.append(f"{p},D{p},{rate},{fee},{billing},")
        if rng.random() < 0.1:
            lines.append(f"{p},D{p},{rate * 2},{fee},{billing},2026-10-15")
    return RateDeck.parse("\n".join(lines) + "\n", name)


def make_frame(rows: int, deck: RateDeck, rng: np.random.Generator) -> pl.DataFrame:
    known = np.array(sorted({r.prefix for r in deck.rows}))
    heads = np.where(
        rng.random(rows) < 0.9,
        rng.choice(known, rows),
        rng.integers(1, 999, rows).astype(str),
    )
    tails = rng.integers(0, 10**7, rows).astype(str)
    callee = (pl.Series(heads) + pl.Series(tails)).str.slice(0, 15)
    starts = pl.Series(
        np.datetime64("2026-10-01T00:00:00", "us") + rng.integers(0, 30 * 86400 * 10**6, rows)
    ).dt.replace_time_zone("UTC")
    answered = rng.random(rows) < 0.8
    billsec = np.where(answered, rng.integers(0, 900, rows), 0)
    frame = pl.DataFrame(
        {
            "record_id": pl.Series(np.arange(rows)).cast(pl.String),
            "source": "bench",
            "account": pl.Series(rng.integers(0, 200, rows)).cast(pl.String),
            "caller": "2000",
            "callee": callee,
            "start": starts,
            "answer": starts,
            "end": starts,
            "duration": billsec,
            "billsec": billsec,
            "disposition": np.where(answered, "answered", "no_answer"),
            "hangup_cause": "",
            "channel": "",
            "dst_channel": "",
            "source_file": "bench.csv",
            "source_line": np.arange(rows),
            "caller_e164": None,
            "callee_e164": "+" + callee,
            "country": None,
            "number_type": None,
            "risk": None,
        }
    )
    schema: dict[str, pl.DataType] = {**RECORD_SCHEMA, **NUMBERING_SCHEMA}
    return frame.select(pl.col(c).cast(t) for c, t in schema.items())


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(11)
    t0 = time.perf_counter()
    retail, wholesale = make_deck("retail", rng), make_deck("wholesale", rng)
    load_s = time.perf_counter() - t0
    accounts: dict[str, RateDeck | None] = {str(a): wholesale for a in range(0, 200, 4)}
    rater = Rater.from_decks(retail, accounts)
    frame = make_frame(args.rows, retail, rng)

    # Baseline: one plain left join on a fixed 3-digit prefix, same frame, same process.
    fixed = pl.DataFrame(
        {
            "p3": [r.prefix[:3] for r in retail.rows],
            "destination": [r.destination for r in retail.rows],
            "rate_per_minute": [str(r.rate_per_minute) for r in retail.rows],
        }
    ).unique("p3", keep="first")

    def baseline() -> pl.DataFrame:
        return frame.with_columns(pl.col("callee_e164").str.slice(1, 3).alias("p3")).join(
            fixed, on="p3", how="left", maintain_order="left"
        )

    base_s = _best(baseline, args.repeat)
    rate_s = _best(lambda: rater.rate_frame(frame), args.repeat)
    out = rater.rate_frame(frame)
    rated = out["cost_e4"].is_not_null().sum()
    print(f"records: {args.rows:,}  deck rows: {len(retail.rows):,} + {len(wholesale.rows):,}")
    print(f"deck parse (2 decks): {load_s:.2f} s")
    print(f"baseline fixed-prefix join: {base_s:.3f} s = {args.rows / base_s:,.0f} records/s")
    print(f"rate_frame:                 {rate_s:.3f} s = {args.rows / rate_s:,.0f} records/s")
    print(f"ratio rate_frame / join:    {rate_s / base_s:.2f}")
    print(f"rated: {rated:,} of {args.rows:,}")


if __name__ == "__main__":
    main()
