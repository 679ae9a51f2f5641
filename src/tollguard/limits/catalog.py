"""Thin adapters over numbering (classify a dialed number) and rating (price it), cached.

The authorize path asks the same questions many times ("what is 0031201234567 dialed
from NL?", "which deck row prices +67077...?"), so both answers are memoized with a
size cap. When ``tollguard.numbering.classify`` / ``tollguard.rating.rate`` are not
importable, a small fallback (phonenumbers directly; decks loaded with ``RateDeck``)
keeps the service usable.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import phonenumbers

from tollguard.numbering.types import NumberType
from tollguard.policy import DialingContext, Policy, ResolvedAccount
from tollguard.rating.deck import RateDeck, RateRow

CACHE_CAP = 200_000

_INTL_PREFIX = {"US": "011", "CA": "011"}
_PN_TYPES = {getattr(phonenumbers.PhoneNumberType, t.name, None): t for t in NumberType}


@dataclass(frozen=True, slots=True)
class Number:
    e164: str | None
    country: str | None
    number_type: str
    risk: str | None
    risk_reason: str | None


def _fallback_describe(dialed: str, ctx: DialingContext) -> Number:
    digits = dialed.strip()
    if ctx.outside_line_prefix and digits.startswith(ctx.outside_line_prefix):
        digits = digits[len(ctx.outside_line_prefix) :]
    intl = ctx.international_prefix or _INTL_PREFIX.get(ctx.country, "00")
    if digits.startswith(intl):
        digits = "+" + digits[len(intl) :]
    try:
        num = phonenumbers.parse(digits, ctx.country)
    except phonenumbers.NumberParseException:
        return Number(None, None, NumberType.SHORT_CODE.value, None, None)
    if not phonenumbers.is_possible_number(num):
        return Number(None, None, NumberType.SHORT_CODE.value, None, None)
    e164 = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    region = phonenumbers.region_code_for_number(num)
    country = "001" if region == "001" else (region if region and region != "ZZ" else None)
    ntype = _PN_TYPES.get(phonenumbers.number_type(num), NumberType.UNKNOWN)
    return Number(e164, country, ntype.value, None, None)


class Numbers:
    """Cached classification of dialed numbers per dialing context."""

    def __init__(self) -> None:
        self._cache: dict[tuple[DialingContext, str], Number] = {}
        self._describe: Any = None
        self._classifier: Any = None
        try:
            mod = importlib.import_module("tollguard.numbering.classify")
            self._describe = mod.describe
            self._classifier = mod.NumberClassifier()
        except (ImportError, AttributeError, TypeError):
            self._describe = None

    def describe(self, dialed: str, ctx: DialingContext) -> Number:
        key = (ctx, dialed)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if self._describe is not None:
            info = self._describe(dialed, ctx, self._classifier)
            ntype = info.number_type
            out = Number(
                info.e164,
                info.country,
                ntype.value if isinstance(ntype, NumberType) else str(ntype),
                getattr(info, "risk", None),
                getattr(info, "risk_reason", None),
            )
        else:
            out = _fallback_describe(dialed, ctx)
        if len(self._cache) >= CACHE_CAP:
            self._cache.clear()
        self._cache[key] = out
        return out


class Rates:
    """Rate decks per account, through ``rating.rate.Rater`` when it is there."""

    def __init__(self, policy: Policy, default_rates: str | Path | None = None) -> None:
        self.policy = policy
        self.default_rates = str(default_rates) if default_rates is not None else None
        self._rater: Any = None
        self._decks: dict[str, RateDeck] = {}
        self._by_account: dict[str, RateDeck | None] = {}
        self._cache: dict[tuple[str, str], RateRow | None] = {}
        try:
            mod = importlib.import_module("tollguard.rating.rate")
            self._rater = mod.Rater(policy, self.default_rates)
        except (ImportError, AttributeError):
            self._rater = None

    def _load(self, ref: str, currency: str) -> RateDeck:
        deck = self._decks.get(ref)
        if deck is None:
            if ref in self.policy.decks:
                d = self.policy.decks[ref]
                deck = RateDeck.load(
                    self.policy.resolve_path(d.path), name=ref, currency=d.currency or currency
                )
            else:
                deck = RateDeck.load(self.policy.resolve_path(ref), currency=currency)
            self._decks[ref] = deck
        return deck

    def deck_for(self, account: ResolvedAccount) -> RateDeck | None:
        if account.account in self._by_account:
            return self._by_account[account.account]
        deck: RateDeck | None
        if self._rater is not None:
            deck = self._rater.deck_for(account.account)
        else:
            ref = account.rates or self.default_rates
            deck = self._load(ref, account.currency) if ref else None
        if deck is not None:
            self._decks.setdefault(deck.name, deck)
        self._by_account[account.account] = deck
        return deck

    def deck_named(self, name: str) -> RateDeck | None:
        return self._decks.get(name)

    def lookup(self, deck: RateDeck, e164: str, at: datetime) -> RateRow | None:
        if deck.dated:
            return deck.lookup(e164, at)
        key = (deck.name, e164)
        if key in self._cache:
            return self._cache[key]
        row = deck.lookup(e164, at)
        if len(self._cache) >= CACHE_CAP:
            self._cache.clear()
        self._cache[key] = row
        return row
