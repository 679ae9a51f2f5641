"""Detection engine throughput and memory.

    python -m bench.bench_detect [--records 1000000] [--big 5000000]

1. Throughput: the engine over ``--records`` in-memory records vs a baseline loop that
   only iterates the same records (same process), as records/s and a ratio.
2. Memory: peak RSS of a child process streaming 1M vs 5M generated records through the
   engine (records are generated lazily, never held), and their ratio. The engine's state
   grows with accounts and open windows, not with records, so the ratio should stay near 1.

Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from random import Random

from bench.memory import peak_rss_kib
from tollguard.cdr.model import CallRecord, Disposition
from tollguard.detect.engine import Engine
from tollguard.policy import parse_policy

START = datetime(2026, 1, 5, tzinfo=UTC)
DESTS = [
    ("+3120", "NL", "FIXED_LINE", Decimal("0.012")),
    ("+3161", "NL", "MOBILE", Decimal("0.045")),
    ("+4930", "DE", "FIXED_LINE", Decimal("0.016")),
    ("+3190", "NL", "PREMIUM_RATE", Decimal("0.90")),
]


def generate(n: int, accounts: int = 2000, seed: int = 7) -> Iterator[CallRecord]:
    """n business-hours-ish calls from ``accounts`` accounts, in end order, classified
    and priced (about 11 calls per account and day)."""
    rng = Random(seed)
    per_second = accounts * 11 / 86400.0
    t = 0.0
    for i in range(n):
        t += rng.expovariate(per_second)
        start = START + timedelta(seconds=t)
        hour = start.hour
        if hour < 7 or hour > 18:  # nights are quiet: skip ahead like real traffic
            t += 3600 * (7 - hour if hour < 7 else 31 - hour)
            start = START + timedelta(seconds=t)
        r = rng.random()
        prefix, country, ntype, rate = DESTS[
            0 if r < 0.6 else 1 if r < 0.95 else 2 if r < 0.999 else 3
        ]
        answered = rng.random() < 0.7
        talk = int(rng.lognormvariate(4.2, 1.0)) if answered else 0
        end = start + timedelta(seconds=5 + talk)
        yield CallRecord(
            record_id=f"b:{i}",
            account=f"acc{rng.randrange(accounts)}",
            caller="+31201234567",
            callee=f"{prefix}{rng.randrange(10**7):07d}",
            start=start,
            end=end,
            duration=5 + talk,
            billsec=talk,
            disposition=Disposition.ANSWERED if answered else Disposition.NO_ANSWER,
            caller_e164="+31201234567",
            callee_e164=f"{prefix}{rng.randrange(10**7):07d}",
            country=country,
            number_type=ntype,
            cost=(rate * talk / 60).quantize(Decimal("0.0001")) if answered else Decimal(0),
        )


def _policy() -> object:
    return parse_policy({"defaults": {"timezone": "Europe/Amsterdam", "country": "NL"}})


def throughput(n: int) -> None:
    records = list(generate(n))
    t0 = time.perf_counter()
    count = 0
    for rec in records:
        if rec.billsec >= 0:
            count += 1
    base = time.perf_counter() - t0
    engine = Engine(_policy())  # type: ignore[arg-type]
    t0 = time.perf_counter()
    alerts = 0
    for rec in records:
        alerts += len(engine.process(rec))
    alerts += len(engine.finish())
    took = time.perf_counter() - t0
    print(f"records:            {n:,}")
    print(f"baseline loop:      {n / base:,.0f} records/s ({base:.2f} s)")
    print(f"engine:             {n / took:,.0f} records/s ({took:.1f} s), {alerts} alerts emitted")
    print(f"engine / baseline:  {took / base:,.0f}x the time of a bare loop")


def child(n: int) -> None:
    engine = Engine(_policy())  # type: ignore[arg-type]
    t0 = time.perf_counter()
    for rec in generate(n):
        engine.process(rec)
    engine.finish()
    rss_kb = peak_rss_kib()
    print(f"{rss_kb} {time.perf_counter() - t0:.1f} {len(engine.alerts)}")


def memory(small: int, big: int) -> None:
    out = {}
    for n in (small, big):
        res = subprocess.run(
            [sys.executable, "-m", "bench.bench_detect", "--child", str(n)],
            capture_output=True,
            text=True,
            check=True,
        )
        rss, secs, alerts = res.stdout.split()
        out[n] = int(rss)
        print(
            f"streamed {n:>11,} records: peak RSS {int(rss) / 1024:,.1f} MiB "
            f"({secs} s, {alerts} alerts)"
        )
    print(f"peak RSS ratio {big:,} / {small:,}: {out[big] / out[small]:.2f} (target <= 1.5)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--big", type=int, default=5_000_000)
    ap.add_argument("--child", type=int, default=0)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--memory-only", action="store_true")
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    if not args.memory_only:
        throughput(args.records)
    if not args.skip_memory:
        memory(args.records, args.big)


if __name__ == "__main__":
    main()
