"""Calibration: `tollguard calibrate` learns priors from history (not from its hack), the
policy's `priors` reaches every engine, and a broken priors file is a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLES
from tests.core.test_scan import _cli
from tollguard.cli import _register, app
from tollguard.detect.engine import Engine
from tollguard.detect.priors_file import read_priors, write_priors
from tollguard.detect.signature import Priors
from tollguard.policy import load_policy
from tollguard.scan import scan_records


@pytest.fixture(scope="module")
def hacked_history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two weeks of 12 businesses, one of whose PBX is hacked to Timor-Leste."""
    folder = tmp_path_factory.mktemp("history")
    code, out = _cli(
        "simulate", str(folder), "-s", "pbx-hack", "--days", "14", "--accounts", "12"
    )  # fmt: skip
    assert code == 0, out
    return folder


def test_calibrate_learns_the_history_but_not_its_hack(hacked_history: Path) -> None:
    out = hacked_history / "priors.json"
    policy = hacked_history / "policy.toml"
    code, text = _cli(
        "calibrate", str(hacked_history / "Master.csv"), "--policy", str(policy),
        "--out", str(out), "--json",
    )  # fmt: skip
    assert code == 0, text
    report = json.loads(text)
    hacked = json.loads((hacked_history / "truth.json").read_text())["scenarios"][0]["account"]
    # the hack went critical, its records were left out, and only its account's
    assert set(report["excluded_by_account"]) == {hacked}
    assert report["excluded_records"] > 1000
    assert report["learned_records"] + report["excluded_records"] == report["records"]
    assert report["alerts_by_account"][hacked]["critical"] >= 1
    assert any("critical findings were not learned" in c for c in report["cautions"])

    priors = read_priors(out)
    # learned from everything, Timor-Leste would be 'a country the population calls'
    pol = load_policy(policy)
    naive = Priors.learn(
        scan_records([hacked_history / "Master.csv"], pol), lambda a: pol.account(a).timezone
    )
    assert naive.country_share["TL"] > 0.1
    assert "TL" not in priors.country_share
    assert priors.country_share["NL"] > 0.9
    # the shape is business hours: the busiest hour is a weekday morning or afternoon
    busiest = max(range(168), key=lambda h: priors.shape[h])
    assert busiest < 5 * 24 and 8 <= busiest % 24 <= 17
    assert priors.level != Priors.default().level
    # the file says what it was learned from
    doc = json.loads(out.read_text())
    assert doc["tollguard_priors"] == 1
    assert doc["calibration"]["records"] == report["records"]


def test_the_policys_priors_reach_the_engine_and_a_scan(hacked_history: Path) -> None:
    learned = Priors(level=1.25, country_share={"NL": 0.9, "DE": 0.1})
    write_priors(hacked_history / "p2.json", learned, {"note": "test"})
    text = (hacked_history / "policy.toml").read_text()
    assert "[defaults]\n" in text
    with_priors = hacked_history / "with-priors.toml"
    # a path relative to the policy file, as rate decks are
    with_priors.write_text(text.replace("[defaults]\n", '[defaults]\npriors = "p2.json"\n', 1))
    engine = Engine(load_policy(with_priors))
    assert engine.priors.level == 1.25
    assert engine.priors.country_share == {"NL": 0.9, "DE": 0.1}
    assert Engine(load_policy(hacked_history / "policy.toml")).priors == Priors.default()
    code, out = _cli(
        "scan", str(hacked_history / "Master.csv"), "--policy", str(with_priors), "--json"
    )  # fmt: skip
    assert code == 0
    assert json.loads(out)["alerts"]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "No such file"),
        ("{not json", "is not JSON"),
        ('{"tollguard_priors": 7, "priors": {}}', "has format 7"),
        ('{"tollguard_priors": 1, "calibration": {}}', "has no 'priors' object"),
        ('{"level": 0.3, "colour": "red"}', "unknown priors field(s): colour"),
        ('{"level": "high"}', "level must be a number"),
        ('{"level": -1}', "must be a finite number >= 0"),
        ('{"half_life_days": 0}', "half_life_days must be above 0"),
        ('{"shape": [1, 2]}', "needs 168 values"),
        ('{"country_share": ["NL"]}', "country_share must be an object"),
    ],
)
def test_a_broken_priors_file_is_a_clear_error(
    tmp_path: Path, content: str | None, says: str
) -> None:
    path = tmp_path / "priors.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match="tollguard calibrate") as err:
        read_priors(path)
    assert says in str(err.value) and str(path) in str(err.value)
    # named by a policy, every command refuses it up front (exit 2), saying which key
    (tmp_path / "policy.toml").write_text('[defaults]\npriors = "priors.json"\n')
    (tmp_path / "cdr.csv").write_text("")
    _register()
    res = CliRunner().invoke(
        app, ["scan", str(tmp_path / "cdr.csv"), "--policy", str(tmp_path / "policy.toml")]
    )
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "policy defaults.priors:" in said and says in said
    assert "under [defaults]" in said


def test_a_bare_priors_object_is_read_too(tmp_path: Path) -> None:
    """What docs/detection.md's Python example writes: ``Priors.to_dict()`` alone."""
    path = tmp_path / "bare.json"
    path.write_text(json.dumps(Priors(level=0.7).to_dict()))
    assert read_priors(path).level == 0.7


def test_calibrate_says_what_is_wrong(tmp_path: Path) -> None:
    code, _ = _cli("calibrate", str(tmp_path / "missing.csv"))
    assert code == 2
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    code, _ = _cli("calibrate", str(empty), "--out", str(tmp_path / "p.json"))
    assert code == 2
    assert not (tmp_path / "p.json").exists()  # nothing learned, nothing written


def test_a_few_hours_of_one_pbx_are_not_written_without_force(tmp_path: Path) -> None:
    """A real Asterisk sample (under a day, one account, no rate deck): priors from it
    would make one PBX's few hours everyone's normal."""
    sample = SAMPLES / "asterisk" / "newcdrcolumns.csv"
    out = tmp_path / "priors.json"
    args = ["calibrate", str(sample), "--country", "NL", "--timezone", "Europe/Amsterdam"]
    _register()
    res = CliRunner().invoke(app, [*args, "--out", str(out)])
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "days of history" in said and "--force" in said
    assert not out.exists()
    code, text = _cli(*args, "--out", str(out), "--force", "--json")
    assert code == 0, text
    report = json.loads(text)
    assert report["records"] > 0 and report["priced_records"] == 0
    assert any("no call was priced" in c for c in report["cautions"])
    assert read_priors(out).cost_mean == Priors.default().cost_mean


def test_the_human_report_says_what_to_put_in_the_policy(hacked_history: Path) -> None:
    code, text = _cli(
        "calibrate", str(hacked_history / "Master.csv"), "--policy",
        str(hacked_history / "policy.toml"), "--out", str(hacked_history / "human.json"),
    )  # fmt: skip
    said = " ".join(text.split())
    assert code == 0
    assert "What detection would have raised on this history" in said
    assert "records in critical findings left out" in said and "busiest" in said
    assert "under [defaults] in" in said and 'priors = "human.json"' in said
