"""High-risk list: bundled content, matching rules, overrides."""

from __future__ import annotations

import random
from pathlib import Path

import polars as pl
import pytest

from tollguard.numbering.classify import NumberClassifier
from tollguard.numbering.risk import RiskEntry, RiskList, RiskListError
from tollguard.numbering.types import NumberType

HEADER = "id,kind,value,reason,source\n"


def test_bundled_list_is_documented_and_covers_the_usual_suspects() -> None:
    risks = RiskList.bundled()
    assert len(risks) >= 50
    for entry in risks.entries:
        assert entry.reason and entry.source, entry.id
    countries = {e.value for e in risks.entries if e.kind == "country"}
    assert {
        "TL",
        "SO",
        "ZW",
        "CU",
        "GN",
        "SL",
        "LR",
        "PG",
        "NR",
        "TV",
        "CK",
        "NU",
        "TK",
        "ST",
        "IO",
        "ER",
        "MV",
        "KM",
        "GM",
        "GW",
    } <= countries
    prefixes = {e.value for e in risks.entries if e.kind == "prefix"}
    assert {"870", "881", "882", "883", "37190", "3879"} <= prefixes
    assert "ECLI:NL:RBMNE:2014:2617" in risks.get("tl").source  # type: ignore[union-attr]


def test_longest_prefix_wins_over_country() -> None:
    risks = RiskList.bundled()
    assert risks.match("+67077231234", "TL").id == "tl"  # type: ignore[union-attr]
    assert risks.match("+67090123456", "TL").id == "tl-prs"  # type: ignore[union-attr]
    assert risks.match("+37190123456", "LV").id == "lv-prs"  # type: ignore[union-attr]
    assert risks.match("+37121234567", "LV") is None  # ordinary Latvian number
    assert risks.match("+881612345678", "001").id == "sat-881"  # type: ignore[union-attr]
    assert risks.match("+18765550123", "JM").id == "jm"  # type: ignore[union-attr]
    assert risks.match("+12125550123", "US") is None
    assert risks.match("+31201234567", None) is None
    assert risks.match("+25261234567", None) is None  # country unknown: prefixes only
    custom = RiskList(
        [
            RiskEntry("a", "prefix", "3712", "short", "test"),
            RiskEntry("b", "prefix", "371234", "long", "test"),
            RiskEntry("c", "country", "LV", "country", "test"),
        ]
    )
    assert custom.match("+37123456789", "LV").id == "b"  # type: ignore[union-attr]
    assert custom.match("+37122222222", "LV").id == "a"  # type: ignore[union-attr]
    assert custom.match("+37190000000", "LV").id == "c"  # type: ignore[union-attr]


def test_override_replaces_adds_and_removes(tmp_path: Path) -> None:
    override = tmp_path / "risk.csv"
    override.write_text(
        "id,kind,value,reason,source,enabled\n"
        "tl,country,TL,our own reason,ops team,\n"
        "nl-prs-906,prefix,+31906,,,false\n"
        "sat-870,remove,,,,\n"
        "be-prs,prefix,+32 90,Belgian premium,ops team,true\n",
        encoding="utf-8",
    )
    risks = RiskList.merged(override)
    assert risks.get("tl") == RiskEntry("tl", "country", "TL", "our own reason", "ops team")
    assert risks.get("nl-prs-906") is None
    assert risks.get("sat-870") is None
    assert risks.match("+3190612345", "NL") is None
    assert risks.match("+870301234567", "001") is None
    assert risks.match("+3290123456", "BE").id == "be-prs"  # type: ignore[union-attr]
    assert len(risks) == len(RiskList.bundled()) - 2 + 1
    # The classifier reports the override's reason.
    info = NumberClassifier(risks).classify("+67077231234")
    assert (info.risk, info.risk_reason) == ("tl", "our own reason")


def test_load_only_the_given_file(tmp_path: Path) -> None:
    path = tmp_path / "only.csv"
    path.write_text(HEADER + "x,prefix,+44 70,personal,ops\n", encoding="utf-8")
    risks = RiskList.load(path)
    assert [e.value for e in risks.entries] == ["4470"]
    assert RiskList.load(path).to_csv() == HEADER + "x,prefix,4470,personal,ops\n"
    assert RiskList.merged(None).entries == RiskList.bundled().entries


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a,city,Amsterdam,r,s", "kind"),
        ("a,country,Netherlands,r,s", "ISO alpha-2"),
        ("a,prefix,0031,r,s", "E.164 digits"),
        ("a,prefix,+31x,r,s", "E.164 digits"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "ok,country,NL,r,s\n" + row + "\n", encoding="utf-8")
    with pytest.raises(RiskListError, match=message) as err:
        RiskList.load(path)
    assert f"{path}:3" in str(err.value)


def test_duplicate_ids_and_missing_columns_are_errors(tmp_path: Path) -> None:
    dup = tmp_path / "dup.csv"
    dup.write_text(HEADER + "a,country,NL,r,s\na,country,BE,r,s\n", encoding="utf-8")
    with pytest.raises(RiskListError, match="duplicate"):
        RiskList.load(dup)
    nocols = tmp_path / "nocols.csv"
    nocols.write_text("name,value\nx,NL\n", encoding="utf-8")
    with pytest.raises(RiskListError, match="missing column"):
        RiskList.load(nocols)


def test_classifier_flags_satellite_and_irsf_destinations() -> None:
    c = NumberClassifier()
    sat = c.classify("+881612345678")
    assert (sat.country, sat.number_type, sat.risk) == ("001", NumberType.SATELLITE, "sat-881")
    so = c.classify("+252612345678")
    assert so.country == "SO" and so.risk == "so" and so.risk_reason


def test_match_series_agrees_with_match() -> None:
    rng = random.Random(11)
    extra = [
        RiskEntry("one", "prefix", "7", "whole +7", "test"),  # shorter than 3 digits
        RiskEntry("long", "prefix", "4470123", "long prefix", "test"),
    ]
    for risks in (RiskList.bundled(), RiskList.bundled().with_overrides(extra), RiskList()):
        heads = ["31906", "4470", "4470123", "449", "1876", "670", "67090", "7", "881", "49"]
        digits: list[str | None] = [
            rng.choice(heads) + "".join(str(rng.randrange(10)) for _ in range(rng.randrange(7)))
            for _ in range(3000)
        ]
        digits += [None, "", "4"]
        countries = [rng.choice(["TL", "NL", "GB", None, "001", "SO"]) for _ in digits]
        got = risks.match_series(
            pl.Series(digits, dtype=pl.String), pl.Series(countries, dtype=pl.String)
        ).to_list()
        expected = []
        for d, c in zip(digits, countries, strict=True):
            entry = risks.match(d, c) if d is not None else risks.match("", c)
            expected.append(entry.id if entry is not None else None)
        assert got == expected
