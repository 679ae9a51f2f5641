"""The issue's must-show figures through the product's own path, over seeds and
variations: the simulator's files read, numbered and rated as ``scan`` does, the engine
with its default priors (no calibration), checked against the ground truth by
``tollguard evaluate`` (``bench.eval_detection`` prints the same over many more seeds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.eval_detection import evaluate
from tests.core.test_scan import _cli
from tollguard.cli import _register, app


@pytest.mark.parametrize(
    ("seed", "days", "scale", "fmt"),
    [(13, 30, 0.02, "asterisk"), (34, 45, 0.05, "freeswitch")],
)
def test_every_scenario_meets_its_target(
    tmp_path: Path, seed: int, days: int, scale: float, fmt: str
) -> None:
    res = evaluate(seed, accounts=40, days=days, scale=scale, work=tmp_path, fmt=fmt)
    assert not res.failures, res.to_dict()
    # every scenario was evaluated, and the normal accounts were many
    names = [c.name for c in res.checks]
    for prefix in ("pbx-hack", "voip-hack", "prs-pumping", "wangiri", "sequential"):
        assert any(n.startswith(prefix) for n in names), (prefix, names)
    assert res.account_days_normal >= 30 * days
    assert res.criticals_normal == 0


def test_evaluate_command_reports_and_fails_on_a_missed_target(tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    code, _ = _cli("simulate", str(sim), "-s", "voip-hack", "--days", "14", "--accounts", "20")
    assert code == 0
    code, out = _cli("evaluate", str(sim), "--json")
    assert code == 0
    result = json.loads(out)
    (voip,) = [c for c in result["checks"] if c["name"].startswith("voip-hack")]
    assert voip["ok"] is True and int(voip["value"]) <= 3
    assert result["failures"] == []
    # the same traffic with the detectors that catch it switched off: a missed target
    off = {d: {"enabled": False} for d in ("destination", "unusual_hours", "deviation")}
    lines = [f"[defaults.detectors.{d}]\nenabled = false\n" for d in off]
    blind = sim / "blind.toml"  # beside its rate deck
    blind.write_text((sim / "policy.toml").read_text() + "\n" + "\n".join(lines))
    code, out = _cli("evaluate", str(sim), "--policy", str(blind))
    assert code == 1
    assert "missed" in out and "voip-hack" in out


def test_evaluate_command_says_what_is_wrong_with_its_input(tmp_path: Path) -> None:
    _register()
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", str(tmp_path)])
    # exit 2: the input is wrong (1 means a missed target)
    assert res.exit_code == 2 and "has no truth.json" in " ".join(res.output.split())
    (tmp_path / "truth.json").write_text("{}")
    (tmp_path / "policy.toml").write_text('[defaults]\ncountry = "NL"\n')
    res = runner.invoke(app, ["evaluate", str(tmp_path)])
    assert res.exit_code == 2 and "has no 'files'" in " ".join(res.output.split())
