"""The fast path agrees with phonenumbers.parse + region_code_for_number + number_type."""

from __future__ import annotations

import random

import phonenumbers
import polars as pl
import pytest
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from tollguard.numbering import _bulk
from tollguard.numbering.classify import NumberClassifier
from tollguard.numbering.risk import RiskList
from tollguard.numbering.types import NumberType

_PN_TYPES = [
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER,
    PhoneNumberType.UAN,
    PhoneNumberType.VOICEMAIL,
]
_NAMES = {
    getattr(PhoneNumberType, t.name): t for t in NumberType if hasattr(PhoneNumberType, t.name)
}


def reference(e164: str) -> tuple[str | None, NumberType]:
    """What phonenumbers says, mapped as documented in classify.py."""
    try:
        num = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return None, NumberType.UNKNOWN
    region = phonenumbers.region_code_for_number(num)
    pn_type = phonenumbers.number_type(num)
    ntype = _NAMES[pn_type]
    cc = num.country_code
    nsn = phonenumbers.national_significant_number(num)
    terrestrial = (NumberType.MOBILE, NumberType.FIXED_LINE, NumberType.FIXED_LINE_OR_MOBILE)
    satellite = cc in (870, 881) or (
        cc in (882, 883) and (ntype in terrestrial or (cc == 882 and nsn[:2] in ("13", "16")))
    )
    if pn_type != PhoneNumberType.UNKNOWN and satellite:
        ntype = NumberType.SATELLITE
    return region, ntype


def _mutate(rng: random.Random, digits: str) -> str:
    d = list(digits)
    op = rng.randrange(4)
    if op == 0:
        d[rng.randrange(1, len(d))] = str(rng.randrange(10))
    elif op == 1:
        d.insert(rng.randrange(1, len(d) + 1), str(rng.randrange(10)))
    elif op == 2 and len(d) > 3:
        del d[rng.randrange(1, len(d))]
    else:
        for i in range(max(1, len(d) - rng.randrange(1, 5)), len(d)):
            d[i] = str(rng.randrange(10))
    return "".join(d)


def sample_numbers(seed: int) -> tuple[list[str], set[str]]:
    rng = random.Random(seed)
    examples: list[str] = []
    regions: set[str] = set()
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for t in _PN_TYPES:
            ex = phonenumbers.example_number_for_type(region, t)
            if ex is not None:
                examples.append(phonenumbers.format_number(ex, PhoneNumberFormat.E164)[1:])
                regions.add(region)
    for cc in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        ex = phonenumbers.example_number_for_non_geo_entity(cc)
        if ex is not None:
            examples.append(phonenumbers.format_number(ex, PhoneNumberFormat.E164)[1:])
    out = set(examples)
    for e in examples:
        for _ in range(20):
            out.add(_mutate(rng, e))
    ccs = sorted(str(cc) for cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    for _ in range(6000):  # random national numbers behind every kind of country code
        code = rng.choice(ccs)
        out.add(code + "".join(str(rng.randrange(10)) for _ in range(rng.randrange(1, 14))))
    for _ in range(500):  # national prefixes behind the country code (+44 0..., +7 8...)
        code = rng.choice(["44", "7", "31", "49", "1", "54", "52", "39", "33", "61"])
        out.add(code + rng.choice("018") + "".join(str(rng.randrange(10)) for _ in range(10)))
    for _ in range(300):  # junk: unassigned codes, leading zeros, too short / long
        out.add("".join(str(rng.randrange(10)) for _ in range(rng.randrange(1, 20))))
    return sorted(out), regions


@pytest.mark.parametrize("seed", [20240127])
def test_fast_path_agrees_with_phonenumbers(seed: int) -> None:
    numbers, regions = sample_numbers(seed)
    assert len(numbers) >= 20_000
    assert len(regions) >= 50
    classifier = NumberClassifier(RiskList())
    disagreements = []
    kinds: set[NumberType] = set()
    for digits in numbers:
        e164 = "+" + digits
        info = classifier.classify(e164)
        expected = reference(e164)
        kinds.add(info.number_type)
        if (info.country, info.number_type) != expected:
            disagreements.append((e164, expected, (info.country, info.number_type)))
    assert disagreements[:10] == []
    # The sample really covers the type space, including satellite and invalid numbers.
    assert {
        NumberType.SATELLITE,
        NumberType.UNKNOWN,
        NumberType.PREMIUM_RATE,
        NumberType.FIXED_LINE_OR_MOBILE,
        NumberType.MOBILE,
        NumberType.FIXED_LINE,
        NumberType.TOLL_FREE,
    } <= kinds


def test_shared_country_codes_pick_region_like_phonenumbers() -> None:
    c = NumberClassifier(RiskList())
    assert c.classify("+18765550123").country == reference("+18765550123")[0] == "JM"
    assert c.classify("+14165550123").country == "CA"
    assert c.classify("+12125550123").country == "US"
    assert c.classify("+77012345678").country == "KZ"
    assert c.classify("+79245555937").country == "RU"
    assert c.classify("+447624123456").country == "IM"
    # National prefix written after the country code is stripped as parse does.
    assert c.classify("+4402079460000") == c.classify("+4402079460000")
    assert c.classify("+4402079460000").number_type is NumberType.FIXED_LINE


@pytest.mark.parametrize("seed", [20240127])
def test_bulk_path_agrees_with_per_number_path_and_phonenumbers(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """classify_series (Polars regex per country code) on the same large sample."""
    numbers, _ = sample_numbers(seed)
    e164s: list[str | None] = ["+" + d for d in numbers]
    e164s += [None, "", "+", "abc", "31201234567", "+31 20", "+31201234567"]  # junk, duplicate
    fallback: list[int] = []
    python_path = _bulk._python

    def counted(part: pl.DataFrame) -> pl.DataFrame:
        fallback.append(part.height)
        return python_path(part)

    monkeypatch.setattr(_bulk, "_python", counted)
    risks = RiskList.bundled()
    per_number = NumberClassifier(risks)
    bulk = NumberClassifier(risks).classify_series(pl.Series(e164s, dtype=pl.String), small_group=0)
    assert bulk.height == len(e164s)
    # Every code went through the Polars patterns; only rare numbers (a national prefix
    # after the country code, ...) took the per-number path.
    assert sum(fallback) < 0.05 * len(numbers)
    disagreements: list[tuple[str | None, object, object]] = []
    for e164, row in zip(e164s, bulk.iter_rows(named=True), strict=True):
        info = per_number.classify(e164)
        mine = (row["e164"], row["country"], row["number_type"], row["risk"])
        if mine != (info.e164, info.country, info.number_type.value, info.risk):
            disagreements.append((e164, info, mine))
        elif info.e164 is not None and (info.country, info.number_type) != reference(info.e164):
            disagreements.append((e164, reference(info.e164), mine))
    assert disagreements[:10] == []


def test_bulk_path_small_codes_take_the_per_number_path() -> None:
    numbers, _ = sample_numbers(7)
    e164s = ["+" + d for d in numbers[:3000]]
    c = NumberClassifier(RiskList.bundled())
    bulk = c.classify_series(pl.Series(e164s))  # default: small codes per number
    expected = [c.classify(e) for e in e164s]
    got = list(bulk.select("country", "number_type", "risk").iter_rows())
    assert got == [(i.country, i.number_type.value, i.risk) for i in expected]
