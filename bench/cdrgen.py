"""Fast synthetic Asterisk Master.csv (18 columns) for benchmarks, written in bulk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

PREFIXES = np.array(
    ["0201", "0101", "0612", "0634", "0044207", "0049301", "001212", "0032", "0900", "00670"]
)
WEIGHTS = np.array([0.25, 0.15, 0.2, 0.15, 0.05, 0.05, 0.05, 0.05, 0.03, 0.02])


def write_asterisk(
    path: Path, rows: int, accounts: int = 200, seed: int = 7, distinct: int | None = 200_000
) -> Path:
    """``distinct`` callee numbers are drawn from a pool (people call the same numbers
    again); None makes (almost) every callee unique, the worst case for numbering."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2026-10-01T00:00:00") + np.sort(
        rng.integers(0, 30 * 86400, rows)
    ).astype("timedelta64[s]")
    duration = rng.integers(0, 900, rows)
    answered = rng.random(rows) < 0.8
    ring = rng.integers(0, 20, rows)
    billsec = np.where(answered, np.maximum(duration - ring, 0), 0)
    end = start + duration.astype("timedelta64[s]")
    answer = start + (duration - billsec).astype("timedelta64[s]")
    pool = rows if distinct is None else min(distinct, rows)
    pool_pfx = rng.choice(PREFIXES, pool, p=WEIGHTS)
    pool_num = rng.integers(100_000, 9_999_999, pool).astype(str)
    pick = rng.integers(0, pool, rows) if distinct is not None else np.arange(rows)
    pfx, num = pool_pfx[pick], pool_num[pick]
    acc = rng.integers(0, accounts, rows)
    frame = pl.DataFrame(
        {
            "accountcode": pl.Series(acc).cast(pl.String),
            # callers are the accounts' own DIDs (100 per account), as in outbound CDRs
            "src": pl.Series(200_000_000 + acc * 1000 + rng.integers(0, 100, rows)).cast(pl.String),
            "dst": pl.Series(pfx) + pl.Series(num),
            "dcontext": "from-internal",
            "clid": '"Office" <2000>',
            "channel": "SIP/trunk-0001",
            "dstchannel": "SIP/carrier-0002",
            "lastapp": "Dial",
            "lastdata": "SIP/carrier,60",
            "start": pl.Series(start.astype("datetime64[us]")).dt.strftime("%Y-%m-%d %H:%M:%S"),
            "answer": pl.Series(answer.astype("datetime64[us]")).dt.strftime("%Y-%m-%d %H:%M:%S"),
            "end": pl.Series(end.astype("datetime64[us]")).dt.strftime("%Y-%m-%d %H:%M:%S"),
            "duration": duration,
            "billsec": billsec,
            "disposition": np.where(answered, "ANSWERED", "NO ANSWER"),
            "amaflags": "DOCUMENTATION",
            "uniqueid": pl.Series(np.arange(rows)).cast(pl.String).str.pad_start(9, "0"),
            "userfield": "",
        }
    )
    frame = frame.with_columns(
        pl.concat_str(pl.lit("acct-"), pl.col("accountcode")).alias("accountcode"),
        pl.when(pl.col("billsec") > 0).then(pl.col("answer")).otherwise(None).alias("answer"),
        pl.concat_str(pl.lit("1790000000."), pl.col("uniqueid")).alias("uniqueid"),
    )
    # A switch writes a CDR when the call ends, so files are ordered by end time.
    frame = frame.sort("end", maintain_order=True)
    frame.write_csv(path, include_header=False, quote_style="non_numeric")
    return path


def write_deck(path: Path) -> Path:
    path.write_text(
        "prefix,destination,rate_per_minute,connect_fee,billing\n"
        "31,Netherlands,0.0100,0,60/60\n"
        "3120,Netherlands Amsterdam,0.0090,0,60/60\n"
        "316,Netherlands mobile,0.0600,0,60/60\n"
        "3190,Netherlands premium,0.4500,0.0500,1/1\n"
        "44,United Kingdom,0.0200,0,60/60\n"
        "49,Germany,0.0200,0,60/60\n"
        "1,United States,0.0150,0,6/6\n"
        "32,Belgium,0.0250,0,60/60\n"
        "670,Timor-Leste,1.9500,0.1000,60/60\n"
    )
    return path
