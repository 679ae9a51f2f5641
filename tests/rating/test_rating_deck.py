"""Rate deck loading, longest-prefix match, increments, exact cost and budgets."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tollguard.rating.deck import UNLIMITED_SECONDS, RateDeck, RateDeckError, RateRow

T = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def deck_file(tmp_path: Path, text: str, name: str = "rates.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def row(
    rate: str = "1",
    billing: tuple[int, int] = (1, 1),
    connect: str = "0",
    per_call: str = "0",
) -> RateRow:
    return RateRow(
        deck="t",
        row=2,
        prefix="670",
        destination="Timor-Leste",
        rate_per_minute=Decimal(rate),
        connect_fee=Decimal(connect),
        per_call_fee=Decimal(per_call),
        first_increment=billing[0],
        next_increment=billing[1],
        effective_from=None,
        currency="EUR",
    )


# -- loading ------------------------------------------------------------------


def test_load_full_format(tmp_path: Path) -> None:
    path = deck_file(
        tmp_path,
        "\ufeffPrefix , Destination,rate_per_minute,connect_fee,per_call_fee,billing,"
        "effective_from,currency,notes\n"
        '"+670 77",Timor-Leste mobile,1.950000,0.1000,0.05,30/6,2024-01-01,usd,ignored\n'
        "\n"
        "31,Netherlands,0.01,,,,,,\n",
    )
    deck = RateDeck.load(path, currency="USD")
    assert deck.name == "rates"
    assert deck.currency == "USD"
    first, second = deck.rows
    assert first.prefix == "67077"
    assert first.row == 2
    assert first.rate_per_minute == Decimal("1.95")
    assert first.connect_fee == Decimal("0.1")
    assert first.per_call_fee == Decimal("0.05")
    assert (first.first_increment, first.next_increment) == (30, 6)
    assert first.effective_from == datetime(2024, 1, 1, tzinfo=UTC)
    assert first.currency == "USD"
    # line 3 is blank: rows are numbered by physical line, as in error messages
    assert second.row == 4
    assert (second.first_increment, second.next_increment) == (1, 1)  # default billing
    assert second.connect_fee == 0 and second.effective_from is None
    assert second.currency == "USD"


def test_currency_column_sets_deck_currency(tmp_path: Path) -> None:
    path = deck_file(tmp_path, "prefix,destination,rate_per_minute,currency\n44,UK,0.02,GBP\n")
    assert RateDeck.load(path).currency == "GBP"


def test_bad_lines_all_reported_with_line_numbers(tmp_path: Path) -> None:
    path = deck_file(
        tmp_path,
        "prefix,destination,rate_per_minute,connect_fee,billing,effective_from\n"
        "31,NL,0.01,,,\n"
        "32,BE,abc,,,\n"
        "+x1,Bad,0.01,,,\n"
        "33,FR,0.0000001,,,\n"
        "34,ES,0.01,0.00001,,\n"
        "35,IT,0.01,,60-60,\n"
        "36,CH,0.01,,,2024-01-01 10:00\n"
        "37,AT,0,05,,\n"
        "38,PT,-1,,,\n"
        "0900,NL premium,0.45,,,\n",
    )
    with pytest.raises(RateDeckError) as info:
        RateDeck.load(path)
    problems = info.value.problems
    text = str(info.value)
    assert f"{path}:3: rate_per_minute 'abc' is not a number" in problems
    assert any(p.startswith(f"{path}:4: prefix '+x1'") for p in problems)
    assert any(p.startswith(f"{path}:5: rate_per_minute") and "6 decimal" in p for p in problems)
    assert any(p.startswith(f"{path}:6: connect_fee") and "4 decimal" in p for p in problems)
    assert any(p.startswith(f"{path}:7: billing '60-60'") for p in problems)
    assert any(p.startswith(f"{path}:8: effective_from") and "offset" in p for p in problems)
    assert any(p.startswith(f"{path}:10: rate_per_minute '-1' is negative") for p in problems)
    assert f"{path}:2:" not in text  # the good line is not blamed
    assert any(p.startswith(f"{path}:11: prefix '0900' starts with 0") for p in problems)
    assert len(problems) == 8, problems  # line 9 ("0,05" split by the CSV) is a valid row


def test_decimal_comma_hint(tmp_path: Path) -> None:
    path = deck_file(tmp_path, 'prefix,destination,rate_per_minute\n31,NL,"0,01"\n')
    with pytest.raises(RateDeckError, match=r"rates.csv:2: .*decimal separator"):
        RateDeck.load(path)


def test_trailing_zeros_beyond_places_are_fine(tmp_path: Path) -> None:
    text = "prefix,destination,rate_per_minute,connect_fee\n31,NL,0.12340000,1.00000\n"
    path = deck_file(tmp_path, text)
    r = RateDeck.load(path).rows[0]
    assert r.rate_per_minute == Decimal("0.1234") and r.connect_fee == 1


def test_duplicate_prefix_same_effective_date_is_error(tmp_path: Path) -> None:
    path = deck_file(
        tmp_path,
        "prefix,destination,rate_per_minute,effective_from\n"
        "670,TL,1.0,2024-01-01\n"
        "+670,TL again,2.0,2024-01-01T00:00:00+00:00\n"
        "31,NL,0.01,\n"
        "31,NL,0.02,\n"
        "670,TL later,3.0,2024-02-01\n",
    )
    with pytest.raises(RateDeckError) as info:
        RateDeck.load(path)
    problems = info.value.problems
    assert len(problems) == 2
    assert problems[0].startswith(f"{path}:3: prefix 670 effective 2024-01-01")
    assert "line 2" in problems[0]
    assert problems[1].startswith(f"{path}:5: prefix 31 without effective_from")
    assert "line 4" in problems[1]


def test_missing_columns_and_typos(tmp_path: Path) -> None:
    path = deck_file(tmp_path, "prefix,destination,rate,conect_fee\n31,NL,0.01,0\n")
    with pytest.raises(RateDeckError) as info:
        RateDeck.load(path)
    text = str(info.value)
    assert "unknown column 'conect_fee'; did you mean 'connect_fee'?" in text
    assert "missing required column(s) rate_per_minute" in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty rate deck"),
        ("prefix,destination,rate_per_minute\n", "no rows"),
        ("prefix,destination,rate_per_minute,currency\n1,US,0.01,USD\n44,UK,0.02,GBP\n", "several"),
        ("prefix,destination,rate_per_minute\n31,NL\n", "rates.csv:2: has 2 field(s)"),
    ],
)
def test_whole_file_problems(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(RateDeckError, match=re.escape(message)):
        RateDeck.load(deck_file(tmp_path, text))


def test_missing_file_is_clear(tmp_path: Path) -> None:
    with pytest.raises(RateDeckError, match=r"nope\.csv: cannot read rate deck"):
        RateDeck.load(tmp_path / "nope.csv")


def test_error_message_is_capped_but_problems_complete(tmp_path: Path) -> None:
    body = "".join(f"{i},X,bad\n" for i in range(10, 80))
    with pytest.raises(RateDeckError) as info:
        RateDeck.load(deck_file(tmp_path, "prefix,destination,rate_per_minute\n" + body))
    assert len(info.value.problems) == 70
    assert "and 20 more problem(s)" in str(info.value)


# -- longest prefix match ----------------------------------------------------


def lpm_deck(tmp_path: Path) -> RateDeck:
    return RateDeck.load(
        deck_file(
            tmp_path,
            "prefix,destination,rate_per_minute\n"
            "+670,Timor-Leste,1.00\n"
            "67077,Timor-Leste mobile,2.00\n"
            "6707,Timor-Leste other,1.50\n"
            "3,Europe catch-all,0.30\n"
            "31,Netherlands,0.01\n",
        )
    )


@pytest.mark.parametrize(
    ("number", "prefix"),
    [
        ("+67077123456", "67077"),
        ("+67078123456", "6707"),
        ("+67031234567", "670"),
        ("67077", "67077"),  # exactly the prefix
        ("+31201234567", "31"),
        ("+32123456789", "3"),
    ],
)
def test_longest_prefix_wins(tmp_path: Path, number: str, prefix: str) -> None:
    found = lpm_deck(tmp_path).lookup(number, T)
    assert found is not None and found.prefix == prefix


@pytest.mark.parametrize(
    "number", ["+4420123456", "+67", "", "+", "abc", "+31x1", "+670 77 123", "+031", "0031"]
)
def test_no_match_is_unrated(tmp_path: Path, number: str) -> None:
    assert lpm_deck(tmp_path).lookup(number, T) is None


# -- effective dates ---------------------------------------------------------


def dated_deck(tmp_path: Path) -> RateDeck:
    return RateDeck.load(
        deck_file(
            tmp_path,
            "prefix,destination,rate_per_minute,effective_from\n"
            "670,TL,1.00,2024-01-01\n"
            "670,TL,2.00,2024-06-01T02:00:00+02:00\n"
            "67077,TL mobile,5.00,2024-03-01\n",
        )
    )


def test_before_first_effective_date_is_unrated(tmp_path: Path) -> None:
    deck = dated_deck(tmp_path)
    assert deck.lookup("+67077123", datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC)) is None


def test_switch_over_at_exact_instant(tmp_path: Path) -> None:
    deck = dated_deck(tmp_path)
    switch = datetime(2024, 6, 1, 0, 0, tzinfo=UTC)  # 02:00+02:00
    before = deck.lookup("+67031", datetime(2024, 5, 31, 23, 59, 59, 999999, tzinfo=UTC))
    at = deck.lookup("+67031", switch)
    assert before is not None and before.rate_per_minute == 1
    assert at is not None and at.rate_per_minute == 2
    assert deck.lookup("+67031", datetime(2024, 1, 1, tzinfo=UTC)) is not None


def test_longer_prefix_not_yet_effective_falls_back_to_shorter(tmp_path: Path) -> None:
    deck = dated_deck(tmp_path)
    early = deck.lookup("+67077123", datetime(2024, 2, 1, tzinfo=UTC))
    late = deck.lookup("+67077123", datetime(2024, 3, 1, tzinfo=UTC))
    assert early is not None and early.prefix == "670"
    assert late is not None and late.prefix == "67077"


def test_naive_time_is_read_as_utc(tmp_path: Path) -> None:
    found = dated_deck(tmp_path).lookup("+67031", datetime(2024, 6, 1))
    assert found is not None and found.rate_per_minute == 2


# -- increments and cost -----------------------------------------------------


@pytest.mark.parametrize(
    ("billing", "billsec", "charged"),
    [
        ((60, 60), 0, 0),
        ((60, 60), 1, 60),
        ((60, 60), 60, 60),
        ((60, 60), 61, 120),
        ((60, 60), 120, 120),
        ((30, 6), 1, 30),
        ((30, 6), 30, 30),
        ((30, 6), 31, 36),
        ((30, 6), 36, 36),
        ((30, 6), 37, 42),
        ((1, 1), 1, 1),
        ((1, 1), 59, 59),
        ((1, 1), -5, 0),
    ],
)
def test_charged_seconds(billing: tuple[int, int], billsec: int, charged: int) -> None:
    assert row(billing=billing).charged_seconds(billsec) == charged


def test_cost_rounds_half_up_once() -> None:
    # 0.0003/min * 10 s = 0.00005 -> 0.0001 (half up), not banker's 0.0000
    assert row("0.0003").cost(10) == Decimal("0.0001")
    assert row("0.0003").cost(9) == Decimal("0.0000")  # 0.000045
    # fees are exact and added before the single rounding
    assert row("1.234567", connect="0.1", per_call="0.0005").cost(7) == Decimal("0.2445")
    assert row("1.95", (60, 60), connect="0.10").cost(61) == Decimal("4.0000")


def test_fees_only_on_answered_calls_with_billable_seconds() -> None:
    r = row("0.5", (60, 60), connect="0.10", per_call="1.30")
    assert r.cost(1) == Decimal("1.9")
    assert r.cost(1, answered=False) == 0
    assert r.cost(0) == 0
    assert r.cost(0).as_tuple().exponent == -4


# -- budgets -----------------------------------------------------------------


def test_max_seconds_budget_exactly_at_increment_boundary() -> None:
    r = row("1.20", (60, 60), connect="0.10")  # 0.10 + 1.20 per started minute
    assert r.max_seconds_within(Decimal("2.50")) == 120  # exactly two minutes
    assert r.cost(120) == Decimal("2.5")
    assert r.cost(121) > Decimal("2.50")
    assert r.max_seconds_within(Decimal("2.4999")) == 60
    assert r.max_seconds_within(Decimal("2.50009")) == 120  # sub-e4 budget digits don't help


def test_max_seconds_budget_below_connect_fee_or_first_increment() -> None:
    r = row("1.20", (60, 60), connect="0.10")
    assert r.max_seconds_within(Decimal("0.0999")) == 0
    assert r.max_seconds_within(Decimal("0.10")) == 0  # fee fits, first minute does not
    assert r.max_seconds_within(Decimal("1.30")) == 60
    assert r.max_seconds_within(Decimal("-1")) == 0


def test_max_seconds_rounding_and_fine_increments() -> None:
    r = row("0.0003", (1, 1))  # each second costs 0.000005
    assert r.max_seconds_within(Decimal("0")) == 9  # 9 s rounds to 0.0000, 10 s to 0.0001
    assert r.max_seconds_within(Decimal("0.0001")) == 29


def test_max_seconds_free_rate() -> None:
    assert row("0", connect="0.5").max_seconds_within(Decimal("1")) == UNLIMITED_SECONDS
    assert row("0", connect="0.5").max_seconds_within(Decimal("0.4")) == 0


@pytest.mark.parametrize("billing", [(60, 60), (30, 6), (1, 1), (45, 15)])
@pytest.mark.parametrize("rate", ["0.013", "1.95", "0.000001", "7.777777"])
def test_max_seconds_matches_brute_force(billing: tuple[int, int], rate: str) -> None:
    r = row(rate, billing, connect="0.0100")
    for budget in map(Decimal, ["0.01", "0.05", "0.3333", "1", "3.1"]):
        best = r.max_seconds_within(budget)
        if best == 0:
            assert r.cost(1) > budget
            continue
        assert r.cost(best) <= budget
        assert r.cost(best + 1) > budget
