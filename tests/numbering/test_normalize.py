"""Dialed strings to E.164 under dialing contexts; scalar and Polars paths agree."""

from __future__ import annotations

import random

import phonenumbers
import polars as pl
import pytest
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from tollguard.numbering.normalize import (
    dial_plan,
    is_short_code,
    normalize_expr,
    normalize_number,
)
from tollguard.policy import DialingContext

NL = DialingContext(country="NL")
BE = DialingContext(country="BE")
DE = DialingContext(country="DE")
GB = DialingContext(country="GB")
US = DialingContext(country="US")
RU = DialingContext(country="RU")


@pytest.mark.parametrize(
    ("ctx", "dialed", "expected"),
    [
        # Netherlands: 00 international, 0 trunk, bare NSN, formatting, (0)
        (NL, "0201234567", "+31201234567"),
        (NL, "020-123 45 67", "+31201234567"),
        (NL, "(020) 123.45.67", "+31201234567"),
        (NL, "+31 (0)20 123 4567", "+31201234567"),
        (NL, "0031201234567", "+31201234567"),
        (NL, "0612345678", "+31612345678"),
        (NL, "612345678", "+31612345678"),
        (NL, "09061234", "+319061234"),
        (NL, "14020", "+3114020"),  # municipal short number, valid national
        (NL, "00670 7723 1234", "+67077231234"),  # Timor-Leste
        (NL, "0088216123456", "+88216123456"),  # Thuraya
        (NL, "31201234567", "+31201234567"),  # SIP caller id without "+"
        (NL, "tel:+31-20-123-4567", "+31201234567"),
        (NL, "sip:+31201234567@pbx.example;user=phone", "+31201234567"),
        # Belgium, Germany, United Kingdom
        (BE, "02 123 45 67", "+3221234567"),
        (BE, "0470 12 34 56", "+32470123456"),
        (BE, "0032 470 12 34 56", "+32470123456"),
        (DE, "030 1234567", "+49301234567"),
        (DE, "0151 23456789", "+4915123456789"),
        (DE, "0044 20 7946 0000", "+442079460000"),
        (GB, "020 7946 0000", "+442079460000"),
        (GB, "07400 123456", "+447400123456"),
        (GB, "00 31 20 123 4567", "+31201234567"),
        # United States: 011 international, 1 trunk, 10-digit NSN
        (US, "1 (212) 555-0123", "+12125550123"),
        (US, "212-555-0123", "+12125550123"),
        (US, "011 44 20 7946 0000", "+442079460000"),
        (US, "1-876-555-0123", "+18765550123"),
        # Russia: 8 trunk, 810 international (the "8~10" style), from the real sample
        (RU, "89245555937", "+79245555937"),
        (RU, "89025348783", "+79025348783"),
        (RU, "81079246516548", "+79246516548"),
        (RU, "8 10 44 20 7946 0000", "+442079460000"),
        (RU, "8 800 555 35 35", "+78005553535"),
    ],
)
def test_normalize_examples(ctx: DialingContext, dialed: str, expected: str) -> None:
    assert normalize_number(dialed, ctx) == expected


@pytest.mark.parametrize(
    "dialed",
    [
        "&",
        "s",
        "anonymous",
        "",
        "   ",
        "1002",
        "211474",
        "6789",
        "*97",
        "12ab34",
        "+",
        "+0123456789",
        "+3112",
        "00",
        "0",
        "+99912345678",
        "0031",
        "1234567890123456789",
        "Unknown",
        "+31 20 12x",
    ],
)
@pytest.mark.parametrize("ctx", [NL, US, RU])
def test_junk_extensions_and_short_codes_are_none(ctx: DialingContext, dialed: str) -> None:
    assert normalize_number(dialed, ctx) is None


def test_none_input() -> None:
    assert normalize_number(None, NL) is None


def test_short_code_shape() -> None:
    assert is_short_code("1002")
    assert is_short_code("*97")
    assert is_short_code("112")
    assert not is_short_code("&")
    assert not is_short_code("s")
    assert not is_short_code("0201234567")
    assert not is_short_code(None)


def test_outside_line_prefix_is_stripped_first() -> None:
    ctx = DialingContext(country="NL", outside_line_prefix="9")
    assert normalize_number("900441234567890", ctx) == "+441234567890"
    assert normalize_number("9 020 1234567", ctx) == "+31201234567"
    assert normalize_number("900670 7723 1234", ctx) == "+67077231234"
    assert normalize_number("9123", ctx) is None  # extension behind the line prefix
    us = DialingContext(country="US", outside_line_prefix="9")
    assert normalize_number("9 1 212 555 0123", us) == "+12125550123"
    assert normalize_number("9011 44 20 7946 0000", us) == "+442079460000"
    # Not behind the prefix: a New York number that happens to start with 9.
    assert normalize_number("917 555 0123", us) == "+19175550123"


def test_context_overrides_prefixes() -> None:
    ctx = DialingContext(country="NL", international_prefix="000", trunk_prefix="")
    assert normalize_number("00044 20 7946 0000", ctx) == "+442079460000"
    # No trunk prefix: "0201234567" is not national any more, and "00" is not international.
    assert normalize_number("0201234567", ctx) is None
    assert normalize_number("201234567", ctx) == "+31201234567"


