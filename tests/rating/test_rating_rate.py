"""Rater: decks per account from the policy, vectorized rate_frame == RateRow.cost."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypedDict

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tollguard.cdr.model import NUMBERING_SCHEMA, RATING_SCHEMA, RECORD_SCHEMA, cost_from_e4
from tollguard.policy import parse_policy
from tollguard.rating.deck import RateDeck, RateRow
from tollguard.rating.rate import Rater, RatingSetupError

T0 = datetime(2025, 1, 1, tzinfo=UTC)
FRAME_SCHEMA = {**RECORD_SCHEMA, **NUMBERING_SCHEMA}

RETAIL = (
    "prefix,destination,rate_per_minute,connect_fee,billing\n"
    "31,Netherlands,0.0100,0,60/60\n"
    "316,Netherlands mobile,0.0600,0,60/60\n"
    "670,Timor-Leste,1.9500,0.1000,60/60\n"
)
WHOLESALE = "prefix,destination,rate_per_minute,billing\n31,Netherlands,0.0050,1/1\n"


def make_frame(calls: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Records with every RECORD/NUMBERING column; callers give the ones that matter."""
    rows = []
    for i, call in enumerate(calls):
        start = call.get("start", T0)
        billsec = call.get("billsec", 60)
        rows.append(
            {
                "record_id": f"t:{i}",
                "source": "t",
                "account": call.get("account", "acme"),
                "caller": "2000",
                "callee": call.get("callee_e164") or "",
                "start": start,
                "answer": start,
                "end": start + timedelta(seconds=billsec or 0),
                "duration": billsec,
                "billsec": billsec,
                "disposition": call.get("disposition", "answered"),
                "hangup_cause": "",
                "channel": "",
                "dst_channel": "",
                "source_file": "t.csv",
                "source_line": i + 1,
                "caller_e164": None,
                "callee_e164": call.get("callee_e164"),
                "country": None,
                "number_type": None,
                "risk": None,
            }
        )
    return pl.DataFrame(rows, schema=FRAME_SCHEMA)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    write(tmp_path / "retail.csv", RETAIL)
    write(tmp_path / "wholesale.csv", WHOLESALE)
    return tmp_path


def policy_for(base: Path, **data: Any) -> Any:
    return parse_policy(data, str(base / "policy.toml"), str(base))


# -- which deck ----------------------------------------------------------------


def test_decks_per_account_and_default(policy_dir: Path) -> None:
    policy = policy_for(
        policy_dir,
        defaults={"rates": "retail"},
        decks={"retail": {"path": "retail.csv"}, "wholesale": {"path": "wholesale.csv"}},
        accounts={"acme": {"rates": "wholesale"}, "beta": {}, "gamma": {"rates": "retail.csv"}},
    )
    rater = Rater(policy)
    acme, beta, gamma = (rater.deck_for(a) for a in ("acme", "beta", "gamma"))
    assert acme is not None and acme.name == "wholesale"
    assert beta is not None and beta.name == "retail"
    assert gamma is not None and gamma.rows == beta.rows
    unknown = rater.deck_for("not-in-policy")
    assert unknown is not None and unknown.name == "retail"

    frame = make_frame(
        [
            {"account": "acme", "callee_e164": "+31201234567", "billsec": 61},
            {"account": "beta", "callee_e164": "+31201234567", "billsec": 61},
            {"account": "", "callee_e164": "+31612345678", "billsec": 61},
        ]
    )
    out = rater.rate_frame(frame)
    assert out["deck"].to_list() == ["wholesale", "retail", "retail"]
    # 0.005 * 61/60 = 0.0050833 -> 0.0051 ; 0.01 * 120/60 = 0.02 ; 0.06 * 2 = 0.12
    assert out["cost_e4"].to_list() == [51, 200, 1200]
    assert out["charged_seconds"].to_list() == [61, 120, 120]
    assert out["billing"].to_list() == ["1/1", "60/60", "60/60"]


