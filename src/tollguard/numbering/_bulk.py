"""The fast path of ``_meta.lookup`` for many numbers at once, as Polars expressions.

``lookup_frame`` takes unique E.164 digit strings (no "+") and returns what
``_meta.lookup`` returns for each, computed per country calling code with Polars'
(Rust) regular expressions instead of one Python call per number:

* the country calling code is the first 1-3 digits that are an assigned code;
* phonenumbers' per-type national-number patterns of each region are full-matched
  (``^(?:...)$``) on the national significant numbers (NSN) of the code, in
  phonenumbers' type priority order, with the per-type possible lengths and the
  general-description check, as ``RegionMatcher.number_type`` does;
* shared codes (+1, +7, +44, ...) pick the region as ``CountryCode.classify`` does:
  regions in phonenumbers' order, leading digits decide, else the first region whose
  patterns type the number.

Only numbers that need phonenumbers' own parse helpers go through the per-number
Python path: a national prefix written after the country code (``+44 0 20...``,
``+7 8...``), codes with a pattern Rust's regex engine rejects, and, by default,
codes with so few numbers in the call that compiling their patterns costs more than
classifying them one by one. The agreement with the per-number path and with
phonenumbers is asserted by tests/numbering/test_agreement.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import polars as pl
from phonenumbers.phonemetadata import PhoneMetadata
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from tollguard.numbering import _meta

PNT = _meta.PNT
UNKNOWN = int(PNT.UNKNOWN)
# Codes with fewer unique numbers than this in one call take the per-number path
# (compiling a code's patterns costs ~0.3 ms each; a number ~10 µs in Python).
SMALL_GROUP = 200
LOOKUP_SCHEMA: dict[str, pl.DataType] = {
    "digits": pl.String(),
    "cc": pl.Int32(),  # 0: no assigned country calling code
    "nsn": pl.String(),  # after national-prefix stripping, as _meta.lookup
    "region": pl.String(),
    "pn_type": pl.Int32(),  # phonenumbers PhoneNumberType
}
_CC_BY_LEN: tuple[list[str], list[str], list[str]] = (
    sorted(c for c in _meta.COUNTRY_CODES if len(c) == 1),
    sorted(c for c in _meta.COUNTRY_CODES if len(c) == 2),
    sorted(c for c in _meta.COUNTRY_CODES if len(c) == 3),
)


@cache
def rust_regex_ok(pattern: str) -> bool:
    """Whether Polars (Rust ``regex``) compiles ``pattern``."""
    try:
        pl.Series(["0"]).str.contains(pattern)
    except Exception:  # polars raises ComputeError; any failure means "not usable"
        return False
    return True


def _full(pattern: str) -> str:
    return f"^(?:{pattern})$"


@dataclass(frozen=True, slots=True)
class _TypeRule:
    pn_type: int
    inner: str  # phonenumbers' national number pattern (full-matched)
    lengths: frozenset[int]  # empty: any length


def _rule(desc: object, pn_type: int) -> _TypeRule | None:
    pattern = getattr(desc, "national_number_pattern", None) if desc is not None else None
    if not pattern:
        return None
    return _TypeRule(pn_type, pattern, frozenset(getattr(desc, "possible_length", ())))


def _matches(rule: _TypeRule) -> pl.Expr:
    """Whether the NSN has a length the rule allows and fully matches its pattern."""
    full = pl.col("nsn").str.contains(_full(rule.inner))
    return pl.col("n").is_in(sorted(rule.lengths)) & full if rule.lengths else full


class RegionPlan:
    """``RegionMatcher.number_type`` of one region as Polars expressions."""

    def __init__(self, region: str, meta: object) -> None:
        self.region = region
        ld = getattr(meta, "leading_digits", None)
        self.leading: str | None = f"^(?:{ld})" if ld is not None else None
        self.same_fixed_mobile = bool(getattr(meta, "same_mobile_and_fixed_line_pattern", False))
        self.general = _rule(getattr(meta, "general_desc", None), UNKNOWN)
        self.rules: list[_TypeRule] = []
        self.mobile: _TypeRule | None = None
        if self.general is not None:
            for attr, ptype in _meta._TYPE_ORDER:
                if ptype == PNT.MOBILE and self.same_fixed_mobile:
                    continue
                rule = _rule(getattr(meta, attr), int(ptype))
                if rule is not None:
                    self.rules.append(rule)
            if not self.same_fixed_mobile:
                self.mobile = _rule(getattr(meta, "mobile", None), int(PNT.MOBILE))
        patterns = [_full(r.inner) for r in self.rules]
        patterns += [_full(p.inner) for p in (self.general, self.mobile) if p is not None]
        patterns += [self.leading] if self.leading is not None else []
        self.rust_ok = all(rust_regex_ok(p) for p in patterns)

    def number_types(self, df: pl.DataFrame) -> pl.Series:
        """phonenumbers' type (Int32) of each ``nsn`` of ``df`` (columns nsn, n).

        Fixed line and mobile (most numbers) are matched on every row; the other types
        only on the rows one combined pattern of all of them accepts.
        """
        general = self.general
        if general is None or df.height == 0:
            return pl.Series("pn_type", [UNKNOWN] * df.height, dtype=pl.Int32)
        present = set(df.get_column("n").unique().to_list())
        live = [r for r in self.rules if not r.lengths or r.lengths & present]
        common = [r for r in live if r.pn_type in (PNT.FIXED_LINE, PNT.MOBILE)]
        rare = [r for r in live if r.pn_type not in (PNT.FIXED_LINE, PNT.MOBILE)]
        checks = {"g": _matches(general)}
        if rare:
            checks["rare"] = pl.col("nsn").str.contains(_full("|".join(r.inner for r in rare)))
        hits = df.select(**checks, **self._checks(common))
        out = hits.select(
            pl.when(pl.col("g"))
            .then(self._chain(common))
            .otherwise(pl.lit(UNKNOWN, dtype=pl.Int32))
        ).to_series()
        if rare:
            again = hits.get_column("g") & hits.get_column("rare")
            if again.any():
                sub = df.filter(again)
                sub_types = sub.select(**self._checks(live)).select(self._chain(live))
                out = out.scatter(again.arg_true(), sub_types.to_series())
        return out.alias("pn_type")

    def _checks(self, rules: list[_TypeRule]) -> dict[str, pl.Expr]:
        checks = {f"t{r.pn_type}": _matches(r) for r in rules}
        mobile = self.mobile
        fixed = any(r.pn_type == PNT.FIXED_LINE for r in rules)
        if fixed and mobile is not None and f"t{mobile.pn_type}" not in checks:
            checks[f"t{mobile.pn_type}"] = _matches(mobile)
        return checks

    def _chain(self, rules: list[_TypeRule]) -> pl.Expr:
        """The first rule (priority order) whose column is true, FIXED_LINE refined."""
        chain: pl.Expr = pl.lit(UNKNOWN, dtype=pl.Int32)
        for rule in reversed(rules):
            value: pl.Expr = pl.lit(rule.pn_type, dtype=pl.Int32)
            if rule.pn_type == PNT.FIXED_LINE:
                flom = pl.lit(int(PNT.FIXED_LINE_OR_MOBILE), dtype=pl.Int32)
                if self.same_fixed_mobile:
                    value = flom
                elif self.mobile is not None:
                    value = pl.when(pl.col(f"t{int(PNT.MOBILE)}")).then(flom).otherwise(value)
            chain = pl.when(pl.col(f"t{rule.pn_type}")).then(value).otherwise(chain)
        return chain


class CodePlan:
    """``CountryCode`` of one calling code as Polars expressions."""

    def __init__(self, cc: int) -> None:
        self.cc = cc
        names = COUNTRY_CODE_TO_REGION_CODE[cc]
        self.regions: list[RegionPlan] = []
        for name in names:
            meta = PhoneMetadata.metadata_for_region_or_calling_code(cc, name)
            if meta is not None:
                self.regions.append(RegionPlan(name, meta))
        main = PhoneMetadata.metadata_for_region_or_calling_code(cc, names[0])
        npfp = main.national_prefix_for_parsing if main is not None else None
        # Numbers the national prefix pattern matches go to the per-number path. When
        # the pattern can match the empty string, only non-empty matches count, and
        # only if an empty match leaves the number unchanged (no transform applies).
        self.npfp: pl.Expr | None = None
        if npfp:
            empty = re.match(npfp, "")
            transform = main.national_prefix_transform_rule if main is not None else None
            nsn = pl.col("nsn")
            if empty is None or (transform and empty.lastindex and empty.group(empty.lastindex)):
                self.npfp = nsn.str.contains(f"^(?:{npfp})")
            else:
                self.npfp = nsn.str.extract(f"^({npfp})", 1).str.len_chars().fill_null(0) > 0
            self.rust_ok = rust_regex_ok(f"^({npfp})")
        else:
            self.rust_ok = True
        self.rust_ok = self.rust_ok and all(r.rust_ok for r in self.regions)

    def classify(self, df: pl.DataFrame) -> pl.DataFrame:
        """(_i, region, pn_type) for ``df`` (_i, nsn, n) of this code; region as an
        index into ``REGIONS``."""
        if len(self.regions) == 1:
            only = self.regions[0]
            return df.select("_i", _region_lit(only.region)).with_columns(only.number_types(df))
        parts: list[pl.DataFrame] = []
        rest = df
        for rp in self.regions:
            if rest.height == 0:
                break
            if rp.leading is not None:
                mask = rest.get_column("nsn").str.contains(rp.leading)
                hit = rest.filter(mask)
                parts.append(
                    hit.select("_i", _region_lit(rp.region)).with_columns(rp.number_types(hit))
                )
                rest = rest.filter(~mask)
            else:
                types = rp.number_types(rest)
                typed = types != UNKNOWN
                parts.append(
                    rest.filter(typed)
                    .select("_i", _region_lit(rp.region))
                    .with_columns(types.filter(typed))
                )
                rest = rest.filter(~typed)
        parts.append(rest.select("_i", _region_lit(None), _unknown_lit()))
        return pl.concat(parts)


@cache
def code_plan(cc: int) -> CodePlan:
    return CodePlan(cc)


@cache
def _cc_table() -> tuple[pl.Series, pl.Series]:
    """Per 3-digit head 0..999: the country calling code it starts with, and its length."""
    codes = [_meta.split_cc(f"{i:03d}") for i in range(1000)]
    return (
        pl.Series([c[0] if c else None for c in codes], dtype=pl.Int32),
        pl.Series([len(str(c[0])) if c else 0 for c in codes], dtype=pl.Int32),
    )


def _head(d: pl.Expr) -> pl.Expr:
    """The first three digits as an index 0..999 (null when not three digits)."""
    return pl.when(d.str.len_chars() >= 3).then(d.str.head(3).cast(pl.Int32, strict=False))


def has_cc_expr(d: pl.Expr) -> pl.Expr:
    """Whether digit strings of 3+ digits start with an assigned country calling code."""
    _, code_lengths = _cc_table()
    return pl.lit(code_lengths).gather(_head(d)).fill_null(0) > 0


REGIONS: list[str] = sorted({r for names in COUNTRY_CODE_TO_REGION_CODE.values() for r in names})
_REGION_INDEX = {r: i for i, r in enumerate(REGIONS)}


def _region_lit(region: str | None) -> pl.Expr:
    index = _REGION_INDEX[region] if region is not None else None
    return pl.lit(index, dtype=pl.Int32).alias("region")


def _unknown_lit() -> pl.Expr:
    return pl.lit(UNKNOWN, dtype=pl.Int32).alias("pn_type")


_PART_SCHEMA: dict[str, pl.DataType] = {
    "_i": pl.UInt32(),
    "cc": pl.Int32(),
    "region": pl.Int32(),  # index into REGIONS
    "pn_type": pl.Int32(),
    "nsn_py": pl.String(),  # the NSN where the per-number path stripped a prefix
}


def _python(part: pl.DataFrame) -> pl.DataFrame:
    """The per-number path for ``part`` (_i, digits), as a part frame."""
    rows = [_meta.lookup(d) for d in part.get_column("digits").to_list()]
    return part.select("_i").with_columns(
        pl.Series("cc", [r[0] for r in rows], dtype=pl.Int32),
        pl.Series("region", [_REGION_INDEX.get(r[2]) for r in rows], dtype=pl.Int32),  # type: ignore[arg-type]
        pl.Series("pn_type", [int(r[3]) for r in rows], dtype=pl.Int32),
        pl.Series("nsn_py", [r[1] for r in rows], dtype=pl.String),
    )


def lookup_frame(digits: pl.Series, small_group: int = SMALL_GROUP) -> pl.DataFrame:
    """``_meta.lookup`` of each of ``digits`` (digit strings; null gives cc 0, UNKNOWN).

    Columns ``LOOKUP_SCHEMA``, one row per input, in input order. Pass unique values:
    duplicates are computed again. Codes with fewer than ``small_group`` numbers take
    the per-number path (0: never).
    """
    d = pl.col("digits")
    codes, code_lengths = _cc_table()
    digits = digits.cast(pl.String).alias("digits")
    frame = (
        digits.to_frame()
        .with_row_index("_i")
        .with_columns(
            d.str.len_chars().cast(pl.Int32).alias("len"),
            # _meta.lookup: 2 digits or fewer never reach the code split
            pl.when(d.str.len_chars() > _meta.MIN_NSN).then(_head(d)).alias("head"),
        )
        .with_columns(pl.lit(codes).gather(pl.col("head")).alias("cc"))
        .with_columns(
            (pl.col("len") - pl.lit(code_lengths).gather(pl.col("head")).fill_null(0)).alias("n")
        )
    )
    no_cc = pl.col("cc").is_null()
    parts: list[pl.DataFrame] = [
        frame.filter(no_cc | (pl.col("n") < _meta.MIN_NSN)).select(
            "_i", pl.col("cc").fill_null(0), _region_lit(None), _unknown_lit()
        )
    ]
    slow: list[pl.DataFrame] = []
    coded = frame.filter(~no_cc & (pl.col("n") >= _meta.MIN_NSN)).drop("len", "head")
    for (cc,), group in coded.partition_by("cc", as_dict=True).items():
        plan = code_plan(int(str(cc)))
        if group.height < small_group or not plan.rust_ok:
            slow.append(group.select("_i", "digits"))
            continue
        group = group.with_columns(d.str.slice(len(str(cc))).alias("nsn"))
        if plan.npfp is not None:
            strip = group.select(plan.npfp).to_series()
            if strip.any():
                slow.append(group.filter(strip).select("_i", "digits"))
                group = group.filter(~strip)
        too_long = group.get_column("n") > _meta.MAX_NSN
        if too_long.any():
            parts.append(
                group.filter(too_long).select("_i", "cc", _region_lit(None), _unknown_lit())
            )
            group = group.filter(~too_long)
        parts.append(plan.classify(group).with_columns(pl.lit(plan.cc, dtype=pl.Int32).alias("cc")))
    if slow:
        parts.append(_python(pl.concat(slow)))
    nsn_py = pl.lit(None, dtype=pl.String).alias("nsn_py")
    found = pl.concat(
        [
            p.with_columns(*([] if "nsn_py" in p.columns else [nsn_py]))
            .select(*_PART_SCHEMA)
            .cast(pl.Schema(_PART_SCHEMA))
            for p in parts
        ]
    ).sort("_i")
    cc = pl.col("cc")
    cc_len = pl.when(cc >= 100).then(3).when(cc >= 10).then(2).when(cc >= 1).then(1).otherwise(0)
    return found.select(
        digits,
        cc,
        pl.coalesce(pl.col("nsn_py"), pl.lit(digits).str.slice(cc_len)).alias("nsn"),
        pl.lit(pl.Series(REGIONS, dtype=pl.String)).gather(pl.col("region")).alias("region"),
        "pn_type",
    )
