"""The issue's must-show figures through the product's own path, over seeds and
variations: the simulator's files read, numbered and rated as ``scan`` does, the engine
with its default priors (no calibration), checked against the ground truth by
``bench.eval_detection`` (which prints the same figures over many more seeds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.eval_detection import evaluate


@pytest.mark.parametrize(
    ("seed", "days", "scale", "fmt"),
    [(13, 30, 0.02, "asterisk"), (34, 45, 0.05, "freeswitch")],
)
def test_every_scenario_meets_its_target(
    tmp_path: Path, seed: int, days: int, scale: float, fmt: str
) -> None:
    res = evaluate(seed, accounts=40, days=days, scale=scale, work=tmp_path, fmt=fmt)
    assert not res.failures, res.figures
    # every scenario was evaluated, and the normal accounts were many
    for name in ("pbx critical", "pbx over limit", "voip first alert", "prs pumped calls"):
        assert any(k.startswith(name) for k in res.figures), (name, res.figures)
    assert res.account_days_normal >= 30 * days
    assert res.criticals_normal == 0
