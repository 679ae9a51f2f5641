"""`scan --history`: detection learns from earlier files first, as a tollguard that had
been running would have, without counting their calls or reporting their alerts."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.core.test_scan import _cli

CUT = "2026-10-11 00:00:00"  # local time in the simulator's Master.csv
END_COLUMN = 11  # Asterisk Master.csv: start, answer, end are columns 9-11


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("month")
    code, out = _cli(
        "simulate", str(folder), "--days", "21", "--accounts", "30", "--scale", "0.01",
        "--seed", "8",
    )  # fmt: skip
    assert code == 0, out
    with (folder / "Master.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    with (
        (folder / "before.csv").open("w", newline="") as before,
        (folder / "after.csv").open("w", newline="") as after,
    ):
        early, late = csv.writer(before), csv.writer(after)
        for row in rows:
            (early if row[END_COLUMN] < CUT else late).writerow(row)
    return folder


def _scan(*args: str) -> dict[str, object]:
    code, out = _cli("scan", *args, "--json")
    assert code == 0, out
    data: dict[str, object] = json.loads(out)
    return data


def test_history_gives_the_alerts_of_one_long_scan(month: Path) -> None:
    policy = str(month / "policy.toml")
    whole = _scan(str(month / "before.csv"), str(month / "after.csv"), "--policy", policy)
    later = _scan(str(month / "after.csv"), "--history", str(month / "before.csv"),
                  "--policy", policy)  # fmt: skip
    alone = _scan(str(month / "after.csv"), "--policy", policy)

    # the history's calls are not counted: the totals are those of the scanned file
    assert later["records"] == alone["records"]
    assert later["cost"] == alone["cost"]
    history = later["history"]
    assert isinstance(history, dict)
    assert history["records"] + later["records"] == whole["records"]  # type: ignore[operator]
    assert history["scanned_records_before_its_end"] == 0

    # alerts that began after the cut (past the 12 h in which a situation stays open)
    # are exactly those of one scan over both files: same ids, records, cost, evidence
    cut_utc = datetime.fromisoformat("2026-10-10T22:00:00+00:00") + timedelta(hours=12)

    def after_cut(result: dict[str, object]) -> list[dict[str, object]]:
        alerts = result["alerts"]
        assert isinstance(alerts, list)
        return sorted(
            (a for a in alerts if datetime.fromisoformat(a["started_at"]) >= cut_utc),
            key=lambda a: a["id"],
        )

    expected = after_cut(whole)
    assert len(expected) >= 3  # the month's frauds come after the cut
    assert after_cut(later) == expected
    # no alert of the history is reported
    reported = later["alerts"]
    assert isinstance(reported, list)
    assert all(
        datetime.fromisoformat(a["detected_at"]) >= cut_utc - timedelta(hours=12) for a in reported
    )
    # without the history the same file starts cold: it is not the same
    assert after_cut(alone) != expected


def test_history_must_come_first_and_needs_detection(month: Path) -> None:
    policy = str(month / "policy.toml")
    swapped = _scan(str(month / "before.csv"), "--history", str(month / "after.csv"),
                    "--policy", policy)  # fmt: skip
    history = swapped["history"]
    assert isinstance(history, dict) and history["scanned_records_before_its_end"] > 0
    code, _ = _cli("scan", str(month / "after.csv"), "--history", str(month / "before.csv"),
                   "--no-detect", "--policy", policy)  # fmt: skip
    assert code == 2
    code, _ = _cli("scan", str(month / "after.csv"), "--history", str(month / "nope.csv"))
    assert code == 2