def test_cli_rates_override_default_but_not_account_decks(policy_dir: Path) -> None:
    policy = policy_for(
        policy_dir,
        defaults={"rates": "retail.csv"},
        accounts={"acme": {"rates": "wholesale.csv"}},
    )
    cli_deck = write(policy_dir / "cli.csv", "prefix,destination,rate_per_minute\n31,NL,9\n")
    rater = Rater(policy, default_rates=cli_deck)
    other, acme = rater.deck_for("other"), rater.deck_for("acme")
    assert other is not None and other.name == "cli"
    assert acme is not None and acme.name == "wholesale"


def test_no_deck_anywhere_means_unrated(policy_dir: Path) -> None:
    rater = Rater(policy_for(policy_dir))
    assert rater.deck_for("acme") is None
    out = rater.rate_frame(make_frame([{"callee_e164": "+31201234567"}]))
    assert out.schema == {**FRAME_SCHEMA, **RATING_SCHEMA}
    assert out.row(0, named=True)["cost_e4"] is None
    assert rater.rate_call("acme", "+31201234567", 60, True, T0) == (None, None)


def test_missing_and_broken_decks_reported_together_at_startup(policy_dir: Path) -> None:
    write(policy_dir / "broken.csv", "prefix,destination,rate_per_minute\n31,NL,abc\n")
    policy = policy_for(
        policy_dir,
        decks={"gone": {"path": "gone.csv"}, "broken": {"path": "broken.csv"}},
        accounts={"acme": {"rates": "gone"}, "beta": {"rates": "broken"}},
    )
    with pytest.raises(RatingSetupError) as info:
        Rater(policy)
    text = str(info.value)
    assert "decks.gone.path: rate deck" in text and "gone.csv' not found" in text
    assert "accounts.acme.rates" in text
    assert "broken.csv:2: rate_per_minute 'abc' is not a number" in text


def test_currency_mismatch_is_a_startup_error(policy_dir: Path) -> None:
    write(policy_dir / "usd.csv", "prefix,destination,rate_per_minute,currency\n1,US,0.01,USD\n")
    policy = policy_for(policy_dir, accounts={"acme": {"rates": "usd.csv"}})
    with pytest.raises(RatingSetupError, match="currency is EUR but deck 'usd' prices in USD"):
        Rater(policy)
    ok = policy_for(policy_dir, accounts={"acme": {"rates": "usd.csv", "currency": "USD"}})
    deck = Rater(ok).deck_for("acme")
    assert deck is not None and deck.currency == "USD"
    declared = policy_for(
        policy_dir,
        decks={"us": {"path": "usd.csv", "currency": "EUR"}},
        accounts={"acme": {"rates": "us"}},
    )
    with pytest.raises(RatingSetupError, match=r"decks\.us\.currency: the policy says EUR"):
        Rater(declared)


def test_deck_currency_from_policy_when_file_has_none(policy_dir: Path) -> None:
    policy = policy_for(
        policy_dir,
        decks={"w": {"path": "wholesale.csv", "currency": "CHF"}},
        accounts={"acme": {"rates": "w", "currency": "CHF"}},
    )
    out = Rater(policy).rate_frame(make_frame([{"callee_e164": "+31201234567"}]))
    assert out["currency"].to_list() == ["CHF"]


def test_rate_call(policy_dir: Path) -> None:
    rater = Rater(policy_for(policy_dir, defaults={"rates": "retail.csv"}))
    row, cost = rater.rate_call("x", "+67077123456", 61, True, T0)
    assert row is not None and row.prefix == "670"
    assert cost == Decimal("4.0000")
    assert rater.rate_call("x", "+67077123456", 61, False, T0)[1] == Decimal("0")
    assert rater.rate_call("x", "+4420", 61, True, T0) == (None, None)
    assert rater.rate_call("x", None, 61, True, T0) == (None, None)


# -- rate_frame semantics ------------------------------------------------------


