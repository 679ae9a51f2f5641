"""Detection quality over many seeds, through the product's own path.

    python -m bench.eval_detection [--seeds 1-10] [--accounts 40] [--days 30] [--scale 0.02]

For each seed the simulator writes a month with every scenario (files, rate deck,
policy, ground truth); the records are read, numbered and rated as ``tollguard scan``
does, and fed to the engine with its default priors (what ``scan --detect`` uses, not
the calibrated priors of the unit tests). It then checks the issue's must-show figures
against the ground truth and prints one line per seed and a summary:

* pbx-hack: minutes from the attack's onset (first call followed by 5 more within 10
  minutes) to the first critical alert on the account (target <= 15), and, replayed with
  ``--enforce``, the largest day's spend over the EUR 500 limit in calls (target <= 1);
* voip-hack: which fraudulent call the first alert came with (target <= 3rd);
* prs-pumping: pumped calls seen before the critical pumping alert (target <= 1,000),
  and alerts on the normal premium-rate numbers (target 0);
* wangiri, sequential: minutes from onset to the first alert (no target in the issue);
* normal accounts (not in any scenario): critical alerts (target 0) and warnings per
  100 account-days (target <= 1).

A failed target is marked ``FAIL`` on its seed's line; nothing is asserted, so the whole
sweep always prints.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from tollguard.cdr.model import CallRecord
from tollguard.detect.engine import Engine
from tollguard.policy import Policy, load_policy
from tollguard.scan import Scanner, ScanOptions, ScanResult, records_from_frame
from tollguard.sim import simulate


@dataclass
class SeedResult:
    seed: int
    figures: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    criticals_normal: int = 0
    warnings_normal: int = 0
    account_days_normal: int = 0

    def add(self, name: str, value: str, ok: bool | None = None) -> None:
        self.figures[name] = value + ("" if ok is None or ok else " FAIL")
        if ok is False:
            self.failures.append(name)


def _records(folder: Path, policy: Policy) -> Iterator[CallRecord]:
    """The simulated files read, numbered and rated as ``scan`` does, in event order."""
    scanner = Scanner(policy, ScanOptions(detect=False))
    result = ScanResult(currency=scanner.currency, detection=False)
    paths = sorted(p for p in folder.iterdir() if p.name not in _NOT_CDR)
    for frame in scanner.rated_batches(paths, result, None, None):
        yield from records_from_frame(frame)


_NOT_CDR = {"policy.toml", "rates.csv", "truth.json"}


def _scenario(truth: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((s for s in truth["scenarios"] if s["scenario"] == name), None)


def _main_onset(starts: list[datetime]) -> datetime:
    starts = sorted(starts)
    for i, s in enumerate(starts):
        if i + 5 < len(starts) and starts[i + 5] - s <= timedelta(minutes=10):
            return s
    return starts[0]


def _minutes(a: datetime, b: datetime) -> float:
    return (a - b).total_seconds() / 60.0


def evaluate(
    seed: int,
    accounts: int,
    days: int,
    scale: float,
    work: Path,
    scenarios: list[str] | None = None,
    fmt: str = "asterisk",
) -> SeedResult:
    folder = work / f"seed-{seed}"
    simulate(
        folder, scenarios or ["all"], days=days, seed=seed, accounts=accounts, scale=scale, fmt=fmt
    )
    truth = json.loads((folder / "truth.json").read_text())
    policy = load_policy(folder / "policy.toml")
    records = list(_records(folder, policy))
    out = SeedResult(seed)

    engine = Engine(policy)
    fraud_ids = {s["scenario"]: set(s["record_ids"]) for s in truth["scenarios"]}
    pumped_seen = 0
    pumped_at_alert: int | None = None
    prs = _scenario(truth, "prs-pumping")
    target = prs["subject_numbers"][0] if prs else None
    for rec in records:
        if prs and rec.record_id in fraud_ids["prs-pumping"]:
            pumped_seen += 1
        for alert in engine.process(rec):
            if (
                alert.detector == "pumping"
                and alert.subject == target
                and alert.severity == "critical"
                and pumped_at_alert is None
            ):
                pumped_at_alert = pumped_seen
    engine.finish()
    alerts = engine.alerts
    by_id = {r.record_id: r for r in records}

    pbx = _scenario(truth, "pbx-hack")
    if pbx:
        onset = _main_onset([by_id[i].start for i in pbx["record_ids"] if i in by_id])
        crit = [a for a in alerts if a.account == pbx["account"] and a.severity == "critical"]
        if crit:
            first = min((a.escalated_at or a.detected_at) for a in crit)
            late = _minutes(first, onset)
            out.add("pbx critical (min after onset)", f"{late:.1f}", late <= 15)
        else:
            out.add("pbx critical (min after onset)", "none", False)
        out.add("pbx over limit (calls)", *_pbx_enforced(records, policy, pbx))

    voip = _scenario(truth, "voip-hack")
    if voip:
        fraud = [by_id[i] for i in voip["record_ids"] if i in by_id]
        fraud.sort(key=lambda r: (r.end, r.record_id))
        mine = [a for a in alerts if a.account == voip["account"]]
        if mine:
            first_at = min(a.detected_at for a in mine)
            nth = 1 + sum(1 for r in fraud if r.end < first_at)
            out.add("voip first alert (nth call)", str(nth), nth <= 3)
        else:
            out.add("voip first alert (nth call)", "none", False)

    if prs:
        within = pumped_at_alert is not None and pumped_at_alert <= 1000
        seen = "none" if pumped_at_alert is None else str(pumped_at_alert)
        out.add("prs pumped calls to critical", seen, within)
        normal_prs = set(prs["normal_premium_numbers"])
        hits = sum(1 for a in alerts if a.subject in normal_prs)
        out.add("alerts on normal PRS numbers", str(hits), hits == 0)

    for name in ("wangiri", "sequential"):
        sc = _scenario(truth, name)
        if sc:
            onset_at = datetime.fromisoformat(sc["onset"])
            involved = {sc["account"], *sc.get("victim_accounts", [])}
            found = [a for a in alerts if a.account in involved and a.detected_at >= onset_at]
            first_hit = min((a.detected_at for a in found), default=None)
            out.add(
                f"{name} first alert (min after onset)",
                "none" if first_hit is None else f"{_minutes(first_hit, onset_at):.1f}",
            )

    involved_accounts = {s["account"] for s in truth["scenarios"]} | {
        v for s in truth["scenarios"] for v in s.get("victim_accounts", [])
    }
    normal = [a for a in truth["accounts"] if a not in involved_accounts]
    out.account_days_normal = len(normal) * days
    out.criticals_normal = sum(
        1 for a in alerts if a.account in normal and a.severity == "critical"
    )
    out.warnings_normal = sum(1 for a in alerts if a.account in normal and a.severity == "warning")
    out.add("normal criticals", str(out.criticals_normal), out.criticals_normal == 0)
    per_100 = 100.0 * out.warnings_normal / max(out.account_days_normal, 1)
    out.add("normal warnings / 100 account-days", f"{per_100:.2f}", per_100 <= 1.0)
    return out


def _pbx_enforced(
    records: list[CallRecord], policy: Policy, pbx: dict[str, Any]
) -> tuple[str, bool]:
    """Replay with enforcement: the largest day's spend of the hacked account over its
    daily limit, in calls of that day (0 when within the limit)."""
    account = pbx["account"]
    limit = Decimal(pbx["policy_limits"]["max_spend_per_day"])
    engine = Engine(policy, enforce=True)
    tz = engine.context(account).tz
    spend: dict[Any, Decimal] = {}
    costs: dict[Any, list[Decimal]] = {}
    for rec in records:
        if rec.account == account and not engine.is_refused(rec):
            day = rec.end.astimezone(tz).date()
            cost = rec.cost or Decimal(0)
            spend[day] = spend.get(day, Decimal(0)) + cost
            costs.setdefault(day, []).append(cost)
        engine.process(rec)
    worst = 0
    for day, total in spend.items():
        over = 0
        for cost in sorted(costs[day], reverse=True):  # the day's largest calls first
            if total <= limit:
                break
            total -= cost
            over += 1
        worst = max(worst, over)
    return str(worst), worst <= 1


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
    results: list[SeedResult] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in _seeds(args.seeds):
            res = evaluate(
                seed, args.accounts, args.days, args.scale, Path(tmp), args.scenario, args.format
            )
            results.append(res)
            print(f"seed {seed}: " + "; ".join(f"{k} {v}" for k, v in res.figures.items()))
    failed = [r for r in results if r.failures]
    crit = sum(r.criticals_normal for r in results)
    warn = sum(r.warnings_normal for r in results)
    days = sum(r.account_days_normal for r in results)
    print(
        f"{len(results) - len(failed)} of {len(results)} seeds meet every target; "
        f"normal accounts: {crit} critical, {100.0 * warn / max(days, 1):.2f} warnings "
        f"per 100 account-days over {days:,} account-days"
    )
    for r in failed:
        print(f"seed {r.seed} missed: {', '.join(r.failures)}")


if __name__ == "__main__":
    main()
