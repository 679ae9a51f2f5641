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

import polars as pl

from tollguard.numbering import _bulk, _meta
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
    """``_valid`` of each (null: False), by the bulk lookup on the unique values."""
    uniq = s.drop_nulls().unique()
    if uniq.len() == 0:
        return pl.repeat(False, s.len(), dtype=pl.Boolean, eager=True)
    found = _bulk.lookup_frame(uniq)
    canonical = pl.col("cc").cast(pl.String).str.len_chars() + pl.col("nsn").str.len_chars()
    good = found.filter(
        (pl.col("pn_type") != int(_meta.PNT.UNKNOWN))
        & (canonical == pl.col("digits").str.len_chars())
    ).get_column("digits")
    return s.is_in(good.implode()).fill_null(False)


def _international_expr(digits: pl.Expr) -> pl.Expr:
    """``_international`` of a column (it is used more than once: pass a column)."""
    n = digits.str.len_chars()
    ok = (n >= MIN_E164) & (n <= MAX_E164) & _bulk.has_cc_expr(digits)
    return pl.when(ok).then(pl.lit("+") + digits)


def _lengths_in(n: pl.Expr, lengths: frozenset[int]) -> pl.Expr:
    return n.is_in(sorted(lengths)) if lengths else pl.lit(False)


class _Rows:
    """Rows still to normalize (``_i`` position, ``d`` digits) and the results so far."""

    def __init__(self, digits: pl.Series) -> None:
        self.pending = pl.DataFrame({"d": digits.cast(pl.String)}).with_row_index("_i")
        self.out = pl.repeat(None, digits.len(), dtype=pl.String, eager=True)

    def settle(self, mask: pl.Series, value: pl.Expr) -> None:
        """Rows where ``mask`` holds get ``value`` (may be null) and leave ``pending``."""
        mask = mask.fill_null(False)
        if mask.any():
            done = self.pending.filter(mask)
            self.out.scatter(done.get_column("_i"), done.select(value).to_series())
            self.pending = self.pending.filter(~mask)

    def column(self, expr: pl.Expr) -> pl.Series:
        return self.pending.select(expr).to_series()


def _national_series(digits: pl.Series, plan: DialPlan) -> pl.Series:
    """``_national`` of each of ``digits`` (null: None): each rule runs on the rows the
    earlier rules left, so the validity checks only see their own candidates."""
    rows = _Rows(digits)
    d = pl.col("d")
    n = d.str.len_chars()
    if plan.international_prefix:
        intl = plan.international_prefix
        if intl.isdigit():  # a literal prefix ("00", "011", "810"): no regex needed
            has_intl, rest = d.str.starts_with(intl), d.str.slice(len(intl))
        else:
            pat = f"^(?:{intl})"
            has_intl, rest = d.str.contains(pat), d.str.replace(pat, "")
        rows.pending = rows.pending.with_columns(has_intl.alias("_hit"), rest.alias("_rest"))
        rows.settle(rows.column(pl.col("_hit")), _international_expr(pl.col("_rest")))
        rows.pending = rows.pending.drop("_hit", "_rest")
    cc = plan.country_code
    if cc is not None:
        trunk = plan.trunk_prefix
        if trunk:
            nsn = d.str.slice(len(trunk))
            nn = nsn.str.len_chars()
            plausible = d.str.starts_with(trunk) & _lengths_in(nn, plan.national_lengths)
            # Long enough national numbers need no validity check; short ones do.
            long_enough = rows.column(plausible & (nn > MAX_SHORT_NATIONAL))
            short = rows.column(
                pl.when(plausible & (nn <= MAX_SHORT_NATIONAL)).then(pl.lit(cc) + nsn)
            )
            rows.settle(long_enough | _valid_series(short), pl.lit("+" + cc) + nsn)
        bare = rows.column(pl.when(_lengths_in(n, plan.national_lengths)).then(pl.lit(cc) + d))
        rows.settle(_valid_series(bare), pl.lit("+" + cc) + d)
    bare_intl = rows.column(pl.when((n >= MIN_BARE_INTERNATIONAL) & (n <= MAX_E164)).then(d))
    rows.settle(_valid_series(bare_intl), pl.lit("+") + d)
    return rows.out


def normalize_unique(values: pl.Series, ctx: DialingContext) -> pl.Series:
    """``normalize_number`` of each of ``values`` (String, nulls allowed), in order, as
    the String Series ``_e164``. Every row is computed: pass unique values.

    The rules run as Polars expressions on shrinking sets of rows; the validity checks
    by the bulk lookup of ``_bulk`` on the unique candidates.
    """
    plan = dial_plan(ctx)
    s = values.cast(pl.String).alias("s")
    ok = s.str.contains(_DIGITS).fill_null(False)
    if not ok.all():  # most values are "+"/digits already: clean only the others
        idx = (~ok & s.is_not_null()).arg_true()
        if idx.len():
            s = s.scatter(idx, pl.select(_clean_expr(pl.lit(s.gather(idx)))).to_series())
            ok = s.str.contains(_DIGITS).fill_null(False)
    out = pl.repeat(None, s.len(), dtype=pl.String, eager=True).alias("_e164")
    frame = pl.DataFrame({"s": s, "ok": ok}).with_row_index("_i").filter(pl.col("ok"))
    plus = frame.get_column("s").str.starts_with("+")
    intl = frame.filter(plus)
    if intl.height:
        e164 = intl.select(_international_expr(pl.col("s").str.slice(1))).to_series()
        out.scatter(intl.get_column("_i"), e164)
    national = frame.filter(~plus)
    if national.height == 0:
        return out
    d = national.get_column("s")
    olp = plan.outside_line_prefix
    if olp:
        has_olp = d.str.starts_with(olp) & (d.str.len_chars() > len(olp))
        rest = pl.select(pl.when(pl.lit(has_olp)).then(pl.lit(d).str.slice(len(olp))))
        stripped = _national_series(rest.to_series(), plan)
        # If the rest does not normalize, the unstripped digits are tried.
        retry = stripped.is_null()
        again = _national_series(d.filter(retry), plan)
        result = stripped.scatter(retry.arg_true(), again)
    else:
        result = _national_series(d, plan)
    out.scatter(national.get_column("_i"), result)
    return out


def normalize_series(values: pl.Series, ctx: DialingContext) -> pl.Series:
    """``normalize_number`` for a Series: ``normalize_unique`` on its unique values,
    mapped back in order."""
    values = values.cast(pl.String)
    uniq = values.drop_nulls().unique()
    result = normalize_unique(uniq, ctx)
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


def short_code_series(values: pl.Series) -> pl.Series:
    """``is_short_code`` of each of ``values`` (null: False)."""
    return (
        pl.select(_clean_expr(pl.lit(values.cast(pl.String))).str.contains(_SHORT))
        .to_series()
        .fill_null(False)
    )