def test_dial_plan_defaults_come_from_metadata() -> None:
    assert (dial_plan(NL).international_prefix, dial_plan(NL).trunk_prefix) == ("00", "0")
    assert (dial_plan(US).international_prefix, dial_plan(US).trunk_prefix) == ("011", "1")
    assert (dial_plan(RU).international_prefix, dial_plan(RU).trunk_prefix) == ("810", "8")
    assert dial_plan(GB).country_code == "44"
    assert 9 in dial_plan(NL).national_lengths


def test_normalized_numbers_round_trip_through_phonenumbers() -> None:
    """National and international formats of example numbers come back as their E.164."""
    checked = 0
    for ctx in (NL, BE, DE, GB, US, RU):
        for t in (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.TOLL_FREE):
            ex = phonenumbers.example_number_for_type(ctx.country, t)
            assert ex is not None
            e164 = phonenumbers.format_number(ex, PhoneNumberFormat.E164)
            for fmt in (PhoneNumberFormat.NATIONAL, PhoneNumberFormat.INTERNATIONAL):
                assert normalize_number(phonenumbers.format_number(ex, fmt), ctx) == e164
            dialed_out = phonenumbers.format_out_of_country_calling_number(ex, "NL")
            assert normalize_number(dialed_out, NL) == e164
            checked += 1
    assert checked == 18


def _random_dialed(rng: random.Random, ctx: DialingContext) -> str:
    region = ctx.country if ctx.country != "001" else "NL"
    kind = rng.randrange(9)
    if kind <= 3:
        t = rng.choice(
            [
                PhoneNumberType.FIXED_LINE,
                PhoneNumberType.MOBILE,
                PhoneNumberType.TOLL_FREE,
                PhoneNumberType.PREMIUM_RATE,
                PhoneNumberType.UAN,
            ]
        )
        reg = region if kind < 3 else rng.choice(["TL", "SO", "ZW", "GB", "US", "DE", "CU"])
        ex = phonenumbers.example_number_for_type(reg, t) or phonenumbers.example_number(reg)
        assert ex is not None
        fmt = rng.choice(
            [PhoneNumberFormat.NATIONAL, PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.E164]
        )
        s = phonenumbers.format_number(ex, fmt)
        if kind == 3:
            s = phonenumbers.format_out_of_country_calling_number(ex, region)
        # mutate one digit now and then
        if rng.random() < 0.5:
            idx = [i for i, ch in enumerate(s) if ch.isdigit()]
            i = rng.choice(idx)
            s = s[:i] + str(rng.randrange(10)) + s[i + 1 :]
        return s
    if kind == 4:
        return "".join(str(rng.randrange(10)) for _ in range(rng.randrange(1, 17)))
    if kind == 5:
        return rng.choice(["&", "s", "anonymous", "", "+", "*97", "#31#", "(0)", "sip:100@pbx"])
    if kind == 6:
        prefix = rng.choice(["0", "00", "011", "8", "810", "1", "9", "90", "900", "+"])
        return prefix + "".join(str(rng.randrange(10)) for _ in range(rng.randrange(4, 14)))
    if kind == 7:
        digits = "".join(str(rng.randrange(10)) for _ in range(rng.randrange(6, 13)))
        return " ".join([digits[:3], digits[3:6], digits[6:]])
    return rng.choice(["31", "44", "7", "1", "670", "881"]) + "".join(
        str(rng.randrange(10)) for _ in range(rng.randrange(5, 12))
    )


@pytest.mark.parametrize(
    "ctx",
    [
        NL,
        BE,
        DE,
        GB,
        US,
        RU,
        DialingContext(country="NL", outside_line_prefix="9"),
        DialingContext(country="US", outside_line_prefix="9"),
        DialingContext(country="001"),
        DialingContext(country="AR"),
        DialingContext(country="IT"),
    ],
    ids=lambda c: f"{c.country}{c.outside_line_prefix}",
)
def test_expr_agrees_with_scalar(ctx: DialingContext) -> None:
    rng = random.Random(hash(ctx.country + ctx.outside_line_prefix) & 0xFFFF)
    values: list[str | None] = [_random_dialed(rng, ctx) for _ in range(2500)]
    values.append(None)
    frame = pl.DataFrame({"dialed": values}, schema={"dialed": pl.String})
    got = frame.select(normalize_expr("dialed", ctx)).get_column("dialed").to_list()
    expected = [normalize_number(v, ctx) for v in values]
    mismatches = [(v, e, g) for v, e, g in zip(values, expected, got, strict=True) if e != g]
    assert mismatches[:10] == []
    # The sample exercises both outcomes.
    assert sum(e is not None for e in expected) > 500
    assert sum(e is None for e in expected) > 300


def test_every_region_context_works_in_polars() -> None:
    """International-prefix patterns of all regions compile in Polars and agree."""
    frame = pl.DataFrame(
        {
            "x": [
                "0031201234567",
                "0201234567",
                "+441234567890",
                "123",
                "810441234567890",
                "011441234567890",
                "00881612345678",
            ]
        }
    )
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        ctx = DialingContext(country=region)
        got = frame.select(normalize_expr("x", ctx)).get_column("x").to_list()
        assert got == [normalize_number(v, ctx) for v in frame.get_column("x")], region
