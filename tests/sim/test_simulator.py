"""The traffic simulator: determinism, file layouts, ground truth and traffic shape."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tollguard.cdr.model import Disposition
from tollguard.policy import load_policy
from tollguard.sim import RATES_HEADER, Simulation, generate_calls, simulate
from tollguard.sim.calendar import dutch_holidays, easter_sunday

AMS = ZoneInfo("Europe/Amsterdam")
TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
# start, answer (quoted, or bare empty), end, duration, billsec, disposition, amaflags,
# uniqueid, userfield
LAYOUT_TAIL = re.compile(
    r'","(\d{4}-[^"]*)",(|"[^"]*"),"[^"]*",\d+,\d+,"[A-Z ]+","DOCUMENTATION","[^"]+",""$'
)
SMALL = {"days": 21, "accounts": 8, "scale": 0.002}


def _local(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S")


@pytest.fixture(scope="module")
def ast_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ast")
    simulate(out, ["all"], seed=11, **SMALL)  # type: ignore[arg-type]
    return out


@pytest.fixture(scope="module")
def fs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fs")
    simulate(out, ["all"], seed=11, fmt="freeswitch", **SMALL)  # type: ignore[arg-type]
    return out


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


# -- determinism ---------------------------------------------------------------------------


def test_same_seed_gives_identical_files(tmp_path: Path, ast_dir: Path) -> None:
    simulate(tmp_path, ["all"], seed=11, **SMALL)  # type: ignore[arg-type]
    for name in ("Master.csv", "rates.csv", "policy.toml", "truth.json"):
        assert (tmp_path / name).read_bytes() == (ast_dir / name).read_bytes(), name


def test_other_seed_differs(tmp_path: Path, ast_dir: Path) -> None:
    simulate(tmp_path, ["all"], seed=12, **SMALL)  # type: ignore[arg-type]
    assert (tmp_path / "Master.csv").read_bytes() != (ast_dir / "Master.csv").read_bytes()
    a = json.loads((ast_dir / "truth.json").read_text())
    b = json.loads((tmp_path / "truth.json").read_text())
    assert [s["params"] for s in a["scenarios"]] != [s["params"] for s in b["scenarios"]]


# -- file layouts ----------------------------------------------------------------------------


def test_asterisk_master_csv_layout(ast_dir: Path) -> None:
    raw = (ast_dir / "Master.csv").read_text(encoding="utf-8").splitlines()
    rows = _rows(ast_dir / "Master.csv")
    assert len(rows) == len(raw) > 1000
    assert not raw[0].startswith('"accountcode"')  # no header
    dispositions: Counter[str] = Counter()
    for line, row in zip(raw, rows, strict=True):
        assert len(row) == 18
        # strings quoted, duration and billsec bare integers, empty answer bare (",,")
        assert LAYOUT_TAIL.search(line), line
        start, answer, end = row[9], row[10], row[11]
        assert TIME.match(start) and TIME.match(end)
        duration, billsec = int(row[12]), int(row[13])
        dispositions[row[14]] += 1
        if row[14] == "ANSWERED":
            assert TIME.match(answer) and billsec >= 0
        else:
            assert answer == "" and billsec == 0 and ",," in line
        assert duration >= billsec
        assert row[5].startswith("SIP/") and re.match(r"^SIP/.+-[0-9a-f]{8}$", row[5])
        assert re.match(r"^\d+\.\d+$", row[16])
    assert set(dispositions) <= {"ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION"}
    assert dispositions["ANSWERED"] > dispositions["NO ANSWER"] > 0
    assert len({r[16] for r in rows}) == len(rows)  # unique ids


def test_caller_id_with_name_is_quoted_like_asterisk(ast_dir: Path) -> None:
    raw = (ast_dir / "Master.csv").read_text(encoding="utf-8")
    assert re.search(r',"""[A-Z][^"]*"" <0\d+>",', raw)


def test_freeswitch_example_template_layout(fs_dir: Path) -> None:
    raw = (fs_dir / "Master.csv").read_text(encoding="utf-8").splitlines()
    rows = _rows(fs_dir / "Master.csv")
    assert len(rows) == len(raw) > 1000
    uuid_re = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    for line, row in zip(raw, rows, strict=True):
        assert len(row) == 15
        assert line.startswith('"') and line.endswith('"') and line.count('","') == 14
        assert TIME.match(row[4]) and TIME.match(row[6])
        if row[9] == "NORMAL_CLEARING":
            assert TIME.match(row[5]) and uuid_re.match(row[11])
        else:
            assert row[5] == "" and row[8] == "0" and row[11] == ""
        assert uuid_re.match(row[10])
        assert int(row[7]) >= int(row[8]) >= 0


def test_local_times_are_amsterdam_and_cross_dst(tmp_path: Path) -> None:
    # the last Sunday of October 2026 is the 25th: 03:00 CEST becomes 02:00 CET
    sim = Simulation(["normal"], days=30, seed=3, accounts=5)
    calls = list(sim.records())
    assert all(c.start.tzinfo is not None for c in calls)
    offsets = {c.start.astimezone(AMS).utcoffset() for c in calls}
    assert len(offsets) == 2


# -- ground truth ----------------------------------------------------------------------------


def test_truth_matches_the_file(ast_dir: Path) -> None:
    truth = json.loads((ast_dir / "truth.json").read_text())
    rows = _rows(ast_dir / "Master.csv")
    by_uid = {r[16]: r for r in rows}
    assert truth["total_calls"] == len(rows) == sum(truth["calls_by_scenario"].values())
    assert {s["scenario"] for s in truth["scenarios"]} == {
        "pbx-hack", "voip-hack", "prs-pumping", "wangiri", "sequential"
    }  # fmt: skip
    fraud_ids: set[str] = set()
    for sc in truth["scenarios"]:
        assert sc["calls"] == len(sc["record_ids"]) > 0
        assert datetime.fromisoformat(sc["onset"]) <= datetime.fromisoformat(sc["end"])
        assert datetime.fromisoformat(sc["onset"]).utcoffset() is not None
        uids = [rid.split(":", 1)[1] for rid in sc["record_ids"]]
        assert all(rid.startswith("asterisk-csv:") for rid in sc["record_ids"])
        assert all(u in by_uid for u in uids)
        fraud_ids.update(uids)
        accounts = Counter(by_uid[u][0] for u in uids)
        if sc["scenario"] != "wangiri":
            assert set(accounts) == {sc["account"]}
        else:  # rings on the transit trunk, callbacks from the victims' accounts
            assert set(accounts) <= {sc["account"], *sc["victim_accounts"]}
        assert sc["account"] not in truth["normal_accounts"]
        assert sc["subject_numbers"]
    # no normal account has a fraudulent call
    normal = set(truth["normal_accounts"])
    assert not any(by_uid[u][0] in normal for u in fraud_ids)
    assert len(fraud_ids) == sum(s["calls"] for s in truth["scenarios"])


def test_generate_calls_is_the_file(ast_dir: Path) -> None:
    rows = _rows(ast_dir / "Master.csv")
    records = list(generate_calls(["all"], seed=11, **SMALL))  # type: ignore[arg-type]
    assert len(records) == len(rows)
    ends = [r.end for r in records]
    assert ends == sorted(ends)
    for rec, row in zip(records, rows, strict=True):
        assert rec.record_id == f"asterisk-csv:{row[16]}"
        assert rec.account == row[0] and rec.caller == row[1] and rec.callee == row[2]
        assert rec.start.astimezone(AMS).strftime("%Y-%m-%d %H:%M:%S") == row[9]
        assert rec.end.astimezone(AMS).strftime("%Y-%m-%d %H:%M:%S") == row[11]
        assert rec.duration == int(row[12]) and rec.billsec == int(row[13])
        assert (rec.answer is None) == (row[10] == "")


# -- policy and rates -------------------------------------------------------------------------


def test_policy_loads_and_has_the_customer_limits(ast_dir: Path) -> None:
    policy = load_policy(ast_dir / "policy.toml")
    truth = json.loads((ast_dir / "truth.json").read_text())
    assert policy.defaults.country == "NL"
    assert policy.defaults.timezone == "Europe/Amsterdam"
    assert policy.defaults.currency == "EUR"
    assert policy.resolve_path(policy.defaults.rates or "").is_file()
    pbx = next(s for s in truth["scenarios"] if s["scenario"] == "pbx-hack")
    limits = policy.account(pbx["account"]).limits
    assert str(limits.max_spend_per_day) == "500.00"


def test_rate_deck(ast_dir: Path) -> None:
    rows = _rows(ast_dir / "rates.csv")
    assert tuple(rows[0]) == RATES_HEADER
    by_prefix = {r[0]: r for r in rows[1:]}
    assert len(by_prefix) == len(rows) - 1
    needed = (
        "31",
        "316",
        "31800",
        "31900",
        "31906",
        "31909",
        "1",
        "49",
        "670",
        "252",
        "263",
        "881",
    )
    for prefix in needed:
        assert prefix in by_prefix, prefix
    for r in rows[1:]:
        assert r[0].isdigit()
        assert re.match(r"^\d+\.\d{4}$", r[2]) and re.match(r"^\d+\.\d{4}$", r[3])
        assert re.match(r"^\d+/\d+$", r[5]) and r[6] == "2026-01-01"
    assert 0.95 <= float(by_prefix["670"][2]) <= 3.0 and float(by_prefix["67078"][2]) <= 3.0


# -- normal traffic shape ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def normal_month() -> tuple[Simulation, list]:  # type: ignore[type-arg]
    sim = Simulation(["normal"], days=40, seed=5, accounts=40, start=date(2027, 3, 29))
    return sim, list(sim.records())


def test_normal_accounts_sizes_and_numbers(normal_month: tuple[Simulation, list]) -> None:  # type: ignore[type-arg]
    sim, calls = normal_month
    truth = sim.truth()
    business = [a for a, info in truth["accounts"].items() if info["kind"] == "business"]
    assert len(business) >= 40
    per_day = {a: truth["accounts"][a]["calls_per_day"] for a in business}
    assert min(per_day.values()) < 10 and max(per_day.values()) > 250
    out = [c for c in calls if c.account in per_day]
    kinds = Counter(
        "mobile" if c.callee_e164.startswith("+316")  # type: ignore[union-attr]
        else "fixed" if c.callee_e164.startswith("+31")  # type: ignore[union-attr]
        else "intl"
        for c in out
    )  # fmt: skip
    assert kinds["fixed"] > kinds["mobile"] > kinds["intl"] > 0
    assert any(c.callee.startswith("0800") for c in out)
    assert any(c.callee.startswith(("0900", "0906")) for c in out)
    share = Counter(c.disposition for c in out)
    assert 0.6 < share[Disposition.ANSWERED] / len(out) < 0.8
    assert share[Disposition.BUSY] > 0 and share[Disposition.NO_ANSWER] > 0
    # callers come from the account's own DID block
    lo_hi = {a: truth["accounts"][a]["dids"] for a in business}
    assert all(lo_hi[c.account][0] <= c.caller_e164 <= lo_hi[c.account][1] for c in out[:5000])  # type: ignore[operator]


def test_normal_traffic_week_shape(normal_month: tuple[Simulation, list]) -> None:  # type: ignore[type-arg]
    _, calls = normal_month
    holidays = dutch_holidays(2027)
    by_hour: Counter[int] = Counter()
    weekday: Counter[date] = Counter()
    weekend: Counter[date] = Counter()
    holiday: Counter[date] = Counter()
    for c in calls:
        local = c.start.astimezone(AMS)
        day = local.date()
        if day in holidays:
            holiday[day] += 1
        elif local.weekday() >= 5:
            weekend[day] += 1
        else:
            weekday[day] += 1
            by_hour[local.hour] += 1
    mean_weekday = sum(weekday.values()) / len(weekday)
    mean_weekend = sum(weekend.values()) / len(weekend)
    assert mean_weekday > 4 * mean_weekend
    # Easter Monday, King's Day and Ascension fall in this window and are quiet
    assert {date(2027, 3, 29), date(2027, 4, 27), date(2027, 5, 6)} <= set(holiday)
    assert max(holiday.values()) < 0.4 * mean_weekday
    total = sum(by_hour.values())
    night = sum(by_hour[h] for h in range(0, 7))
    assert 0 < night / total < 0.02
    assert by_hour[12] < 0.7 * min(by_hour[10], by_hour[14])  # lunch dip
    assert by_hour[10] > by_hour[8] and by_hour[14] > by_hour[17]


def test_legitimate_surprises_are_reported(normal_month: tuple[Simulation, list]) -> None:  # type: ignore[type-arg]
    sim, calls = normal_month
    events = {e["kind"]: e for e in sim.truth()["legitimate_events"]}
    campaign = events["marketing-campaign"]
    per_day = Counter(
        c.start.astimezone(AMS).date().isoformat()
        for c in calls
        if c.account == campaign["account"] and (c.callee_e164 or "").startswith("+31")
    )
    others = [
        n
        for d, n in per_day.items()
        if d != campaign["date"] and date.fromisoformat(d).weekday() < 5
    ]
    assert per_day[campaign["date"]] > 2 * (sum(others) / len(others))
    trip = events["business-trip"]
    cc = "+81" if trip["country"] == "JP" else "+55"
    trip_calls = [
        c for c in calls if c.account == trip["account"] and (c.callee_e164 or "").startswith(cc)
    ]
    assert 0 < len(trip_calls) <= 4 * len(trip["dates"])


def test_easter() -> None:
    assert easter_sunday(2026) == date(2026, 4, 5)
    assert easter_sunday(2027) == date(2027, 3, 28)
    assert dutch_holidays(2027)[date(2027, 5, 6)] == "Hemelvaartsdag"
