"""Fast-path classification, describe() and the bulk frame path."""

from __future__ import annotations

import random

import polars as pl

from tollguard.cdr.model import NUMBERING_SCHEMA
from tollguard.numbering.classify import NumberClassifier, NumberInfo, describe
from tollguard.numbering.normalize import normalize_number
from tollguard.numbering.risk import RiskList
from tollguard.numbering.types import NumberType
from tollguard.policy import DialingContext

NL = DialingContext(country="NL")
RU = DialingContext(country="RU")


class CountingClassifier(NumberClassifier):
    def __init__(self, risk_list: RiskList | None = None) -> None:
        super().__init__(risk_list)
        self.computed: list[str] = []
        self.bulk: list[str | None] = []

    def _classify(self, e164: str) -> NumberInfo:
        self.computed.append(e164)
        return super()._classify(e164)

    def classify_series(self, e164: pl.Series, small_group: int = 200) -> pl.DataFrame:
        self.bulk.extend(e164.to_list())
        return super().classify_series(e164, small_group)


def test_types_countries_and_non_geographic_codes() -> None:
    c = NumberClassifier(RiskList())
    expect = {
        "+31201234567": ("NL", NumberType.FIXED_LINE),
        "+31612345678": ("NL", NumberType.MOBILE),
        "+319061234": ("NL", NumberType.PREMIUM_RATE),
        "+318001234": ("NL", NumberType.TOLL_FREE),
        "+12125550123": ("US", NumberType.FIXED_LINE_OR_MOBILE),
        "+80012345678": ("001", NumberType.TOLL_FREE),
        "+979123456789": ("001", NumberType.PREMIUM_RATE),
        "+870301234567": ("001", NumberType.SATELLITE),
        "+881612345678": ("001", NumberType.SATELLITE),
        "+88216123456": ("001", NumberType.SATELLITE),  # Thuraya: phonenumbers says VOIP
        "+883510012345": ("001", NumberType.VOIP),
        "+31123": ("NL", NumberType.UNKNOWN),  # invalid, country from the code
        "+11234567890": (None, NumberType.UNKNOWN),  # +1 shared code, no region fits
        "+999123456": (None, NumberType.UNKNOWN),  # unassigned code
    }
    for e164, (country, ntype) in expect.items():
        info = c.classify(e164)
        assert (info.country, info.number_type) == (country, ntype), e164
        assert info.e164 == e164
    for junk in (None, "", "31201234567", "+", "+31 20", "abc"):
        assert c.classify(junk) == NumberInfo(None, None, NumberType.UNKNOWN, None, None)


def test_classify_is_cached_per_number() -> None:
    c = CountingClassifier()
    first = c.classify("+67077231234")
    assert c.classify("+67077231234") is first
    assert c.computed == ["+67077231234"]
    assert c.cache_size() == 1


def test_describe_single_numbers() -> None:
    info = describe("00670 7723 1234", NL)
    assert (info.e164, info.country, info.risk) == ("+67077231234", "TL", "tl")
    assert describe("81079246516548", RU).e164 == "+79246516548"
    assert describe("1002", NL).number_type is NumberType.SHORT_CODE
    assert describe("*97", NL).number_type is NumberType.SHORT_CODE
    assert describe("&", NL) == NumberInfo(None, None, NumberType.UNKNOWN, None, None)
    own = CountingClassifier()
    describe("0201234567", NL, own)
    assert own.computed == ["+31201234567"]


def _records(
    callers: list[str | None], callees: list[str | None], accounts: list[str]
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "record_id": [f"r{i}" for i in range(len(callers))],
            "account": accounts,
            "caller": callers,
            "callee": callees,
        },
        schema={
            "record_id": pl.String,
            "account": pl.String,
            "caller": pl.String,
            "callee": pl.String,
        },
    )


def test_classify_frame_adds_schema_columns_in_order() -> None:
    frame = _records(
        ["0201234567", "211474", None, "89245555937", "0612345678"],
        ["00670 7723 1234", "1002", "&", "81079246516548", None],
        ["a", "a", "a", "ru", "a"],
    )
    ctx = {"a": NL, "ru": RU}
    out = NumberClassifier().classify_frame(frame, lambda acc: ctx.get(acc, NL))
    assert out.columns == [*frame.columns, *NUMBERING_SCHEMA]
    assert out.schema["number_type"] == pl.String
    assert out.get_column("record_id").to_list() == ["r0", "r1", "r2", "r3", "r4"]
    assert out.get_column("caller_e164").to_list() == [
        "+31201234567",
        None,
        None,
        "+79245555937",
        "+31612345678",
    ]
    assert out.get_column("callee_e164").to_list() == [
        "+67077231234",
        None,
        None,
        "+79246516548",
        None,
    ]
    assert out.get_column("country").to_list() == ["TL", None, None, "RU", None]
    assert out.get_column("number_type").to_list() == [
        "MOBILE",
        "SHORT_CODE",
        "UNKNOWN",
        "MOBILE",
        "UNKNOWN",
    ]
    assert out.get_column("risk").to_list() == ["tl", None, None, None, None]


