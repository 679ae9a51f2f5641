"""Dialed strings to E.164, per dialing context.

Rules, in order (the same in ``normalize_number`` and the frame version
``normalize_expr``):

1. Clean: drop ``tel:``/``sip:`` schemes and anything after ``@`` or ``;``, the
   "(0)" of "+31 (0)20 ...", spaces, dashes, dots, slashes and parentheses. What is
   left must be ``+`` and/or digits, else the number is junk (``&``, ``s``,
   ``anonymous``, ``1002#``) and normalizes to None.
2. ``+digits``: international. Valid when it starts with an assigned country calling
   code and has 7..15 digits.
3. Otherwise the PBX outside-line prefix (``outside_line_prefix``, e.g. "9") is
   stripped when present; if the rest does not normalize, the unstripped digits are
   tried (so "9175551234" in a US context with "9" stays a New York number).
4. International prefix (``00`` NL/most of Europe, ``011`` US/CA, ``810`` RU; the
   region's own from phonenumbers' metadata unless the context sets one): the rest is
   treated as in 2.
5. Trunk prefix (``0`` NL/DE/GB/BE, ``1`` US, ``8`` RU) followed by a national number
   of a possible length for the region; numbers of 6 digits or fewer must also be
   valid (``0 14020``).
6. A bare national significant number that is a valid number of the country code.
7. Digits that form a valid international number without a prefix, 10+ digits
   (SIP caller IDs like "31201234567").
8. Anything else (internal extensions, service codes, local numbers without area
   code) is None.

"Valid" means phonenumbers' metadata assigns a number type (the fast path in
``_meta``), never ``phonenumbers.parse``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import polars as pl

from tollguard.numbering import _meta
from tollguard.policy import DialingContext

_SCHEME = r"^(?i:tel:|sips?:)"
_PARAMS = r"[@;].*$"
_TRUNK_ZERO = r"\(0\)"
_FORMAT = r"[\s\-./()\[\]]"
_DIGITS = r"^\+?[0-9]+$"
_SHORT = r"^(?:[0-9*#]{1,6}|[*#][0-9*#]{1,11})$"
MIN_E164 = 7  # +683 4002 (Niue) is the shortest assigned kind
MAX_E164 = 15
MAX_SHORT_NATIONAL = 6  # extension-length: national numbers this short must be valid
MIN_BARE_INTERNATIONAL = 10

_scheme_re = re.compile(_SCHEME)
_params_re = re.compile(_PARAMS)
_trunk_zero_re = re.compile(_TRUNK_ZERO)
_format_re = re.compile(_FORMAT)
_digits_re = re.compile(_DIGITS)
_short_re = re.compile(_SHORT)
_CC_RE = "^(?:" + "|".join(sorted(_meta.COUNTRY_CODES, key=lambda c: (-len(c), c))) + ")"


@dataclass(frozen=True, slots=True)
class DialPlan:
    """A dialing context resolved against phonenumbers' metadata."""

    country_code: str | None  # "31"; None when the context country has no metadata
    international_prefix: str | None  # regex, matched at the start
    trunk_prefix: str | None
    outside_line_prefix: str
    national_lengths: frozenset[int]


@lru_cache(maxsize=1024)
def dial_plan(ctx: DialingContext) -> DialPlan:
    """Context defaults filled from the country's metadata (loaded once per country)."""
    region = _meta.region_dialing(ctx.country) if ctx.country != "001" else None
    if ctx.international_prefix is not None:
        intl: str | None = re.escape(ctx.international_prefix) if ctx.international_prefix else None
    else:
        intl = region.international_prefix if region is not None else "00"
    if ctx.trunk_prefix is not None:
        trunk = ctx.trunk_prefix or None
    else:
        trunk = region.national_prefix if region is not None else None
    return DialPlan(
        country_code=region.country_code if region is not None else None,
        international_prefix=intl,
        trunk_prefix=trunk,
        outside_line_prefix=ctx.outside_line_prefix.strip(),
        national_lengths=region.possible_lengths if region is not None else frozenset(),
    )


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(f"^(?:{pattern})")


