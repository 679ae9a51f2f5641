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

import polars as pl

from tollguard.cdr.model import NUMBERING_SCHEMA
from tollguard.numbering import _meta
from tollguard.numbering.normalize import (
    is_short_code,
    normalize_expr,
    normalize_number,
    short_code_expr,
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
_E164 = re.compile(r"\+[0-9]{1,240}")
CACHE_CAP = 1 << 20


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

    # -- frames ----------------------------------------------------------
    def classify_frame(
        self,
        frame: pl.DataFrame,
        ctx_by_account: Callable[[str], DialingContext] | DialingContext,
    ) -> pl.DataFrame:
        """``frame`` with NUMBERING_SCHEMA columns (replaced if present), row order kept.

        Accounts are grouped by dialing context; each unique (context, number) is
        normalized once (in Polars) and each unique callee E.164 classified once, then
        the results are joined back.
        """
        base = frame.drop([c for c in NUMBERING_SCHEMA if c in frame.columns])
        # One id per distinct dialing context; accounts sharing a context share work.
        contexts: list[DialingContext]
        if isinstance(ctx_by_account, DialingContext):
            contexts = [ctx_by_account]
            ctx_col = pl.lit(0, dtype=pl.UInt32)
        else:
            accounts = base.get_column("account").cast(pl.String).fill_null("").unique().to_list()
            ids: dict[DialingContext, int] = {}
            account_ctx = {a: ids.setdefault(ctx_by_account(a), len(ids)) for a in accounts}
            contexts = list(ids) or [DialingContext()]  # empty frame: any context will do
            ctx_col = (
                pl.lit(0, dtype=pl.UInt32)  # Polars keeps String for an empty replace_strict
                if not account_ctx
                else pl.col("account")
                .cast(pl.String)
                .fill_null("")
                .replace_strict(
                    pl.Series(list(account_ctx), dtype=pl.String),
                    pl.Series(list(account_ctx.values()), dtype=pl.UInt32),
                    return_dtype=pl.UInt32,
                )
            )
        keyed = base.with_columns(
            ctx_col.alias("_ctx"),
            pl.col("caller").cast(pl.String).alias("_caller"),
            pl.col("callee").cast(pl.String).alias("_callee"),
        )
        callee_keys = keyed.select("_ctx", pl.col("_callee").alias("_num")).drop_nulls().unique()
        numbers = pl.concat(
            [
                keyed.select("_ctx", pl.col("_caller").alias("_num")).drop_nulls().unique(),
                callee_keys,
            ]
        ).unique()
        parts = [
            numbers.filter(pl.col("_ctx") == i).with_columns(
                normalize_expr("_num", ctx).alias("_e164"),
                short_code_expr("_num").alias("_short"),
            )
            for i, ctx in enumerate(contexts)
        ]
        lookup = pl.concat(parts) if len(parts) > 1 else parts[0]
        uniq = (
            lookup.join(callee_keys, on=["_ctx", "_num"], how="semi")
            .get_column("_e164")
            .drop_nulls()
            .unique()
            .to_list()
        )
        infos = [self.classify(e) for e in uniq]
        classes = pl.DataFrame(
            {
                "_e164": uniq,
                "country": [i.country for i in infos],
                "number_type": [i.number_type.value for i in infos],
                "risk": [i.risk for i in infos],
            },
            schema={
                "_e164": pl.String,
                "country": pl.String,
                "number_type": pl.String,
                "risk": pl.String,
            },
        )
        callee = lookup.join(classes, on="_e164", how="left").select(
            "_ctx",
            pl.col("_num").alias("_callee"),
            pl.col("_e164").alias("callee_e164"),
            "country",
            pl.when(pl.col("_e164").is_null())
            .then(
                pl.when(pl.col("_short"))
                .then(pl.lit(NumberType.SHORT_CODE.value))
                .otherwise(pl.lit(NumberType.UNKNOWN.value))
            )
            .otherwise(pl.col("number_type"))
            .alias("number_type"),
            "risk",
        )
        caller = lookup.select(
            "_ctx", pl.col("_num").alias("_caller"), pl.col("_e164").alias("caller_e164")
        )
        out = (
            keyed.join(caller, on=["_ctx", "_caller"], how="left", maintain_order="left")
            .join(callee, on=["_ctx", "_callee"], how="left", maintain_order="left")
            .with_columns(pl.col("number_type").fill_null(NumberType.UNKNOWN.value))
        )
        return out.select(
            *base.columns,
            *[pl.col(name).cast(dtype) for name, dtype in NUMBERING_SCHEMA.items()],
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