def test_classify_frame_uses_the_context_of_each_account() -> None:
    frame = _records(["x", "x"], ["89245555937", "89245555937"], ["ru", "nl"])
    out = NumberClassifier().classify_frame(frame, lambda acc: RU if acc == "ru" else NL)
    # Same digits, two readings: Russian trunk 8 + mobile, and nothing valid in NL.
    assert out.get_column("callee_e164").to_list() == ["+79245555937", None]


def test_classify_frame_replaces_existing_numbering_columns() -> None:
    frame = _records(["0201234567"], ["0612345678"], ["a"]).with_columns(
        pl.lit("XX").alias("country"), pl.lit("stale").alias("risk")
    )
    out = NumberClassifier().classify_frame(frame, NL)
    assert out.columns == ["record_id", "account", "caller", "callee", *NUMBERING_SCHEMA]
    assert out.row(0, named=True)["country"] == "NL"
    assert out.row(0, named=True)["risk"] is None


def test_classify_frame_works_on_unique_numbers_and_matches_describe() -> None:
    rng = random.Random(7)
    pool = [f"06{rng.randrange(10**7, 10**8)}" for _ in range(300)] + [
        "00670 7723 1234",
        "0088216123456",
        "0031201234567",
        "1002",
        "&",
        "s",
        "0906 1234",
    ]
    n = 20_000
    callees: list[str | None] = [rng.choice(pool) for _ in range(n)]
    callers: list[str | None] = [rng.choice(pool[:50]) for _ in range(n)]
    accounts = [rng.choice(["a", "b", "c"]) for _ in range(n)]
    frame = _records(callers, callees, accounts)
    c = CountingClassifier()
    out = c.classify_frame(frame, NL)
    assert out.height == n
    unique_callee_e164 = {normalize_number(v, NL) for v in pool} - {None}
    used = {normalize_number(v, NL) for v in set(callees)} - {None}
    # The bulk path sees each unique callee string once (its E.164), callers never.
    assert len(c.bulk) == len(set(callees))
    assert set(c.bulk) - {None} == used
    assert used <= unique_callee_e164
    sample = out.sample(500, seed=1).iter_rows(named=True)
    for row in sample:
        info = describe(row["callee"], NL, c)
        assert (row["callee_e164"], row["country"], row["number_type"], row["risk"]) == (
            info.e164,
            info.country,
            info.number_type.value,
            info.risk,
        )
        assert row["caller_e164"] == normalize_number(row["caller"], NL)


def test_classify_frame_empty_and_null_accounts() -> None:
    empty = _records([], [], [])
    for ctx in (NL, lambda _acc: NL):
        out = NumberClassifier().classify_frame(empty, ctx)
        assert out.height == 0 and out.columns[-5:] == list(NUMBERING_SCHEMA)
    frame = pl.DataFrame(
        {"account": [None], "caller": ["0201234567"], "callee": ["0031612345678"]},
        schema={"account": pl.String, "caller": pl.String, "callee": pl.String},
    )
    seen: list[str] = []

    def ctx_for(acc: str) -> DialingContext:
        seen.append(acc)
        return NL

    out = NumberClassifier().classify_frame(frame, ctx_for)
    assert seen == [""]
    assert out.get_column("callee_e164").to_list() == ["+31612345678"]


def test_classify_frame_mostly_distinct_numbers_match_describe() -> None:
    """Mostly distinct callees take the direct path (no dedupe); same results."""
    rng = random.Random(3)
    kinds = ["06", "020", "0049151", "00447", "001212", "001876", "0067077", "0088216", "0906"]
    callees: list[str | None] = [
        rng.choice(kinds) + str(rng.randrange(10**5, 10**8)) for _ in range(4000)
    ]
    callees += ["1002", "*97", "&", None, "00 670 7723 1234", "+31 (0)20 123 4567"]
    callers: list[str | None] = [rng.choice(["0201234567", None, "211474"]) for _ in callees]
    frame = _records(callers, callees, [rng.choice(["a", "ru"]) for _ in callees])
    contexts = {"ru": RU}
    c = CountingClassifier()
    for ctx_by_account in (NL, lambda acc: NL, lambda acc: contexts.get(acc, NL)):
        out = c.classify_frame(frame, ctx_by_account)
        assert out.get_column("record_id").to_list() == frame.get_column("record_id").to_list()
        for row in out.iter_rows(named=True):
            ctx = (
                ctx_by_account
                if isinstance(ctx_by_account, DialingContext)
                else (ctx_by_account(row["account"]))
            )
            if row["callee"] is None:
                info = NumberInfo(None, None, NumberType.UNKNOWN, None, None)
            else:
                info = describe(row["callee"], ctx, c)
            assert (row["callee_e164"], row["country"], row["number_type"], row["risk"]) == (
                info.e164,
                info.country,
                info.number_type.value,
                info.risk,
            ), row
            expected_caller = (
                None if row["caller"] is None else normalize_number(row["caller"], ctx)
            )
            assert row["caller_e164"] == expected_caller