def _clean(dialed: str) -> str:
    s = _scheme_re.sub("", dialed, count=1)
    s = _params_re.sub("", s, count=1)
    s = _trunk_zero_re.sub("", s)
    return _format_re.sub("", s)


def is_valid_e164_digits(digits: str) -> bool:
    """Whether "+digits" is a canonical E.164 number that phonenumbers' metadata types."""
    return _valid(digits)


@lru_cache(maxsize=1 << 18)
def _valid(digits: str) -> bool:
    cc, nsn, _, pn_type = _meta.lookup(digits)
    # Canonical only: "+31 0 20..." is valid for phonenumbers (it strips the 0) but
    # is not how the number is written in E.164.
    return pn_type != _meta.PNT.UNKNOWN and len(str(cc)) + len(nsn) == len(digits)


def _international(digits: str) -> str | None:
    if MIN_E164 <= len(digits) <= MAX_E164 and _meta.split_cc(digits) is not None:
        return "+" + digits
    return None


def _national(d: str, plan: DialPlan) -> str | None:
    if plan.international_prefix:
        m = _compiled(plan.international_prefix).match(d)
        if m is not None:
            return _international(d[m.end() :])
    cc = plan.country_code
    if cc is not None:
        trunk = plan.trunk_prefix
        if trunk and d.startswith(trunk):
            nsn = d[len(trunk) :]
            if len(nsn) in plan.national_lengths and (
                len(nsn) > MAX_SHORT_NATIONAL or _valid(cc + nsn)
            ):
                return "+" + cc + nsn
        if len(d) in plan.national_lengths and _valid(cc + d):
            return "+" + cc + d
    if MIN_BARE_INTERNATIONAL <= len(d) <= MAX_E164 and _valid(d):
        return "+" + d
    return None


def normalize_number(dialed: str | None, ctx: DialingContext) -> str | None:
    """E.164 ("+31201234567") for a dialed/caller number, or None when it is not one."""
    if dialed is None:
        return None
    s = _clean(dialed)
    if not _digits_re.match(s):
        return None
    if s[0] == "+":
        return _international(s[1:])
    plan = dial_plan(ctx)
    olp = plan.outside_line_prefix
    if olp and s.startswith(olp) and len(s) > len(olp):
        stripped = _national(s[len(olp) :], plan)
        if stripped is not None:
            return stripped
    return _national(s, plan)


def is_short_code(dialed: str | None) -> bool:
    """Extension / service-code shaped (≤ 6 digits, or a */# feature code)."""
    if dialed is None:
        return False
    return _short_re.match(_clean(dialed)) is not None


# -- frames ---------------------------------------------------------------


def _clean_expr(col: pl.Expr) -> pl.Expr:
    return (
        col.str.replace(_SCHEME, "")
        .str.replace(_PARAMS, "")
        .str.replace_all(_TRUNK_ZERO, "")
        .str.replace_all(_FORMAT, "")
    )


def _valid_series(s: pl.Series) -> pl.Series:
    uniq = s.drop_nulls().unique()
    good = [d for d in uniq.to_list() if _valid(d)]
    return s.is_in(pl.Series(good, dtype=pl.String).implode()).fill_null(False)


def _valid_expr(digits: pl.Expr) -> pl.Expr:
    return digits.map_batches(_valid_series, return_dtype=pl.Boolean)


def _international_expr(digits: pl.Expr) -> pl.Expr:
    n = digits.str.len_chars()
    ok = digits.str.contains(_CC_RE) & (n >= MIN_E164) & (n <= MAX_E164)
    return pl.when(ok).then(pl.lit("+") + digits)


def _lengths_in(n: pl.Expr, lengths: frozenset[int]) -> pl.Expr:
    return n.is_in(sorted(lengths)) if lengths else pl.lit(False)