def test_rate_frame_unrated_unanswered_and_order(tmp_path: Path) -> None:
    deck = RateDeck.load(write(tmp_path / "d.csv", RETAIL))
    rater = Rater.from_decks(deck)
    calls: list[dict[str, Any]] = [
        {"callee_e164": "+67077123456", "billsec": 1},
        {"callee_e164": "+44201234567", "billsec": 30},
        {"callee_e164": None},
        {"callee_e164": "+67077123456", "billsec": 0, "disposition": "answered"},
        {"callee_e164": "+67077123456", "billsec": 0, "disposition": "no_answer"},
        {"callee_e164": "+31612345678", "billsec": None},
        {"callee_e164": "not a number"},
    ]
    frame = make_frame(calls).with_columns(pl.lit("kept").alias("extra"))
    out = rater.rate_frame(frame)
    assert out.columns == [*FRAME_SCHEMA, "extra", *RATING_SCHEMA]
    assert out["record_id"].to_list() == frame["record_id"].to_list()
    assert out["cost_e4"].to_list() == [20500, None, None, 0, 0, 0, None]
    assert out["charged_seconds"].to_list() == [60, None, None, 0, 0, 0, None]
    assert out["deck"].to_list() == ["d", None, None, "d", "d", "d", None]
    assert out["deck_row"].to_list() == [4, None, None, 4, 4, 3, None]
    assert out["prefix"].to_list()[0] == "670" and out["destination"][0] == "Timor-Leste"
    assert out["rate_per_minute"][0] == "1.9500"
    # re-rating a rated frame replaces the rating columns instead of duplicating them
    again = rater.rate_frame(out)
    assert again.columns == out.columns and again.equals(out)


def test_rate_frame_empty() -> None:
    deck = RateDeck.parse(RETAIL, "d")
    out = Rater.from_decks(deck).rate_frame(make_frame([]))
    assert out.height == 0 and out.schema == {**FRAME_SCHEMA, **RATING_SCHEMA}


def test_rate_frame_effective_dates_and_fallback() -> None:
    deck = RateDeck.parse(
        "prefix,destination,rate_per_minute,effective_from\n"
        "670,TL,1.00,2024-01-01\n"
        "670,TL,2.00,2024-06-01T02:00:00+02:00\n"
        "67077,TL mobile,5.00,2024-03-01\n",
        "dated",
    )
    switch = datetime(2024, 6, 1, tzinfo=UTC)
    starts = [
        datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC),  # before anything: unrated
        datetime(2024, 2, 1, tzinfo=UTC),  # 67077 not yet effective: 670 v1
        switch - timedelta(microseconds=1),  # 670 v1
        switch,  # 670 v2 at the exact instant
    ]
    mobile_from = datetime(2024, 3, 1, tzinfo=UTC)  # 67077 has one version only
    starts += [mobile_from - timedelta(microseconds=1), mobile_from]
    calls = [{"callee_e164": "+67031234", "start": s, "billsec": 60} for s in starts]
    calls += [{"callee_e164": "+67077123", "start": s, "billsec": 60} for s in starts]
    out = Rater.from_decks(deck).rate_frame(make_frame(calls))
    assert out["cost_e4"].to_list() == [
        None, 10000, 10000, 20000, 10000, 10000,
        None, 10000, 50000, 50000, 10000, 50000,
    ]  # fmt: skip
    assert out["prefix"].to_list()[6:] == [None, "670", "67077", "67077", "670", "67077"]


@pytest.mark.parametrize(
    ("rate", "billsec", "cost_e4"),
    [
        ("0.0003", 10, 1),  # 0.00005 exactly: half up
        ("0.0003", 9, 0),  # 0.000045
        ("0.000006", 50, 0),  # 0.000005
        ("0.001506", 2, 1),  # 0.0000502
        ("0.001494", 2, 0),  # 0.0000498
        ("1.000003", 60, 10000),  # 1.000003
        ("1.00015", 60, 10002),  # 1.00015: exact half
    ],
)
def test_rate_frame_rounds_half_up(rate: str, billsec: int, cost_e4: int) -> None:
    deck = RateDeck.parse(f"prefix,destination,rate_per_minute\n1,X,{rate}\n", "r")
    frame = make_frame([{"callee_e164": "+12025550100", "billsec": billsec}])
    out = Rater.from_decks(deck).rate_frame(frame)
    assert out["cost_e4"].to_list() == [cost_e4]
    assert deck.rows[0].cost(billsec) == cost_from_e4(cost_e4)


