"""Population priors learned online from the traffic the engine sees.

Without a calibration file (``Priors.learn``) a brand-new account knows no country, so
its first calls abroad would be "a country this account never called". The engine
therefore learns, as it goes, which destination countries the *population* of
accounts calls: per country the decayed number of account-days on which some account
called it (clean calls only: records in a critical finding are never learned), the
decayed number of active account-days, and the first few distinct accounts seen
calling it.

A country is common in the population when other accounts (at least
``min_accounts``, not counting the one asking) called it on at least ``min_share`` of
the account-days. One account's own traffic can therefore never make its destination
"common", and high-risk ranges are never known through the population (see
``destination``). Counts decay with the signature half-life (28 days).
"""

from __future__ import annotations

from typing import Any

from tollguard.cdr.model import CallRecord

DISTINCT_CAP = 8  # distinct accounts remembered per country


class Population:
    __slots__ = (
        "account_days",
        "accounts",
        "countries",
        "day",
        "first_ts",
        "lam",
        "today",
        "today_accounts",
    )

    def __init__(self, half_life_days: float = 28.0) -> None:
        self.lam = 0.5 ** (1.0 / half_life_days)
        self.day = -1  # UTC day of the current (open) population day
        self.first_ts: float | None = None  # the first record it learned from (epoch s)
        self.account_days = 0.0  # decayed active account-days of closed days
        self.today_accounts = 0
        self.countries: dict[str, float] = {}  # decayed account-days calling the country
        self.today: dict[str, int] = {}
        self.accounts: dict[str, list[str]] = {}  # first distinct accounts per country

    def _roll(self, day: int) -> None:
        if self.day >= 0 and day > self.day:
            lam = self.lam ** min(day - self.day, 400)
            self.account_days = self.account_days * lam + self.today_accounts
            countries = self.countries
            for key in list(countries):
                countries[key] *= lam
            for key, n in self.today.items():
                countries[key] = countries.get(key, 0.0) + n
            self.today.clear()
            self.today_accounts = 0
        self.day = day

    def observe(self, record: CallRecord, ctx: Any) -> None:
        """A clean record (called by the engine after the account's signature counted it)."""
        day = int(ctx.end_ts // 86400)
        if day > self.day:
            if self.first_ts is None:
                self.first_ts = ctx.end_ts
            self._roll(day)
        state = ctx.state
        if state.get("population") != ctx.day_index:
            state["population"] = ctx.day_index
            self.today_accounts += 1
        country = record.country
        if country and ctx.sig.day_countries.get(country) == 1:  # first today for this account
            self.today[country] = self.today.get(country, 0) + 1
            seen = self.accounts.get(country)
            if seen is None:
                self.accounts[country] = [ctx.account]
            elif len(seen) < DISTINCT_CAP and ctx.account not in seen:
                seen.append(ctx.account)

    def has_seen(self, account_days: float, now_ts: float) -> bool:
        """Has it learned from a whole day of traffic, over at least ``account_days``
        closed account-days? (Until then "not common" only means "not seen yet".)"""
        return (
            self.first_ts is not None
            and now_ts - self.first_ts >= 86400.0
            and self.account_days >= account_days
        )

    def share(self, country: str, account: str, own_today: bool) -> tuple[float, int]:
        """(share of account-days on which *other* accounts called the country, number of
        other distinct accounts seen calling it)."""
        seen = self.accounts.get(country)
        if not seen:
            return 0.0, 0
        others = len(seen) - (1 if account in seen else 0)
        total = self.account_days + self.today_accounts
        if total <= 0:
            return 0.0, others
        n = self.countries.get(country, 0.0) + self.today.get(country, 0) - (1 if own_today else 0)
        return max(n, 0.0) / total, others

    def common(
        self, country: str, account: str, own_today: bool, min_share: float, min_accounts: int
    ) -> bool:
        share, others = self.share(country, account, own_today)
        return others >= min_accounts and share >= min_share

    def to_dict(self) -> dict[str, Any]:
        total = self.account_days + self.today_accounts
        return {
            "account_days": round(total, 3),
            "country_share": {
                c: round((v + self.today.get(c, 0)) / total, 6) if total else 0.0
                for c, v in sorted({**dict.fromkeys(self.today, 0.0), **self.countries}.items())
            },
        }