def _national_expr(d: pl.Expr, plan: DialPlan) -> pl.Expr:
    n = d.str.len_chars()
    cases: list[tuple[pl.Expr, pl.Expr]] = []
    # Rows an earlier rule settles without a validity check; later (validity-checked)
    # candidates are masked with it, so the per-unique lookups only run where needed.
    settled: pl.Expr = pl.lit(False)
    if plan.international_prefix:
        pat = f"^(?:{plan.international_prefix})"
        has_intl = d.str.contains(pat)
        cases.append((has_intl, _international_expr(d.str.replace(pat, ""))))
        settled = has_intl
    cc = plan.country_code
    if cc is not None:
        trunk = plan.trunk_prefix
        if trunk:
            nsn = d.str.slice(len(trunk))
            nn = nsn.str.len_chars()
            plausible = d.str.starts_with(trunk) & _lengths_in(nn, plan.national_lengths)
            long_enough = plausible & (nn > MAX_SHORT_NATIONAL)
            cand = pl.when(~settled & plausible & ~long_enough).then(pl.lit(cc) + nsn)
            cases.append((long_enough | _valid_expr(cand), pl.lit("+" + cc) + nsn))
            settled = settled | long_enough
        bare = pl.when(~settled & _lengths_in(n, plan.national_lengths)).then(pl.lit(cc) + d)
        cases.append((_valid_expr(bare), pl.lit("+" + cc) + d))
    intl = pl.when(~settled & (n >= MIN_BARE_INTERNATIONAL) & (n <= MAX_E164)).then(d)
    cases.append((_valid_expr(intl), pl.lit("+") + d))
    cond, value = cases[0]
    chain: Any = pl.when(cond).then(value)
    for cond, value in cases[1:]:
        chain = chain.when(cond).then(value)
    out: pl.Expr = chain.otherwise(pl.lit(None, dtype=pl.String))
    return out


def normalize_series(values: pl.Series, ctx: DialingContext) -> pl.Series:
    """``normalize_number`` for a Series: the rules as Polars expressions, run once per
    unique value (intermediate columns materialized), mapped back in order."""
    plan = dial_plan(ctx)
    values = values.cast(pl.String)
    uniq = values.drop_nulls().unique()
    steps = (
        pl.DataFrame({"raw": uniq})
        .with_columns(_clean_expr(pl.col("raw")).alias("s"))
        .with_columns(
            pl.col("s").str.contains(_DIGITS).alias("ok"),
            pl.col("s").str.starts_with("+").alias("plus"),
            pl.col("s").str.strip_prefix("+").alias("d"),
        )
    )
    d = pl.col("d")
    national = _national_expr(d, plan)
    olp = plan.outside_line_prefix
    if olp:
        has_olp = d.str.starts_with(olp) & (d.str.len_chars() > len(olp))
        steps = steps.with_columns(pl.when(has_olp).then(d.str.slice(len(olp))).alias("d_olp"))
        national = pl.coalesce(_national_expr(pl.col("d_olp"), plan), national)
    result = steps.select(
        pl.when(pl.col("ok") & pl.col("plus"))
        .then(_international_expr(d))
        .when(pl.col("ok"))
        .then(national)
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias("e164")
    ).get_column("e164")
    return values.replace_strict(uniq, result, default=None, return_dtype=pl.String)


def normalize_expr(column: str, ctx: DialingContext) -> pl.Expr:
    """``normalize_number`` for a whole String column; same results, bulk.

    The string rules run as Polars expressions on the column's unique values; the
    validity checks (is this a real number of the country code?) run once per unique
    candidate through the cached fast path.
    """
    return (
        pl.col(column)
        .map_batches(lambda s: normalize_series(s, ctx), return_dtype=pl.String)
        .alias(column)
    )


def short_code_expr(column: str) -> pl.Expr:
    """``is_short_code`` for a column (null input: False)."""
    return _clean_expr(pl.col(column)).str.contains(_SHORT).fill_null(False)
