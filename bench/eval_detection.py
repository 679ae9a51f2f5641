"""Detection quality over many seeds, through the product's own path.

    python -m bench.eval_detection [--seeds 1-10] [--accounts 40] [--days 30] [--scale 0.02]
        [--scenario NAME ...] [--format asterisk|freeswitch] [--start YYYY-MM-DD]
        [--calibrate normal|all]

For each seed the simulator writes a dataset (every scenario unless ``--scenario`` says
otherwise), and ``tollguard.sim.evaluate`` (what ``tollguard evaluate`` runs) reads it
as ``scan`` does, runs detection with default priors and checks the targets against the
ground truth. One line per seed, a summary over all of them, and the seeds that missed a
target. Nothing is asserted, so the whole sweep always prints.

``--calibrate normal`` first simulates the 28 days before (same seed, so the same
accounts; ``all``: with the fraud scenarios in that history too), learns priors from
them as ``tollguard calibrate`` does, and evaluates with those priors in the policy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import date, timedelta
from pathlib import Path

from tollguard.detect.calibrate import calibrate
from tollguard.detect.priors_file import write_priors
from tollguard.policy import Policy, load_policy
from tollguard.scan import scan_records
from tollguard.sim import simulate
from tollguard.sim.evaluate import Evaluation, evaluate_dataset

HISTORY_DAYS = 28


def evaluate(
    seed: int,
    accounts: int,
    days: int,
    scale: float,
    work: Path,
    scenarios: list[str] | None = None,
    fmt: str = "asterisk",
    start: date | None = None,
    history: str | None = None,
) -> Evaluation:
    folder = work / f"seed-{seed}"
    simulate(
        folder,
        scenarios or ["all"],
        days=days,
        seed=seed,
        accounts=accounts,
        scale=scale,
        fmt=fmt,
        start=start,
    )
    policy = load_policy(folder / "policy.toml")
    if history:
        first = start or date(2026, 10, 1)
        past = work / f"seed-{seed}-history"
        simulate(
            past,
            [history],
            days=HISTORY_DAYS,
            seed=seed,
            accounts=accounts,
            scale=scale,
            fmt=fmt,
            start=first - timedelta(days=HISTORY_DAYS),
        )
        policy = _with_priors(policy, past)
    return evaluate_dataset(folder, policy)


def _with_priors(policy: Policy, history: Path) -> Policy:
    """The policy with priors learned from a simulated history, as `tollguard
    calibrate` learns them."""
    past_policy = load_policy(history / "policy.toml")
    cdr = json.loads((history / "truth.json").read_text())["files"]["cdr"]
    paths = [history / name for name in ([cdr] if isinstance(cdr, str) else cdr)]
    cal = calibrate(scan_records(paths, past_policy), past_policy)
    out = history / "priors.json"
    write_priors(out, cal.priors, cal.to_dict())
    defaults = policy.defaults.model_copy(update={"priors": str(out)})
    return policy.model_copy(update={"defaults": defaults})


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
    ap.add_argument("--start", type=date.fromisoformat, help="first day (default 2026-10-01)")
    ap.add_argument("--calibrate", choices=("normal", "all"), help="priors from a history")
    args = ap.parse_args()
    results: list[tuple[int, Evaluation]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in _seeds(args.seeds):
            res = evaluate(
                seed,
                args.accounts,
                args.days,
                args.scale,
                Path(tmp),
                args.scenario,
                args.format,
                args.start,
                args.calibrate,
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