# -- vectorized == exact, property style -----------------------------------------

RATES = st.one_of(
    st.decimals(min_value=0, max_value=50, places=6, allow_nan=False, allow_infinity=False),
    # small rates hit exact half-way cases (x.xxxx5) often
    st.integers(min_value=0, max_value=3000).map(lambda n: Decimal(n).scaleb(-6)),
)
FEES = st.decimals(min_value=0, max_value=5, places=4, allow_nan=False, allow_infinity=False)
INCREMENTS = st.sampled_from([(60, 60), (30, 6), (1, 1), (6, 6), (45, 15), (1, 60), (60, 1)])


@settings(max_examples=200, deadline=None)
@example(Decimal("0.0003"), Decimal(0), Decimal(0), (1, 1), [(10, True), (9, True)])
@example(Decimal("0.00015"), Decimal("0.0001"), Decimal(0), (60, 60), [(1, True), (61, False)])
@given(
    rate=RATES,
    connect=FEES,
    per_call=FEES,
    increments=INCREMENTS,
    calls=st.lists(
        st.tuples(st.integers(min_value=-1, max_value=200_000), st.booleans()),
        min_size=1,
        max_size=30,
    ),
)
def test_rate_frame_agrees_with_row_cost(
    rate: Decimal,
    connect: Decimal,
    per_call: Decimal,
    increments: tuple[int, int],
    calls: list[tuple[int, bool]],
) -> None:
    row = RateRow(
        deck="p",
        row=2,
        prefix="670",
        destination="TL",
        rate_per_minute=rate,
        connect_fee=connect,
        per_call_fee=per_call,
        first_increment=increments[0],
        next_increment=increments[1],
        effective_from=None,
        currency="EUR",
    )
    rater = Rater.from_decks(RateDeck("p", "EUR", [row]))
    frame = make_frame(
        [
            {
                "callee_e164": "+67077123456",
                "billsec": billsec,
                "disposition": "answered" if answered else "no_answer",
            }
            for billsec, answered in calls
        ]
    )
    out = rater.rate_frame(frame)
    for (billsec, answered), cost_e4, charged in zip(
        calls, out["cost_e4"], out["charged_seconds"], strict=True
    ):
        assert cost_from_e4(cost_e4) == row.cost(billsec, answered)
        assert charged == (row.charged_seconds(billsec) if answered else 0)


def random_deck_text(rng: random.Random) -> str:
    lines = ["prefix,destination,rate_per_minute,connect_fee,per_call_fee,billing,effective_from"]
    seen: set[tuple[str, str]] = set()
    prefixes = [str(rng.randint(1, 9))] + [str(rng.randint(10, 99)) for _ in range(15)]
    prefixes += [p + str(rng.randint(0, 999)) for p in prefixes for _ in range(5)]
    for prefix in prefixes:
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            day = rng.choice(["", "2025-01-01", "2025-01-15T12:00:00+01:00", "2025-02-01"])
            if (prefix, day) in seen:
                continue
            seen.add((prefix, day))
            rate = Decimal(rng.randint(0, 5_000_000)).scaleb(-6)
            connect = Decimal(rng.choice([0, 0, rng.randint(0, 9999)])).scaleb(-4)
            per_call = Decimal(rng.choice([0, 0, rng.randint(0, 20000)])).scaleb(-4)
            billing = rng.choice(["60/60", "30/6", "1/1", "", "6/6"])
            lines.append(f"{prefix},D{prefix},{rate},{connect},{per_call},{billing},{day}")
    return "\n".join(lines) + "\n"


class RandomCall(TypedDict):
    account: str
    callee_e164: str | None
    start: datetime
    billsec: int
    disposition: str


