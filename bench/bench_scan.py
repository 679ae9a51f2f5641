"""Scan throughput and memory.

Prints records/s for `scan` on 1M synthetic Asterisk records, the ratio of its time to
a bare ``polars.read_csv`` of the same file (same process, same run), the ratio of
scan-with-detection to scan-without, and peak memory (max RSS of a child process)
for 1M vs 5M records.

``--traffic random`` (default) is bench/cdrgen.py: every account calls random numbers
around the clock, the detectors' worst case. ``--traffic simulated`` is the simulator's
month of business traffic for 270 accounts plus the brief's fraud scenarios (just over
1M records), with its own rate deck and policy: what detection costs on real-looking
traffic.

    python -m bench.bench_scan [--rows 1000000] [--big 5000000] [--skip-memory]
    python -m bench.bench_scan --traffic simulated --skip-memory
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

import tollguard.detect.engine
from bench.cdrgen import write_asterisk, write_deck
from bench.memory import peak_rss_kib
from tollguard import native
from tollguard.policy import Policy, load_policy, parse_policy
from tollguard.scan import ScanOptions, run_scan

OUT = Path(__file__).parent / "out"


def _data(rows: int, distinct: int | None = 200_000) -> Path:
    OUT.mkdir(exist_ok=True)
    path = OUT / f"asterisk-{rows}-{distinct or 'all'}.csv"
    if not path.exists():
        write_asterisk(path, rows, distinct=distinct)
    return path


def _simulated() -> tuple[Path, Policy, int]:
    """The simulator's month (seeded, so the same file every run), written once."""
    from tollguard.sim import simulate

    folder = OUT / "sim-270x28"
    cdr = folder / "Master.csv"
    if not cdr.exists():
        simulate(folder, ["all"], days=28, seed=3, accounts=270, scale=0.05)
    with cdr.open("rb") as fh:
        rows = sum(1 for _ in fh)
    return cdr, load_policy(folder / "policy.toml"), rows


def _best(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _policy() -> Policy:
    deck = write_deck(OUT / "rates.csv")
    return parse_policy(
        {"defaults": {"country": "NL", "timezone": "Europe/Amsterdam", "rates": str(deck)}}
    )


def child(path: Path, detect: bool, timed: bool, traffic: str) -> None:
    policy = _simulated()[1] if traffic == "simulated" else _policy()
    t0 = time.perf_counter()
    result = run_scan([path], policy, ScanOptions(detect=detect))
    seconds = time.perf_counter() - t0
    peak_kib = peak_rss_kib()
    out = {"records": result.records, "peak_mib": peak_kib / 1024}
    print(json.dumps({**out, "seconds": seconds} if timed else out))


def _child_peak(path: Path, detect: bool) -> dict[str, float]:
    cmd = [sys.executable, "-m", "bench.bench_scan", "--child", str(path)]
    if detect:
        cmd.append("--detect")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    peak: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return peak


def _pure_detect_seconds(path: Path, traffic: str) -> float:
    """The detection scan in a child process that runs the pure Python path (the choice
    is made once per process, at import), against this process's baseline."""
    cmd = [sys.executable, "-m", "bench.bench_scan", "--child", str(path), "--detect", "--time"]
    cmd += ["--traffic", traffic]
    env = {**os.environ, native.PURE_ENV: "1"}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    seconds: float = json.loads(out.strip().splitlines()[-1])["seconds"]
    return seconds


def _floors(path: Path, policy: Policy, plain: float) -> None:
    """What the per-record design costs before any detector runs, against scan without
    detection: turning the rated frames into ``CallRecord`` objects, and the engine's own
    per-record work (clock, books, signature, overlap, population) with no detector."""
    from tollguard.cdr.records import records_from_frame
    from tollguard.detect.engine import Engine
    from tollguard.scan import Scanner, ScanResult

    scanner = Scanner(policy, ScanOptions(detect=False))
    result = ScanResult(currency=scanner.currency, detection=False)
    frames = list(scanner.rated_batches([path], result, None, None))

    def build() -> None:
        for frame in frames:
            for _ in records_from_frame(frame):
                pass

    def bare_engine() -> None:
        engine = Engine(policy, detectors=[])
        for frame in frames:
            for record in records_from_frame(frame):
                engine.process(record)

    built = _best(build, repeat=1)
    base = _best(bare_engine, repeat=1)
    print(f"floor: records built:       {built:.2f} s = {built / plain:.2f}x scan (no detection)")
    print(f"floor: engine, no detector: {base:.2f} s = {base / plain:.2f}x scan (no detection)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--big", type=int, default=5_000_000)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-detect", action="store_true")
    ap.add_argument(
        "--all-distinct", action="store_true", help="every callee unique (numbering worst case)"
    )
    ap.add_argument("--traffic", choices=("random", "simulated"), default="random")
    ap.add_argument("--child")
    ap.add_argument("--detect", action="store_true")
    ap.add_argument("--time", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(Path(args.child), args.detect, args.time, args.traffic)
        return
    distinct = None if args.all_distinct else 200_000
    if args.traffic == "simulated":
        path, policy, args.rows = _simulated()
        args.skip_memory = True  # the memory figures are for the synthetic 1M vs 5M files
        print(f"records: {args.rows:,}  simulated month, 270 accounts + fraud scenarios")
    else:
        path = _data(args.rows, distinct)
        policy = _policy()
        print(f"records: {args.rows:,}  distinct callees: {distinct or args.rows:,}")
    print(f"file: {path.stat().st_size / 1e6:.0f} MB")
    baseline = _best(lambda: pl.read_csv(path, has_header=False, infer_schema=False))
    plain = _best(lambda: run_scan([path], policy, ScanOptions(detect=False)))
    print(f"polars.read_csv (baseline): {baseline:.2f} s")
    print(f"scan (no detection):        {plain:.2f} s = {args.rows / plain:,.0f} records/s")
    print(f"ratio scan / read_csv:      {plain / baseline:.2f}  (target <= 4)")
    if not args.skip_detect:
        detect = _best(lambda: run_scan([path], policy, ScanOptions(detect=True)), repeat=1)
        path_kind = "compiled" if native.compiled(tollguard.detect.engine) else "pure Python"
        print(f"scan with detection:        {detect:.2f} s = {args.rows / detect:,.0f} records/s")
        print(f"ratio detect / no-detect:   {detect / plain:.2f}  (target <= 2; {path_kind})")
        if path_kind == "compiled":
            pure = _pure_detect_seconds(path, args.traffic)
            print(
                f"same, pure Python (child):  {pure:.2f} s = {pure / plain:.2f}x; "
                f"compiled path {pure / detect:.2f}x faster"
            )
        _floors(path, policy, plain)
    if not args.skip_memory:
        big = _data(args.big, distinct)
        for det in (False, True):
            small_peak = _child_peak(path, det)["peak_mib"]
            big_peak = _child_peak(big, det)["peak_mib"]
            label = "with detection" if det else "no detection"
            print(
                f"peak RSS {label}: {args.rows:,} -> {small_peak:.0f} MiB, "
                f"{args.big:,} -> {big_peak:.0f} MiB, ratio {big_peak / small_peak:.2f} "
                "(target <= 1.5)"
            )


if __name__ == "__main__":
    main()
