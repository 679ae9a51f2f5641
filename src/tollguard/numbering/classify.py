"""Country, number type and risk of E.164 numbers: the fast path and the bulk path.

``NumberClassifier.classify`` never calls ``phonenumbers.parse``: it splits the
country calling code, picks the region as phonenumbers does and matches the national
number against the region's precompiled per-type patterns (see ``_meta``), then
looks the number up in the risk list. Results are cached per number.

``classify_frame`` adds ``NUMBERING_SCHEMA`` columns to a record frame, working on
unique (account, number) pairs and unique E.164 numbers and joining the results back.

Type mapping: phonenumbers' types keep their names. The satellite networks map to
``SATELLITE``: every typed number under +870 (Inmarsat) and +881 (GMSS), and under
+882/+883 (International Networks) the numbers phonenumbers calls mobile or fixed
line plus the Thuraya (+882 16) and EMSAT (+882 13) ranges; other +882/+883 types
(VOIP, VOICEMAIL) stay. Numbers phonenumbers cannot type are ``UNKNOWN`` with the
country where phonenumbers names one (single-region codes, leading-digit regions).
Dialed strings that are not E.164 but look like extensions or service codes are
``SHORT_CODE`` (``describe`` and ``classify_frame`` only).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import polars as pl

from tollguard.cdr.model import NUMBERING_SCHEMA
from tollguard.numbering import _bulk, _meta
from tollguard.numbering.normalize import (
    is_short_code,
    normalize_number,
    normalize_unique,
    short_code_series,
)
from tollguard.numbering.risk import RiskList
from tollguard.numbering.types import NumberType
from tollguard.policy import DialingContext

PNT = _meta.PNT
_PN_TO_TYPE: dict[int, NumberType] = {
    PNT.FIXED_LINE: NumberType.FIXED_LINE,
    PNT.MOBILE: NumberType.MOBILE,
    PNT.FIXED_LINE_OR_MOBILE: NumberType.FIXED_LINE_OR_MOBILE,
    PNT.TOLL_FREE: NumberType.TOLL_FREE,
    PNT.PREMIUM_RATE: NumberType.PREMIUM_RATE,
    PNT.SHARED_COST: NumberType.SHARED_COST,
    PNT.VOIP: NumberType.VOIP,
    PNT.PERSONAL_NUMBER: NumberType.PERSONAL_NUMBER,
    PNT.PAGER: NumberType.PAGER,
    PNT.UAN: NumberType.UAN,
    PNT.VOICEMAIL: NumberType.VOICEMAIL,
    PNT.UNKNOWN: NumberType.UNKNOWN,
}
SATELLITE_CODES = frozenset({870, 881})  # every typed number is satellite
INTERNATIONAL_NETWORK_CODES = frozenset({882, 883})
SATELLITE_NSN_PREFIXES: dict[int, tuple[str, ...]] = {882: ("13", "16")}  # EMSAT, Thuraya
_TERRESTRIAL = frozenset({PNT.MOBILE, PNT.FIXED_LINE, PNT.FIXED_LINE_OR_MOBILE})
_E164_PATTERN = r"\+[0-9]{1,240}"
_E164 = re.compile(_E164_PATTERN)
CACHE_CAP = 1 << 20
# classify_frame works on the column itself (no dedupe + join) when at least this
# share of its numbers is distinct (one context only).
DIRECT_SHARE = 0.6


def map_type(cc: int, nsn: str, pn_type: int) -> NumberType:
    """phonenumbers' type of (cc, nsn) as a tollguard NumberType (satellite rule above)."""
    if pn_type != PNT.UNKNOWN:
        if cc in SATELLITE_CODES:
            return NumberType.SATELLITE
        if cc in INTERNATIONAL_NETWORK_CODES and (
            pn_type in _TERRESTRIAL or nsn.startswith(SATELLITE_NSN_PREFIXES.get(cc, ()))
        ):
            return NumberType.SATELLITE
    return _PN_TO_TYPE.get(pn_type, NumberType.UNKNOWN)


def map_type_expr(cc: pl.Expr, nsn: pl.Expr, pn_type: pl.Expr) -> pl.Expr:
    """``map_type`` for columns (cc Int, nsn String, pn_type Int) -> NumberType value."""
    names = pn_type.replace_strict(
        [int(k) for k in _PN_TO_TYPE],
        [v.value for v in _PN_TO_TYPE.values()],
        default=NumberType.UNKNOWN.value,
        return_dtype=pl.String,
    )
    intl = cc.is_in(sorted(INTERNATIONAL_NETWORK_CODES))
    satellite = cc.is_in(sorted(SATELLITE_CODES)) | (
        intl & pn_type.is_in([int(t) for t in _TERRESTRIAL])
    )
    for code, prefixes in SATELLITE_NSN_PREFIXES.items():
        for prefix in prefixes:
            satellite = satellite | (intl & (cc == code) & nsn.str.starts_with(prefix))
    return (
        pl.when((pn_type != int(PNT.UNKNOWN)) & satellite)
        .then(pl.lit(NumberType.SATELLITE.value))
        .otherwise(names)
    )


