"""Price calls: pick each account's rate deck from the policy and rate frames or single calls.

``Rater.rate_frame`` is the bulk path (scan, ingest): integer arithmetic in Polars,
one join per distinct prefix length, that agrees exactly with ``RateRow.cost``.
``Rater.rate_call`` is the per-call path (authorize, engine, simulator).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl

from tollguard.cdr.model import RATING_SCHEMA, Disposition
from tollguard.policy import Policy
from tollguard.rating.deck import (
    RATE_PLACES,
    UNDATED_US,
    RateDeck,
    RateDeckError,
    RateRow,
    datetime_to_us,
)

__all__ = ["Rater", "RatingSetupError", "rate_rows_table"]

_IDX = "__rating_idx"
_RID = "__rating_rid"
_DECK_ID = "__rating_deck_id"
_NUM = "__rating_num"
_LEN = "__rating_len"
_START = "__rating_start_us"
_PKEY = "__rating_pkey"
_EFF = "__rating_eff_us"
_MULTI = "__rating_multi"
_KEY = "__rating_key"
_KEY_DECK = 10**15  # key = deck id * 10**15 + prefix digits
_MAX_DIGITS = 15  # E.164


class RatingSetupError(ValueError):
    """The policy's rate decks cannot be used; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class _Ref:
    where: str  # policy key that names the deck, for messages
    ref: str  # deck name or path as written
    currency: str  # currency of the account(s) using it


def rate_rows_table(rows: list[RateRow]) -> pl.DataFrame:
    """Deck rows as a frame with integer money columns (rate in 1e-6, fees in 1e-4)."""
    return pl.DataFrame(
        {
            _RID: list(range(len(rows))),
            "deck": [r.deck for r in rows],
            "deck_row": [r.row for r in rows],
            "prefix": [r.prefix for r in rows],
            "destination": [r.destination for r in rows],
            "rate_per_minute": [format(r.rate_per_minute, "f") for r in rows],
            "billing": [r.billing for r in rows],
            "currency": [r.currency for r in rows],
            "__first": [r.first_increment for r in rows],
            "__next": [r.next_increment for r in rows],
            "__rate_e6": [int(r.rate_per_minute.scaleb(RATE_PLACES)) for r in rows],
            "__fees_e4": [int(r.fees.scaleb(4)) for r in rows],
        },
        schema={
            _RID: pl.Int64(),
            "deck": pl.String(),
            "deck_row": pl.Int64(),
            "prefix": pl.String(),
            "destination": pl.String(),
            "rate_per_minute": pl.String(),
            "billing": pl.String(),
            "currency": pl.String(),
            "__first": pl.Int64(),
            "__next": pl.Int64(),
            "__rate_e6": pl.Int64(),
            "__fees_e4": pl.Int64(),
        },
    )


