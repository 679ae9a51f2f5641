"""Fast region and number-type lookup from phonenumbers' metadata, without ``parse``.

``phonenumbers.parse`` + ``number_type`` cost ~20 µs a number, mostly in generic
input handling. For an E.164 string most of that work is unnecessary: the country
calling code is the first 1-3 digits, and the type is the first per-type pattern of
the region that fully matches the national significant number (NSN). This module
compiles, once per country calling code, one regular expression per (region, NSN
length) that tests all types in phonenumbers' priority order in a single match, and
replicates the few parse steps that change the result for "+" input:

* national-prefix stripping (``+44 0 20...``, ``+7 8 9...``), done by phonenumbers'
  own helper on the rare numbers that start with the region's national prefix;
* the NSN length limits (2..17 digits) that make ``parse`` fail;
* the region choice for shared codes (+1, +7, +44, ...): leading digits, else the
  first region whose patterns accept the number (``region_code_for_number``).

The agreement with phonenumbers is asserted by tests/numbering/test_agreement.py on a
large random sample.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from phonenumbers import PhoneNumberType
from phonenumbers.phonemetadata import PhoneMetadata
from phonenumbers.phonenumberutil import (
    COUNTRY_CODE_TO_REGION_CODE,
    ValidationResult,
    _maybe_strip_national_prefix_carrier_code,
    _test_number_length,
)

PNT = PhoneNumberType

# phonenumbers' _number_type_helper order (fixed line and mobile last).
_TYPE_ORDER: tuple[tuple[str, int], ...] = (
    ("premium_rate", PNT.PREMIUM_RATE),
    ("toll_free", PNT.TOLL_FREE),
    ("shared_cost", PNT.SHARED_COST),
    ("voip", PNT.VOIP),
    ("personal_number", PNT.PERSONAL_NUMBER),
    ("pager", PNT.PAGER),
    ("uan", PNT.UAN),
    ("voicemail", PNT.VOICEMAIL),
    ("fixed_line", PNT.FIXED_LINE),
    ("mobile", PNT.MOBILE),
)

MIN_NSN = 2  # phonenumbers' _MIN_LENGTH_FOR_NSN
MAX_NSN = 17  # phonenumbers' _MAX_LENGTH_FOR_NSN
COUNTRY_CODES: frozenset[str] = frozenset(str(cc) for cc in COUNTRY_CODE_TO_REGION_CODE)
_NO_STRIP = (
    ValidationResult.TOO_SHORT,
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
    ValidationResult.INVALID_LENGTH,
)
_CAPTURE = re.compile(r"(?<!\\)\((?!\?)")


def _noncapturing(pattern: str) -> str:
    return _CAPTURE.sub("(?:", pattern)


def _desc_allows(desc: Any, length: int) -> bool:
    if desc is None or not desc.national_number_pattern:
        return False
    lengths = desc.possible_length
    return not lengths or length in lengths


@dataclass(slots=True)
class _LengthMatcher:
    combined: re.Pattern[str]  # general desc lookahead + one group per type, in priority order
    types: tuple[int, ...]  # group index - 1 -> phonenumbers type
    mobile: re.Pattern[str] | None  # for FIXED_LINE hits: is it also mobile?


class RegionMatcher:
    """Per-type patterns of one region (or non-geographic entity), per NSN length.

    The combined pattern of a length is compiled on first use: most traffic touches a
    handful of (region, length) pairs, and compiling all ~4,700 up front costs ~1 s.
    """

    __slots__ = ("_by_length", "_meta", "_same_fixed_mobile", "leading_digits", "region")

    def __init__(self, region: str, meta: Any) -> None:
        self.region = region
        self._meta = meta
        self.leading_digits: re.Pattern[str] | None = (
            re.compile(meta.leading_digits) if meta.leading_digits is not None else None
        )
        self._same_fixed_mobile = bool(meta.same_mobile_and_fixed_line_pattern)
        self._by_length: dict[int, _LengthMatcher | None] = {}
        general = meta.general_desc
        if general is None or not general.national_number_pattern:
            self._by_length = {}
            self._meta = None

    def _build(self, length: int) -> _LengthMatcher | None:
        meta = self._meta
        if meta is None:
            return None
        general = meta.general_desc
        if general.possible_length and length not in general.possible_length:
            return None
        alts: list[str] = []
        types: list[int] = []
        for attr, ptype in _TYPE_ORDER:
            if ptype == PNT.MOBILE and self._same_fixed_mobile:
                continue
            desc = getattr(meta, attr)
            if _desc_allows(desc, length):
                alts.append("(" + _noncapturing(desc.national_number_pattern) + ")")
                types.append(ptype)
        if not alts:
            return None
        gen = _noncapturing(general.national_number_pattern)
        combined = re.compile(f"(?=(?:{gen})\\Z)(?:{'|'.join(alts)})\\Z")
        mobile_desc = meta.mobile
        mobile = (
            re.compile(f"(?:{_noncapturing(mobile_desc.national_number_pattern)})\\Z")
            if not self._same_fixed_mobile and _desc_allows(mobile_desc, length)
            else None
        )
        return _LengthMatcher(combined, tuple(types), mobile)

    def number_type(self, nsn: str) -> int:
        """phonenumbers' ``_number_type_helper(nsn, metadata)``."""
        n = len(nsn)
        try:
            lm = self._by_length[n]
        except KeyError:
            lm = self._by_length[n] = self._build(n)
        if lm is None:
            return PNT.UNKNOWN
        m = lm.combined.match(nsn)
        if m is None:
            return PNT.UNKNOWN
        ptype = lm.types[m.lastindex - 1] if m.lastindex else PNT.UNKNOWN
        if ptype == PNT.FIXED_LINE and (
            self._same_fixed_mobile or (lm.mobile is not None and lm.mobile.match(nsn))
        ):
            return PNT.FIXED_LINE_OR_MOBILE
        return ptype