def test_100k_random_rows_match_per_call_rating() -> None:
    rng = random.Random(20250101)
    decks = {n: RateDeck.parse(random_deck_text(rng), n) for n in ("a", "b")}
    rater = Rater.from_decks(decks["a"], {"acc-b": decks["b"], "acc-none": None})
    accounts = ["acc-a", "acc-b", "acc-none", ""]
    known = sorted({r.prefix for d in decks.values() for r in d.rows})
    calls: list[RandomCall] = []
    for _ in range(100_000):
        head = rng.choice(known) if rng.random() < 0.7 else str(rng.randint(1, 99))
        digits = (head + str(rng.randint(0, 10 ** rng.randint(1, 10))))[:15]
        calls.append(
            {
                "account": rng.choice(accounts),
                "callee_e164": rng.choice(["+", "+", "+", ""]) + digits
                if rng.random() > 0.02
                else rng.choice([None, "", "+", "x12"]),
                "start": T0 + timedelta(seconds=rng.randint(0, 50 * 86400)),
                "billsec": rng.choice([0, rng.randint(0, 30), rng.randint(0, 7200)]),
                "disposition": rng.choice(["answered"] * 4 + ["no_answer", "busy"]),
            }
        )
    out = rater.rate_frame(make_frame(calls))
    rated = 0
    for call, got in zip(calls, out.iter_rows(named=True), strict=True):
        row, cost = rater.rate_call(
            call["account"],
            call["callee_e164"],
            call["billsec"],
            call["disposition"] == "answered",
            call["start"],
        )
        if row is None:
            assert got["deck"] is None and got["cost_e4"] is None, (call, got)
            continue
        rated += 1
        assert (got["deck"], got["deck_row"], got["prefix"]) == (row.deck, row.row, row.prefix)
        assert cost is not None and cost_from_e4(got["cost_e4"]) == cost, (call, got)
        assert got["billing"] == row.billing and got["currency"] == "EUR"
    assert 25_000 < rated < 75_000  # both branches exercised


def test_rate_frame_longest_prefix_including_numbers_shorter_than_prefixes() -> None:
    deck = RateDeck.parse(
        "prefix,destination,rate_per_minute\n"
        "+670,TL,1\n"
        "6700,TL zero,2\n"
        "67077,TL mobile,3\n"
        "3,Europe,4\n"
        "31,NL,5\n"
        "3100,NL odd,6\n",
        "lpm",
    )
    numbers = {
        "+67077123456": "67077",
        "+6707": "670",
        "+670": "670",  # lies inside 6700's range on the number line, but is shorter
        "+67": None,
        "+6700": "6700",
        "+67001": "6700",
        "+31": "31",
        "+310": "31",
        "+3100": "3100",
        "+32": "3",
        "+3": "3",
        "+4": None,
        "+0031201234567": None,
        "31201234567": "31",
        "+31 20": None,
        "+1234567890123456": None,  # 16 digits: not E.164
    }
    rater = Rater.from_decks(deck)
    out = rater.rate_frame(make_frame([{"callee_e164": n} for n in numbers]))
    assert dict(zip(numbers, out["prefix"], strict=True)) == numbers
    for number, prefix in numbers.items():
        row = deck.lookup(number, T0)
        assert (row.prefix if row else None) == prefix, number


def test_two_decks_do_not_leak_into_each_other() -> None:
    a = RateDeck.parse("prefix,destination,rate_per_minute\n9,A nine,1\n", "a")
    b = RateDeck.parse("prefix,destination,rate_per_minute\n1,B one,2\n", "b")
    rater = Rater.from_decks(a, {"acc-b": b})
    frame = make_frame(
        [
            {"account": "x", "callee_e164": "+15551234"},
            {"account": "acc-b", "callee_e164": "+95551234"},
            {"account": "acc-b", "callee_e164": "+15551234"},
        ]
    )
    assert rater.rate_frame(frame)["deck"].to_list() == [None, None, "b"]
