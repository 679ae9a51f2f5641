"""Numbering speed: fast-path classification vs phonenumbers, and the bulk frame path.

Run: ``python -m bench.bench_numbering [--numbers 30000] [--records 1000000] [--unique 100000]``

Prints classifications per second for
* phonenumbers ``parse`` + ``region_code_for_number`` + ``number_type`` (baseline),
* the fast path on numbers it has not seen (``NumberClassifier`` with an empty cache),
* the fast path on cached numbers,
and the ratio of each to the baseline, all on the same numbers in the same process
after a warm-up of both (metadata loading and pattern compilation are excluded).
Then times ``classify_frame`` on a record frame. No asserts.
"""

from __future__ import annotations

import argparse
import random
import time

import phonenumbers
import polars as pl
from phonenumbers import PhoneNumberFormat, PhoneNumberType

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


def national(e164: str) -> str:
    return e164.replace("+31", "0", 1) if e164.startswith("+31") else "00" + e164[1:]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--numbers", type=int, default=30_000)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--unique", type=int, default=100_000)
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

    # Bulk: records with a limited set of distinct numbers, as dialed (national/00 form).
    rng = random.Random(2)
    pool_e164 = sample(args.unique, seed=3)
    pool = [national(e) for e in pool_e164]
    callers = [f"02012{i:05d}" for i in range(1000)]
    frame = pl.DataFrame(
        {
            "account": [f"acc{rng.randrange(50)}" for _ in range(args.records)],
            "caller": [rng.choice(callers) for _ in range(args.records)],
            "callee": [pool[rng.randrange(len(pool))] for _ in range(args.records)],
        }
    )
    ctx = DialingContext(country="NL")
    clf = NumberClassifier(risks)
    t0 = time.perf_counter()
    out = clf.classify_frame(frame, lambda _acc: ctx)
    t_frame = time.perf_counter() - t0
    uniq = frame.select("account", "callee").n_unique()
    print(
        f"classify_frame: {args.records:,} records, {uniq:,} unique (account, callee), "
        f"{clf.cache_size():,} classified: {t_frame:.2f} s "
        f"({args.records / t_frame:,.0f} records/s); "
        f"per-record phonenumbers would take ~{args.records * t_pn / n:.1f} s"
    )
    print(out.group_by("number_type").len().sort("len", descending=True).head(6))


if __name__ == "__main__":
    main()
