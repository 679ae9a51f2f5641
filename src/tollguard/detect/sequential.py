"""sequential: consecutive or near-consecutive B-numbers dialed (range dialing).

Fraudsters test which numbers of an IRSF range are live by dialing them in order
(+25261xxxxx00, 01, 02 ...), often as short failed calls, before pumping the live ones.
Per account, the numbers dialed in the last ``options.window_minutes`` (30) are grouped
by 100-number block (all digits but the last two); the measure is the longest run of
distinct numbers whose last two digits are at most ``options.max_step`` (2) apart.

Only calls abroad, to high-risk ranges or to premium-rate/satellite/personal numbers
count (``options.scope = "international"``; set ``"all"`` to include domestic numbers:
predictive dialers legitimately dial sorted lists, and one-ring floods hit consecutive
DIDs, which ``wangiri`` reports).

Thresholds: warning ``run`` 6, critical ``run`` 12. Subject: the block ("+2526123456"),
kind "prefix". The situation follows the block while the run keeps growing. On critical,
enforcement blocks calls to the block (the live numbers found are pumped next).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar

from tollguard.cdr.model import CallRecord
from tollguard.detect.alert import Severity
from tollguard.detect.base import AccountContext, BaseDetector, Finding, Tally, money, thresholds


@dataclass(slots=True)
class _Block:
    seen: dict[int, float]  # last two digits -> last time dialed (epoch s)
    tally: Tally
    run: int = 0
    severity: Severity | None = None


_RISKY_TYPES = {"PREMIUM_RATE", "SATELLITE", "SHARED_COST", "UAN", "PERSONAL_NUMBER"}


def longest_run(values: list[int], max_step: int) -> int:
    """Length of the longest chain of sorted distinct values with gaps <= max_step."""
    if not values:
        return 0
    values = sorted(values)
    best = cur = 1
    for a, b in itertools.pairwise(values):
        if b - a <= max_step:
            cur += 1
            best = max(best, cur)
        else:
            cur = 1
    return best


class SequentialDetector(BaseDetector):
    name = "sequential"
    default_warning: ClassVar[dict[str, float]] = {"run": 6}
    default_critical: ClassVar[dict[str, float]] = {"run": 12}
    default_options: ClassVar[dict[str, Any]] = {
        "window_minutes": 30,
        "max_step": 2,
        "max_blocks": 512,
        "scope": "international",
        "known_prefixes": [],
    }

    def observe(self, record: CallRecord, ctx: AccountContext) -> list[Finding]:
        number = record.callee_e164
        if not number or len(number) < 8 or not number[-2:].isdigit():
            return []
        settings = ctx.cur if ctx.cur is not None else ctx.settings(self)
        opts = settings.options
        if opts["scope"] == "international" and not (
            record.risk
            or (record.country and record.country != ctx.home)
            or record.number_type in _RISKY_TYPES
        ):
            return []
        known = opts["known_prefixes"]
        if known and number.startswith(tuple(known)):
            return []  # a tuning record: this range is known for this account
        blocks: dict[str, _Block] = ctx.state.setdefault(self.name, {})
        key, last2 = number[:-2], int(number[-2:])
        now = ctx.end_ts
        horizon = now - 60.0 * float(opts["window_minutes"])
        blk = blocks.get(key)
        if blk is not None:
            stale = [d for d, t in blk.seen.items() if t < horizon]
            for d in stale:
                del blk.seen[d]
            if not blk.seen:
                blk = None
        if blk is None:
            blk = blocks[key] = _Block({}, Tally(record.start))
            if len(blocks) > 16:  # forget blocks not dialed within the window
                self._prune(blocks, horizon, key)
            while len(blocks) > int(opts["max_blocks"]):
                blocks.pop(next(iter(blocks)))
        blk.seen[last2] = now
        blk.tally.add(record, ctx)
        if len(blk.seen) < settings.warning["run"] and blk.severity is None:
            return []
        run = longest_run(list(blk.seen), int(opts["max_step"]))
        blk.run = max(blk.run, run)
        sev: Severity | None = None
        if blk.run >= settings.critical["run"]:
            sev = "critical"
        elif blk.run >= settings.warning["run"]:
            sev = "warning"
        if sev == "critical" or (sev == "warning" and blk.severity is None):
            blk.severity = sev
        if blk.severity is None:
            return []
        cur = ctx.policy.currency
        answered = "" if not blk.tally.cost else f", costing {cur} {money(blk.tally.cost)}"
        why = (
            f"{blk.run} consecutive numbers of the block {key}xx dialed within "
            f"{opts['window_minutes']} min ({blk.tally.calls} calls{answered}): range dialing, "
            "typically testing which numbers are live before pumping them"
        )
        return [
            Finding(
                subject=key,
                subject_kind="prefix",
                severity=blk.severity,
                started_at=blk.tally.started_at,
                records=blk.tally.calls,
                cost=blk.tally.cost,
                prior_ids=blk.tally.prior(),
                block="prefix",
                explanation={
                    "parameter": "sequential_numbers",
                    "value": blk.run,
                    "threshold": thresholds(settings, "run"),
                    "why": why,
                },
            )
        ]

    @staticmethod
    def _prune(blocks: dict[str, _Block], horizon: float, keep: str) -> None:
        for k in list(blocks):
            if k != keep and all(t < horizon for t in blocks[k].seen.values()):
                del blocks[k]