class CountryCode:
    """Everything needed to classify the NSNs of one country calling code."""

    __slots__ = ("_main_meta", "_npfp", "cc", "regions")

    def __init__(self, cc: int) -> None:
        self.cc = cc
        names = COUNTRY_CODE_TO_REGION_CODE[cc]
        self.regions: list[RegionMatcher] = []
        for name in names:
            meta = PhoneMetadata.metadata_for_region_or_calling_code(cc, name)
            if meta is not None:
                self.regions.append(RegionMatcher(name, meta))
        self._main_meta = PhoneMetadata.metadata_for_region_or_calling_code(cc, names[0])
        npfp = self._main_meta.national_prefix_for_parsing if self._main_meta else None
        self._npfp: re.Pattern[str] | None = re.compile(npfp) if npfp else None

    def strip_national_prefix(self, nsn: str) -> str:
        """What ``parse`` keeps as NSN for "+<cc><nsn>" (national prefix stripped if viable)."""
        meta = self._main_meta
        if self._npfp is None or meta is None or self._npfp.match(nsn) is None:
            return nsn
        _, potential, _ = _maybe_strip_national_prefix_carrier_code(nsn, meta)
        if _test_number_length(potential, meta) in _NO_STRIP:
            return nsn
        return str(potential)

    def classify(self, nsn: str) -> tuple[str | None, int]:
        """(region as ``region_code_for_number``, phonenumbers type as ``number_type``)."""
        if len(self.regions) == 1:
            only = self.regions[0]
            return only.region, only.number_type(nsn)
        for rm in self.regions:
            if rm.leading_digits is not None:
                if rm.leading_digits.match(nsn):
                    return rm.region, rm.number_type(nsn)
            else:
                ptype = rm.number_type(nsn)
                if ptype != PNT.UNKNOWN:
                    return rm.region, ptype
        return None, PNT.UNKNOWN


@cache
def country_code(cc: int) -> CountryCode:
    return CountryCode(cc)


def split_cc(digits: str) -> tuple[int, str] | None:
    """Country calling code and the rest, as phonenumbers extracts it; None if none."""
    if not digits or digits[0] == "0":
        return None
    for n in (1, 2, 3):
        if digits[:n] in COUNTRY_CODES and len(digits) >= n:
            return int(digits[:n]), digits[n:]
    return None


@lru_cache(maxsize=1 << 18)
def lookup(digits: str) -> tuple[int, str, str | None, int]:
    """(cc or 0, nsn, region, phonenumbers type) for E.164 digits without "+".

    Mirrors ``region_code_for_number(parse("+" + digits))`` and ``number_type``; where
    ``parse`` would raise, returns region None and UNKNOWN.
    """
    if len(digits) <= MIN_NSN:  # parse: TOO_SHORT_AFTER_IDD
        return 0, digits, None, PNT.UNKNOWN
    split = split_cc(digits)
    if split is None:
        return 0, digits, None, PNT.UNKNOWN
    cc, nsn = split
    if len(nsn) < MIN_NSN:
        return cc, nsn, None, PNT.UNKNOWN
    ccm = country_code(cc)
    nsn = ccm.strip_national_prefix(nsn)
    if len(nsn) > MAX_NSN or len(nsn) < MIN_NSN:
        return cc, nsn, None, PNT.UNKNOWN
    region, ptype = ccm.classify(nsn)
    return cc, nsn, region, ptype


@dataclass(frozen=True, slots=True)
class RegionDialing:
    """Dialing defaults of a region from phonenumbers' metadata."""

    country_code: str
    international_prefix: str | None  # a regex, e.g. "00" or "0(?:0|1[0-9])"
    national_prefix: str | None  # the trunk prefix, e.g. "0", "1", "8"
    possible_lengths: frozenset[int]  # NSN lengths of the region


@cache
def region_dialing(region: str) -> RegionDialing | None:
    meta = PhoneMetadata.metadata_for_region(region.upper(), None)
    if meta is None:
        return None
    lengths = meta.general_desc.possible_length if meta.general_desc is not None else ()
    return RegionDialing(
        country_code=str(meta.country_code),
        international_prefix=meta.international_prefix or None,
        national_prefix=meta.national_prefix or None,
        possible_lengths=frozenset(lengths),
    )