class Rater:
    """Loads every deck the policy references, once, and prices calls with them.

    ``default_rates`` (the ``--rates`` option: a deck name from ``[decks]`` or a
    CSV path relative to the working directory) replaces ``defaults.rates``;
    accounts with their own ``rates`` keep it.
    """

    def __init__(self, policy: Policy, default_rates: str | Path | None = None) -> None:
        self.policy = policy
        self.decks: dict[str, RateDeck] = {}
        self._loaded: dict[tuple[str, str], RateDeck] = {}  # (name, resolved path)
        problems: list[str] = []
        default_currency = policy.defaults.currency or "EUR"

        self.default_deck: RateDeck | None = None
        if default_rates is not None:
            ref = _Ref("--rates", str(default_rates), default_currency)
            self.default_deck = self._load(ref, from_cli=True, problems=problems)
        elif policy.defaults.rates:
            ref = _Ref("defaults.rates", policy.defaults.rates, default_currency)
            self.default_deck = self._load(ref, from_cli=False, problems=problems)

        self._account_decks: dict[str, RateDeck | None] = {}
        for account, own in policy.accounts.items():
            resolved = policy.account(account)
            if own.rates:
                ref = _Ref(f"accounts.{account}.rates", own.rates, resolved.currency)
                deck = self._load(ref, from_cli=False, problems=problems)
                where = f"accounts.{account}"
            else:
                deck = self.default_deck
                where = f"accounts.{account} (via the default deck)"
            self._account_decks[account] = deck
            if deck is not None and deck.currency != resolved.currency:
                problems.append(
                    f"{where}: the account's currency is {resolved.currency} but deck "
                    f"{deck.name!r} prices in {deck.currency}; set currency = "
                    f'"{deck.currency}" for the account or use a deck in {resolved.currency}'
                )
        if self.default_deck is not None and self.default_deck.currency != default_currency:
            problems.append(
                f"defaults: the default currency is {default_currency} but the default deck "
                f"{self.default_deck.name!r} prices in {self.default_deck.currency}; set "
                f'defaults.currency = "{self.default_deck.currency}"'
            )
        if problems:
            raise RatingSetupError(list(dict.fromkeys(problems)))
        self._build_tables()

    @classmethod
    def from_decks(
        cls, default: RateDeck | None = None, accounts: dict[str, RateDeck | None] | None = None
    ) -> Rater:
        """A rater over already loaded decks (tests, simulators); no policy files involved."""
        rater = cls(Policy())
        rater.default_deck = default
        rater._account_decks = dict(accounts or {})
        decks = [d for d in [default, *rater._account_decks.values()] if d is not None]
        for deck in decks:
            rater.decks.setdefault(deck.name, deck)
            rater._loaded.setdefault((deck.name, f"<memory:{id(deck)}>"), deck)
        rater._build_tables()
        return rater

    # -- set-up -----------------------------------------------------------
    def _load(self, ref: _Ref, from_cli: bool, problems: list[str]) -> RateDeck | None:
        policy = self.policy
        declared: str | None = None
        if ref.ref in policy.decks:
            deck_ref = policy.decks[ref.ref]
            name = ref.ref
            path = policy.resolve_path(deck_ref.path)
            declared = deck_ref.currency.strip().upper() if deck_ref.currency else None
            where = f"decks.{ref.ref}.path"
        else:
            path = Path(ref.ref) if from_cli else policy.resolve_path(ref.ref)
            name = path.stem
            where = ref.where
        if not path.is_file():
            problems.append(f"{where}: rate deck {str(path)!r} not found (named by {ref.where})")
            return None
        key_path = str(path.resolve())
        taken = self.decks.get(name)
        if taken is not None and (name, key_path) not in self._loaded:
            name = ref.ref  # two different files with the same stem: use the reference itself
        key = (name, key_path)
        if key in self._loaded:
            return self._loaded[key]
        try:
            deck = RateDeck.load(path, name=name, currency=declared or ref.currency)
        except RateDeckError as exc:
            problems.extend(exc.problems)
            return None
        if declared is not None and deck.currency != declared:
            problems.append(
                f"decks.{ref.ref}.currency: the policy says {declared} but {path} prices in "
                f"{deck.currency}"
            )
            return None
        self._loaded[key] = deck
        self.decks[name] = deck
        return deck

    def _build_tables(self) -> None:
        decks = list(dict.fromkeys(self._loaded.values()))
        self._deck_ids = {id(d): i for i, d in enumerate(decks)}
        rows = [r for d in decks for r in d.rows]
        self._rows = rate_rows_table(rows)
        versions = pl.DataFrame(
            {
                _LEN: [len(r.prefix) for r in rows],
                # one integer key per (deck, prefix) within a prefix length
                _KEY: [
                    self._deck_ids[id(d)] * _KEY_DECK + int(r.prefix) for d in decks for r in d.rows
                ],
                _EFF: [
                    UNDATED_US if r.effective_from is None else datetime_to_us(r.effective_from)
                    for r in rows
                ],
                _RID: list(range(len(rows))),
            },
            schema={_LEN: pl.Int64(), _KEY: pl.Int64(), _EFF: pl.Int64(), _RID: pl.Int64()},
        )
        # Per prefix length, shortest first: the latest version of every key (a plain
        # join finds it) and, for keys with several versions, all of them (an as-of
        # join picks the right one for calls that started before the latest).
        self._by_length: list[tuple[int, pl.DataFrame, pl.DataFrame | None]] = []
        for length in sorted(set(versions[_LEN].to_list())):
            table = versions.filter(pl.col(_LEN) == length).drop(_LEN).sort(_EFF)
            latest = table.group_by(_KEY).agg(
                pl.col(_EFF).last(), pl.col(_RID).last(), (pl.len() > 1).alias(_MULTI)
            )
            multi = table.filter(pl.len().over(_KEY) > 1)
            self._by_length.append((length, latest, multi if multi.height else None))

    # -- per account / per call -------------------------------------------
    def deck_for(self, account: str) -> RateDeck | None:
        """The deck pricing ``account``'s calls: its own, else the default; None: unrated."""
        if account in self._account_decks:
            return self._account_decks[account]
        return self.default_deck

    def rate_call(
        self, account: str, e164: str | None, billsec: int, answered: bool, at: datetime
    ) -> tuple[RateRow | None, Decimal | None]:
        """(matched row, exact cost) for one call; (None, None) when it cannot be rated."""
        deck = self.deck_for(account)
        if deck is None or not e164:
            return None, None
        row = deck.lookup(e164, at)
        if row is None:
            return None, None
        return row, row.cost(billsec, answered)

    # -- bulk ---------------------------------------------------------------
    def rate_frame(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` (RECORD_SCHEMA + NUMBERING_SCHEMA) plus the RATING_SCHEMA columns.

        Row order is kept. Rows without a deck, number or matching prefix get nulls
        in every rating column; unanswered calls that match are rated at cost 0.
        """
        base = frame.drop([c for c in RATING_SCHEMA if c in frame.columns])
        if base.height == 0 or not self._by_length:
            return base.with_columns(
                pl.lit(None, dtype=dtype).alias(col) for col, dtype in RATING_SCHEMA.items()
            )
        rid = self._match(base)
        return self._price(base, rid)

    def _account_deck_ids(self, accounts: pl.Series) -> tuple[list[str | None], list[int | None]]:
        unique = accounts.unique().to_list()
        ids: list[int | None] = []
        for acc in unique:
            deck = self.deck_for(acc if acc is not None else "")
            ids.append(None if deck is None else self._deck_ids[id(deck)])
        return unique, ids

    def _match(self, base: pl.DataFrame) -> pl.Series:
        """Deck row id per frame row (null: unrated), by longest effective prefix.

        One equi-join per prefix length, shortest first; a longer match overwrites
        a shorter one, so each row ends with its longest prefix that is in effect.
        """
        names, ids = self._account_deck_ids(base["account"])
        e164 = pl.col("callee_e164")
        plus = e164.str.starts_with("+")
        n_digits = e164.str.len_bytes().cast(pl.Int64) - plus.cast(pl.Int64)
        work = base.select(
            pl.int_range(pl.len(), dtype=pl.Int64).alias(_IDX),
            pl.col("account")
            .replace_strict(names, ids, default=None, return_dtype=pl.Int64)
            .alias(_DECK_ID),
            e164.cast(pl.Int64, strict=False).alias(_NUM),
            n_digits.alias(_LEN),
            pl.col("start").dt.epoch("us").alias(_START),
            (e164.str.starts_with("0") | e164.str.starts_with("+0")).alias("__zero"),
        ).filter(
            pl.col(_DECK_ID).is_not_null()
            & (pl.col(_NUM) > 0)
            & ~pl.col("__zero")
            & pl.col(_START).is_not_null()
            & (pl.col(_LEN) <= _MAX_DIGITS)
        )
        rid = np.full(base.height, -1, dtype=np.int64)
        if work.height:
            pow10 = pl.col(_LEN).replace_strict(
                list(range(_MAX_DIGITS + 1)),
                [10**n for n in range(_MAX_DIGITS + 1)],
                return_dtype=pl.Int64,
            )
            work = work.select(
                _IDX,
                _START,
                _LEN,
                (pl.col(_DECK_ID) * _KEY_DECK).alias(_KEY),  # deck part of the key
                pl.col(_NUM),
                pow10.alias("__pow10"),
            )
        for length, latest, multi in self._by_length:
            if work.height == 0:
                break
            keyed = work.select(
                _IDX,
                _START,
                pl.when(pl.col(_LEN) >= length)
                .then(pl.col(_KEY) + pl.col(_NUM) // (pl.col("__pow10") // 10**length))
                .alias(_KEY),
            )
            hit = keyed.join(latest, on=_KEY, how="inner")
            effective = pl.col(_EFF) <= pl.col(_START)
            now = hit.filter(effective)
            rid[now[_IDX].to_numpy()] = now[_RID].to_numpy()
            if multi is None:
                continue
            # calls to a multi-version key that started before its latest version
            older = hit.filter(~effective & pl.col(_MULTI))
            if older.height == 0:
                continue
            found = (
                older.select(_IDX, _KEY, _START)
                .sort(_START)
                .join_asof(
                    multi,
                    left_on=_START,
                    right_on=_EFF,
                    by=_KEY,
                    strategy="backward",
                    check_sortedness=False,
                )
                .filter(pl.col(_RID).is_not_null())
            )
            rid[found[_IDX].to_numpy()] = found[_RID].to_numpy()
        series = pl.Series(_RID, rid)
        return series.set(series < 0, None)

    def _price(self, base: pl.DataFrame, rid: pl.Series) -> pl.DataFrame:
        rows = self._rows.drop(_RID).select(pl.all().gather(rid))
        billsec = base["billsec"].fill_null(0)
        billable = (base["disposition"] == Disposition.ANSWERED.value) & (billsec > 0)
        first, nxt = pl.col("__first"), pl.col("__next")
        b = pl.col("billsec")
        matched = pl.col("__rate_e6").is_not_null()
        charged = (
            pl.when(~pl.col("__billable"))
            .then(0)
            .when(b <= first)
            .then(first)
            .otherwise(first + (b - first + nxt - 1) // nxt * nxt)
        )
        variable = (
            pl.col("__rate_e6").cast(pl.Int128) * pl.col("charged_seconds").cast(pl.Int128) + 3000
        ) // 6000
        cost = (
            pl.when(pl.col("__billable"))
            .then(pl.col("__fees_e4") + variable.cast(pl.Int64))
            .otherwise(0)
        )
        rated = (
            rows.with_columns(billsec.alias("billsec"), billable.alias("__billable"))
            .with_columns(pl.when(matched).then(charged).alias("charged_seconds"))
            .with_columns(pl.when(matched).then(cost).alias("cost_e4"))
            .select(pl.col(c).cast(t) for c, t in RATING_SCHEMA.items())
        )
        return pl.concat([base, rated], how="horizontal")
