"""Detection quality over many seeds, through the product's own path.

    python -m bench.eval_detection [--seeds 1-10] [--accounts 40] [--days 30] [--scale 0.02]
        [--scenario NAME ...] [--format asterisk|freeswitch]

For each seed the simulator writes a dataset (every scenario unless ``--scenario`` says
otherwise), and ``tollguard.sim.evaluate`` (what ``tollguard evaluate`` runs) reads it
as ``scan`` does, runs detection with default priors and checks the targets against the
ground truth. One line per seed, a summary over all of them, and the seeds that missed a
target. Nothing is asserted, so the whole sweep always prints.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tollguard.sim import simulate
from tollguard.sim.evaluate import Evaluation, evaluate_dataset


def evaluate(
    seed: int,
    accounts: int,
    days: int,
    scale: float,
    work: Path,
    scenarios: list[str] | None = None,
    fmt: str = "asterisk",
) -> Evaluation:
    folder = work / f"seed-{seed}"
    simulate(
        folder, scenarios or ["all"], days=days, seed=seed, accounts=accounts, scale=scale, fmt=fmt
    )
    return evaluate_dataset(folder)


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="1-10")
    ap.add_argument("--accounts", type=int, default=40)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--scale", type=float, default=0.02)
    ap.add_argument("--scenario", action="append", help="repeat; default all (normal: none)")
    ap.add_argument("--format", default="asterisk", choices=("asterisk", "freeswitch"))
    args = ap.parse_args()
    results: list[tuple[int, Evaluation]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in _seeds(args.seeds):
            res = evaluate(
                seed, args.accounts, args.days, args.scale, Path(tmp), args.scenario, args.format
            )
            results.append((seed, res))
            shown = (f"{c.name} {c.value}{' FAIL' if c.ok is False else ''}" for c in res.checks)
            print(f"seed {seed}: " + "; ".join(shown))
    failed = [(seed, r) for seed, r in results if r.failures]
    crit = sum(r.criticals_normal for _, r in results)
    warn = sum(r.warnings_normal for _, r in results)
    days = sum(r.account_days_normal for _, r in results)
    print(
        f"{len(results) - len(failed)} of {len(results)} seeds meet every target; "
        f"normal accounts: {crit} critical, {100.0 * warn / max(days, 1):.2f} warnings "
        f"per 100 account-days over {days:,} account-days"
    )
    for seed, r in failed:
        print(f"seed {seed} missed: {', '.join(r.failures)}")


if __name__ == "__main__":
    main()