@dataclass(frozen=True, slots=True)
class NumberInfo:
    e164: str | None
    country: str | None  # ISO alpha-2, "001" non-geographic, None unknown
    number_type: NumberType
    risk: str | None  # id of the matched risk entry
    risk_reason: str | None


_UNKNOWN = NumberInfo(None, None, NumberType.UNKNOWN, None, None)
_SHORT = NumberInfo(None, None, NumberType.SHORT_CODE, None, None)


class NumberClassifier:
    """Cached fast-path classification of E.164 numbers against a risk list."""

    def __init__(self, risk_list: RiskList | None = None) -> None:
        self.risk_list = risk_list if risk_list is not None else RiskList.bundled()
        self._cache: dict[str, NumberInfo] = {}

    def classify(self, e164: str | None) -> NumberInfo:
        """Country, type and risk of "+<digits>"; malformed input gives UNKNOWN."""
        if e164 is None:
            return _UNKNOWN
        hit = self._cache.get(e164)
        if hit is not None:
            return hit
        info = self._classify(e164)
        if len(self._cache) >= CACHE_CAP:
            self._cache.clear()
        self._cache[e164] = info
        return info

    def _classify(self, e164: str) -> NumberInfo:
        if _E164.fullmatch(e164) is None:
            return _UNKNOWN
        cc, nsn, region, pn_type = _meta.lookup(e164[1:])
        ntype = map_type(cc, nsn, pn_type)
        entry = self.risk_list.match(e164, region)
        if entry is None:
            return NumberInfo(e164, region, ntype, None, None)
        return NumberInfo(e164, region, ntype, entry.id, entry.reason)

    def cache_size(self) -> int:
        return len(self._cache)

    def classify_series(
        self, e164: pl.Series, small_group: int = _bulk.SMALL_GROUP
    ) -> pl.DataFrame:
        """``classify`` for many numbers at once (the bulk path; the cache is not used).

        Returns one row per input value, in order, with String columns ``e164``,
        ``country``, ``number_type`` (a NumberType value) and ``risk`` (entry id). Pass
        unique values: each row is computed. The number types come from phonenumbers'
        patterns run as Polars regular expressions per country calling code (see
        ``_bulk``); codes with fewer than ``small_group`` numbers, and the rare numbers
        that need phonenumbers' parse helpers, take the per-number path.
        """
        values = e164.cast(pl.String).alias("e164")
        ok = values.str.contains(f"^{_E164_PATTERN}$").fill_null(False)
        if not ok.all():
            values = pl.select(pl.when(pl.lit(ok)).then(pl.lit(values))).to_series()
        found = _bulk.lookup_frame(values.str.slice(1), small_group)
        risk = self.risk_list.match_series(found.get_column("digits"), found.get_column("region"))
        return found.select(
            pl.lit(values).alias("e164"),
            pl.col("region").alias("country"),
            map_type_expr(pl.col("cc"), pl.col("nsn"), pl.col("pn_type")).alias("number_type"),
            pl.lit(risk).alias("risk"),
        )

    # -- frames ----------------------------------------------------------
    def classify_frame(
        self,
        frame: pl.DataFrame,
        ctx_by_account: Callable[[str], DialingContext] | DialingContext,
    ) -> pl.DataFrame:
        """``frame`` with NUMBERING_SCHEMA columns (replaced if present), row order kept.

        Accounts are grouped by dialing context. Numbers are normalized and callees
        classified in bulk (``normalize_unique``, ``classify_series``): on the unique
        (context, number) pairs, joined back; or, with one context and mostly distinct
        numbers (estimated), on the column itself, which saves the dedupe and the join.
        """
        base = frame.drop([c for c in NUMBERING_SCHEMA if c in frame.columns])
        # One id per distinct dialing context; accounts sharing a context share work.
        contexts: list[DialingContext]
        ctx_col: pl.Expr | None = None
        if isinstance(ctx_by_account, DialingContext):
            contexts = [ctx_by_account]
        else:
            accounts = base.get_column("account").cast(pl.String).fill_null("").unique().to_list()
            ids: dict[DialingContext, int] = {}
            account_ctx = {a: ids.setdefault(ctx_by_account(a), len(ids)) for a in accounts}
            contexts = list(ids) or [DialingContext()]  # empty frame: any context will do
            if len(contexts) > 1:
                ctx_col = (
                    pl.col("account")
                    .cast(pl.String)
                    .fill_null("")
                    .replace_strict(
                        pl.Series(list(account_ctx), dtype=pl.String),
                        pl.Series(list(account_ctx.values()), dtype=pl.UInt32),
                        return_dtype=pl.UInt32,
                    )
                )
        keyed = base.select(
            *([ctx_col.alias("_ctx")] if ctx_col is not None else []),
            pl.col("caller").cast(pl.String).alias("_caller"),
            pl.col("callee").cast(pl.String).alias("_callee"),
        )
        caller = self._numbering(keyed, "_caller", contexts, self._caller_columns)
        callee = self._numbering(keyed, "_callee", contexts, self._callee_columns)
        out = pl.concat([base, caller, callee], how="horizontal").with_columns(
            pl.col("number_type").fill_null(NumberType.UNKNOWN.value)  # null callee
        )
        return out.select(*base.columns, *NUMBERING_SCHEMA).cast(pl.Schema(NUMBERING_SCHEMA))

    def _numbering(
        self,
        keyed: pl.DataFrame,
        column: str,
        contexts: list[DialingContext],
        columns: Callable[[pl.Series, DialingContext], pl.DataFrame],
    ) -> pl.DataFrame:
        """``columns(numbers, ctx)`` for each row of ``keyed[column]``, row order kept."""
        numbers = keyed.get_column(column)
        if "_ctx" not in keyed.columns:
            ctx = contexts[0]
            distinct = cast(int, numbers.approx_n_unique()) if numbers.len() else 0
            if distinct > DIRECT_SHARE * numbers.len():
                return columns(numbers, ctx)
            uniq = numbers.unique().drop_nulls().rename("_num")
            table = pl.concat([uniq.to_frame(), columns(uniq, ctx)], how="horizontal")
            lookup = numbers.rename("_num").to_frame()
            joined = lookup.join(table, on="_num", how="left", maintain_order="left")
            return joined.drop("_num")
        keys = ["_ctx", "_num"]
        pairs = keyed.select("_ctx", pl.col(column).alias("_num")).unique().drop_nulls()
        parts = []
        for i, ctx in enumerate(contexts):
            part = pairs.filter(pl.col("_ctx") == i)
            parts.append(pl.concat([part, columns(part.get_column("_num"), ctx)], how="horizontal"))
        lookup = keyed.select("_ctx", pl.col(column).alias("_num"))
        joined = lookup.join(pl.concat(parts), on=keys, how="left", maintain_order="left")
        return joined.drop(keys)

    @staticmethod
    def _caller_columns(numbers: pl.Series, ctx: DialingContext) -> pl.DataFrame:
        return normalize_unique(numbers, ctx).rename("caller_e164").to_frame()

    def _callee_columns(self, numbers: pl.Series, ctx: DialingContext) -> pl.DataFrame:
        """callee_e164, country, number_type, risk of each of ``numbers`` (nulls allowed)."""
        e164 = normalize_unique(numbers, ctx)
        classes = self.classify_series(e164)
        # Numbers that are not E.164: extension / service-code shaped, or unknown.
        types = classes.get_column("number_type")
        missing = e164.is_null()
        if missing.any():
            short = short_code_series(numbers.filter(missing))
            kinds = pl.select(
                pl.when(pl.lit(short))
                .then(pl.lit(NumberType.SHORT_CODE.value))
                .otherwise(pl.lit(NumberType.UNKNOWN.value))
            ).to_series()
            types = types.scatter(missing.arg_true(), kinds)
        return pl.DataFrame(
            [
                e164.rename("callee_e164"),
                classes.get_column("country"),
                types.rename("number_type"),
                classes.get_column("risk"),
            ]
        )


_default: NumberClassifier | None = None


def default_classifier() -> NumberClassifier:
    """A process-wide classifier with the bundled risk list."""
    global _default
    if _default is None:
        _default = NumberClassifier()
    return _default


def describe(
    dialed: str, ctx: DialingContext, classifier: NumberClassifier | None = None
) -> NumberInfo:
    """Normalize and classify one dialed number (authorize API, rate lookups)."""
    e164 = normalize_number(dialed, ctx)
    if e164 is None:
        return _SHORT if is_short_code(dialed) else _UNKNOWN
    return (classifier or default_classifier()).classify(e164)
