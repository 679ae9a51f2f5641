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
_EFF = "__rating_eff_us"
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
        """Index all decks for ``rate_frame``.

        Every (deck, prefix) is a key. A prefix covers a range of 15-digit numbers
        (``670`` covers 670000000000000..670999999999999), offset by deck; ranges of
        one deck nest or are disjoint, so they cut the number line into segments,
        each owned by the innermost (longest) prefix covering it. One binary search
        finds a number's longest prefix; ``parent`` leads to the next shorter one
        when that prefix is not in effect yet or is longer than the number.
        """
        decks = list(dict.fromkeys(self._loaded.values()))
        self._deck_ids = {id(d): i for i, d in enumerate(decks)}
        rows = [r for d in decks for r in d.rows]
        self._rows = rate_rows_table(rows)
        key_of: dict[tuple[int, str], int] = {}
        row_key: list[int] = []
        for deck in decks:
            deck_id = self._deck_ids[id(deck)]
            for r in deck.rows:
                row_key.append(key_of.setdefault((deck_id, r.prefix), len(key_of)))
        n_keys = len(key_of)
        key_len = np.zeros(n_keys, dtype=np.int64)
        key_parent = np.full(n_keys, -1, dtype=np.int64)
        spans: list[tuple[int, int, int, int]] = []  # lo, length, hi, key
        for (deck_id, prefix), key in key_of.items():
            width = 10 ** (_MAX_DIGITS - len(prefix))
            lo = deck_id * _KEY_DECK + int(prefix) * width
            spans.append((lo, len(prefix), lo + width, key))
            key_len[key] = len(prefix)
        spans.sort()
        bounds: list[int] = []
        owners: list[int] = []

        def cut(at: int, owner: int) -> None:
            if bounds and bounds[-1] == at:
                owners[-1] = owner
            else:
                bounds.append(at)
                owners.append(owner)

        stack: list[tuple[int, int]] = []  # (hi, key) of the open ranges, innermost last
        for lo, _, hi, key in spans:
            while stack and stack[-1][0] <= lo:
                end, _ = stack.pop()
                cut(end, stack[-1][1] if stack else -1)
            key_parent[key] = stack[-1][1] if stack else -1
            cut(lo, key)
            stack.append((hi, key))
        while stack:
            end, _ = stack.pop()
            cut(end, stack[-1][1] if stack else -1)
        self._bounds = np.array(bounds, dtype=np.int64)
        self._owners = np.array(owners, dtype=np.int64)
        self._key_len = key_len
        self._key_parent = key_parent

        # Versions: the latest per key (most calls use it) and, for keys with
        # several, all of them for an as-of join of calls older than the latest.
        effs = [
            UNDATED_US if r.effective_from is None else datetime_to_us(r.effective_from)
            for r in rows
        ]
        latest_eff = np.full(n_keys, np.iinfo(np.int64).max, dtype=np.int64)
        latest_rid = np.full(n_keys, -1, dtype=np.int64)
        count = np.zeros(n_keys, dtype=np.int64)
        for rid, (key, eff) in enumerate(zip(row_key, effs, strict=True)):
            count[key] += 1
            if latest_rid[key] < 0 or eff > latest_eff[key]:
                latest_eff[key], latest_rid[key] = eff, rid
        self._latest_eff = latest_eff
        self._latest_rid = latest_rid
        self._multi = count > 1
        versions = pl.DataFrame(
            {_KEY: row_key, _EFF: effs, _RID: list(range(len(rows)))},
            schema={_KEY: pl.Int64(), _EFF: pl.Int64(), _RID: pl.Int64()},
        )
        self._versions = versions.filter(pl.col(_KEY).is_in(np.nonzero(self._multi)[0])).sort(_EFF)

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
        if base.height == 0 or not self._bounds.size:
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
        """Deck row id per frame row (null: unrated), by longest effective prefix."""
        names, ids = self._account_deck_ids(base["account"])
        e164 = pl.col("callee_e164")
        plus = e164.str.starts_with("+")
        work = base.select(
            pl.int_range(pl.len(), dtype=pl.Int64).alias(_IDX),
            pl.col("account")
            .replace_strict(names, ids, default=None, return_dtype=pl.Int64)
            .alias(_DECK_ID),
            e164.cast(pl.Int64, strict=False).alias(_NUM),
            (e164.str.len_bytes().cast(pl.Int64) - plus.cast(pl.Int64)).alias(_LEN),
            pl.col("start").dt.epoch("us").alias(_START),
            # "+031", "0031" would be read as the number 31: never rate those
            (e164.str.starts_with("0") | e164.str.starts_with("+0")).alias("__zero"),
        ).filter(
            pl.col(_DECK_ID).is_not_null()
            & (pl.col(_NUM) > 0)
            & ~pl.col("__zero")
            & pl.col(_START).is_not_null()
            & (pl.col(_LEN) <= _MAX_DIGITS)
        )
        rid = np.full(base.height, -1, dtype=np.int64)
        if work.height and self._bounds.size:
            idx = work[_IDX].to_numpy()
            n = work[_LEN].to_numpy()
            start = work[_START].to_numpy()
            scale = (10 ** np.arange(_MAX_DIGITS, -1, -1, dtype=np.int64))[n]  # 10**(15-n)
            point = work[_DECK_ID].to_numpy() * _KEY_DECK + work[_NUM].to_numpy() * scale
            seg = np.searchsorted(self._bounds, point, side="right") - 1
            key = np.where(seg >= 0, self._owners[np.maximum(seg, 0)], -1)
            pend = np.arange(idx.size)
            while True:
                has = key >= 0
                pend, key = pend[has], key[has]
                if pend.size == 0:
                    break
                fits = self._key_len[key] <= n[pend]
                now = fits & (self._latest_eff[key] <= start[pend])
                rid[idx[pend[now]]] = self._latest_rid[key[now]]
                done = now
                older = fits & ~now & self._multi[key]
                if older.any():
                    found = (
                        pl.DataFrame(
                            {_IDX: pend[older], _KEY: key[older], _START: start[pend[older]]}
                        )
                        .sort(_START)
                        .join_asof(
                            self._versions,
                            left_on=_START,
                            right_on=_EFF,
                            by=_KEY,
                            strategy="backward",
                            check_sortedness=False,
                        )
                        .filter(pl.col(_RID).is_not_null())
                    )
                    if found.height:
                        where = found[_IDX].to_numpy()
                        rid[idx[where]] = found[_RID].to_numpy()
                        done = done | np.isin(pend, where)
                # not priced at this prefix: try the next shorter one
                pend, key = pend[~done], self._key_parent[key[~done]]
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
