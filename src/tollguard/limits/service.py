"""The authorize decision and the call lifecycle (answer, end, expiry).

``AuthorizeService.authorize`` never scans history: it reads a precomputed plan for
the account, a cached classification of the callee, a cached rate row, and makes one
atomic check-and-reserve call on the state backend.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from datetime import time as dtime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from tollguard.limits.catalog import Numbers, Rates
from tollguard.limits.money import fmt_e4, from_e4, to_e4
from tollguard.limits.periods import Periods, account_tag, periods_at
from tollguard.limits.state import (
    NO_LIMIT,
    BlockState,
    CallState,
    Check,
    EndResult,
    ReserveRequest,
    ReserveResult,
    StateBackend,
)
from tollguard.policy import Limits, Policy, ResolvedAccount
from tollguard.rating.deck import RateDeck, RateRow

log = logging.getLogger(__name__)

# Every deny reason, in the order they are checked.
REASONS = (
    "unknown_account",
    "account_blocked",
    "country_blocked",
    "country_not_allowed",
    "number_type_blocked",
    "number_type_not_allowed",
    "outside_allowed_hours",
    "unrated_destination",
    "concurrent_calls",
    "calls_per_minute",
    "calls_per_day",
    "calls_per_day_country",
    "calls_per_day_number_type",
    "spend_per_hour",
    "spend_per_day",
    "spend_per_month",
    "spend_per_day_country",
    "spend_per_day_number_type",
)


@dataclass(frozen=True, slots=True)
class Settings:
    allow_unknown_accounts: bool = False  # True: unknown accounts get the [defaults] policy
    default_max_duration_s: int = 4 * 3600  # longest grant when nothing else limits it
    ring_timeout_s: int = 180  # an authorized call not answered by then is dropped
    end_grace_s: int = 300  # an answered call expires at max_duration_s + this
    policy_refresh_s: float = 2.0  # plans are rebuilt this often (runtime overrides, Redis)


@dataclass(frozen=True, slots=True)
class Window:
    days: frozenset[int]
    start: dtime
    stop: dtime
    applies_to: str  # "all" | "international" | a number type

    def contains(self, local: datetime) -> bool:
        t = local.time().replace(tzinfo=None)
        if self.start < self.stop:
            return local.weekday() in self.days and self.start <= t < self.stop
        # over midnight: the part before midnight belongs to the day it starts on
        if t >= self.start:
            return local.weekday() in self.days
        return t < self.stop and (local.weekday() - 1) % 7 in self.days


def _e4_or_none(value: Decimal | None) -> int:
    return NO_LIMIT if value is None else to_e4(value, up=False)


def _or_unlimited(value: int | None) -> int:
    return NO_LIMIT if value is None else value


@dataclass(slots=True)
class Plan:
    """Everything authorize needs about one account, computed once."""

    account: ResolvedAccount
    tz: ZoneInfo
    limits: Limits
    report_only: bool
    deck: RateDeck | None
    spend_hour: int
    spend_day: int
    spend_month: int
    calls_minute: int  # NO_LIMIT when the policy sets none, like the spend limits
    calls_day: int
    max_concurrent: int
    spend_country: dict[str, int]
    spend_type: dict[str, int]
    calls_country: dict[str, int]
    calls_type: dict[str, int]
    blocked_countries: frozenset[str]
    allowed_countries: frozenset[str]
    blocked_types: frozenset[str]
    allowed_types: frozenset[str]
    windows: tuple[Window, ...]
    horizon_s: int
    built_at: float
    overridden: bool = False
    # per-plan memo of what every call to the same place and minute shares (the counter
    # checks, a rate row's answer and reservation); dropped with the plan (every 2 s)
    memo: dict[Any, Any] = field(default_factory=dict)

    @property
    def has_spend_limits(self) -> bool:
        return (
            self.spend_hour != NO_LIMIT
            or self.spend_day != NO_LIMIT
            or self.spend_month != NO_LIMIT
            or bool(self.spend_country)
            or bool(self.spend_type)
        )


@dataclass(slots=True)
class Decision:
    decision: str  # "allow" | "deny"
    reason: str  # "ok" or a deny reason
    max_duration_s: int
    call_id: str
    account: str
    rate: dict[str, Any] | None = None
    number: dict[str, Any] | None = None
    limits: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    report_only: bool = False
    fail_mode: str = "open"

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "reason": self.reason,
            "max_duration_s": self.max_duration_s,
            "call_id": self.call_id,
            "account": self.account,
            "rate": self.rate,
            "number": self.number,
            "limits": self.limits,
            "warnings": self.warnings,
            "detail": self.detail,
            "report_only": self.report_only,
            "fail_mode": self.fail_mode,
        }


@dataclass(slots=True)
class _Pending:
    """An authorize between its local checks and the state's check-and-reserve."""

    req: ReserveRequest
    plan: Plan
    call_id: str
    account: str
    country: str
    ntype: str
    country_spend: int
    type_spend: int
    row: RateRow | None
    rate: dict[str, Any] | None
    number: dict[str, Any]
    violations: list[dict[str, Any]]
    warnings: list[dict[str, Any]]


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


def _epoch(at: datetime) -> float:
    return at.timestamp()


def _found(call_id: str, call: CallState | None) -> CallState:
    if call is None:
        raise NotFound(call_id)
    return call


class AuthorizeService:
    def __init__(
        self,
        policy: Policy,
        state: StateBackend,
        default_rates: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.policy = policy
        self.state = state
        self.settings = settings or Settings()
        self.numbers = Numbers()
        self.rates = Rates(policy, default_rates)
        self._plans: dict[str, Plan] = {}
        self._lock = threading.Lock()

    # -- plans -------------------------------------------------------------------
    def known(self, account: str) -> bool:
        return account in self.policy.accounts or self.settings.allow_unknown_accounts

    def plan(self, account: str, fresh: bool = False) -> Plan:
        plan = self._plans.get(account)
        now = time.monotonic()
        if plan is not None and not fresh and now - plan.built_at < self.settings.policy_refresh_s:
            return plan
        return self._keep(account, self._build(account, now, self.state.get_override(account)))

    async def plan_async(self, account: str) -> Plan:
        """``plan`` for the event loop: the runtime override (a Redis read when it is
        rebuilt, every ``policy_refresh_s``) is read without blocking the loop."""
        plan = self._plans.get(account)
        now = time.monotonic()
        if plan is not None and now - plan.built_at < self.settings.policy_refresh_s:
            return plan
        override = await self.state.get_override_async(account)
        return self._keep(account, self._build(account, now, override))

    def _keep(self, account: str, plan: Plan) -> Plan:
        with self._lock:
            if len(self._plans) > 100_000:
                self._plans.clear()
            self._plans[account] = plan
        return plan

    def _build(self, account: str, now: float, override: dict[str, Any] | None) -> Plan:
        acc = self.policy.account(account)
        limits = acc.limits
        report_only = acc.report_only
        if override is not None:
            if "limits" in override:
                limits = Limits.model_validate(override["limits"])
            report_only = bool(override.get("report_only", report_only))
            acc = acc.model_copy(
                update={
                    "limits": limits,
                    "report_only": report_only,
                    "on_critical": override.get("on_critical", acc.on_critical),
                    "fail_mode": override.get("fail_mode", acc.fail_mode),
                }
            )
        horizon = self.settings.default_max_duration_s
        if limits.max_call_duration_s is not None:
            horizon = min(horizon, limits.max_call_duration_s)
        return Plan(
            account=acc,
            tz=ZoneInfo(acc.timezone),
            limits=limits,
            report_only=report_only,
            deck=self.rates.deck_for(acc),
            spend_hour=_e4_or_none(limits.max_spend_per_hour),
            spend_day=_e4_or_none(limits.max_spend_per_day),
            spend_month=_e4_or_none(limits.max_spend_per_month),
            calls_minute=_or_unlimited(limits.max_calls_per_minute),
            calls_day=_or_unlimited(limits.max_calls_per_day),
            max_concurrent=_or_unlimited(limits.max_concurrent_calls),
            spend_country={
                k: to_e4(v, up=False) for k, v in limits.max_spend_per_day_by_country.items()
            },
            spend_type={
                k: to_e4(v, up=False) for k, v in limits.max_spend_per_day_by_number_type.items()
            },
            calls_country=dict(limits.max_calls_per_day_by_country),
            calls_type=dict(limits.max_calls_per_day_by_number_type),
            blocked_countries=frozenset(limits.blocked_countries),
            allowed_countries=frozenset(limits.allowed_countries),
            blocked_types=frozenset(limits.blocked_number_types),
            allowed_types=frozenset(limits.allowed_number_types),
            windows=tuple(
                Window(
                    w.weekdays(),
                    w.start,
                    w.stop,
                    w.applies_to.upper()
                    if w.applies_to not in ("all", "international")
                    else w.applies_to,
                )
                for w in limits.allowed_hours
            ),
            horizon_s=horizon,
            built_at=now,
            overridden=override is not None,
        )

    def invalidate(self, account: str) -> None:
        with self._lock:
            self._plans.pop(account, None)

    # -- authorize ---------------------------------------------------------------
    def authorize(
        self, account: str, caller: str, callee: str, call_id: str, at: datetime | None = None
    ) -> Decision:
        plan = self.plan(account) if self.known(account) else None
        pending = self._prepare(plan, account, callee, call_id, at)
        if isinstance(pending, Decision):
            return pending
        return self._finish(pending, self.state.reserve(pending.req))

    async def authorize_async(
        self, account: str, caller: str, callee: str, call_id: str, at: datetime | None = None
    ) -> Decision:
        """``authorize`` for the event loop: the state round trip does not block it, so
        other requests proceed (and share Redis round trips) while this one waits."""
        plan = await self.plan_async(account) if self.known(account) else None
        pending = self._prepare(plan, account, callee, call_id, at)
        if isinstance(pending, Decision):
            return pending
        return self._finish(pending, await self.state.reserve_async(pending.req))

    def _prepare(
        self, plan: Plan | None, account: str, callee: str, call_id: str, at: datetime | None
    ) -> Decision | _Pending:
        """Everything decided without the state; the request for the atomic reserve.
        ``plan`` None: the account is unknown."""
        when = at if at is not None else datetime.now(UTC)
        if plan is None:
            return Decision("deny", "unknown_account", 0, call_id, account)
        acc = plan.account
        num = self.numbers.describe(callee, acc.context)
        number = {"e164": num.e164, "country": num.country, "number_type": num.number_type}
        violations: list[dict[str, Any]] = []
        warnings: list[dict[str, Any]] = []
        if num.risk:
            warnings.append(
                {"reason": "high_risk_destination", "risk": num.risk, "why": num.risk_reason}
            )
        country = num.country or ""
        ntype = num.number_type
        if country and country in plan.blocked_countries:
            violations.append({"reason": "country_blocked", "country": country})
        elif plan.allowed_countries and country not in plan.allowed_countries:
            violations.append({"reason": "country_not_allowed", "country": country or None})
        if ntype in plan.blocked_types:
            violations.append({"reason": "number_type_blocked", "number_type": ntype})
        elif plan.allowed_types and ntype not in plan.allowed_types:
            violations.append({"reason": "number_type_not_allowed", "number_type": ntype})
        local = when.astimezone(plan.tz)
        if plan.windows:
            international = bool(country) and country != acc.context.country
            applicable = [
                w
                for w in plan.windows
                if w.applies_to == "all"
                or (w.applies_to == "international" and international)
                or w.applies_to == ntype
            ]
            if applicable and not any(w.contains(local) for w in applicable):
                violations.append(
                    {
                        "reason": "outside_allowed_hours",
                        "local_time": local.isoformat(timespec="minutes"),
                    }
                )
        row: RateRow | None = None
        if plan.deck is not None and num.e164 is not None:
            row = self.rates.lookup(plan.deck, num.e164, when)
        country_spend = plan.spend_country.get(country, NO_LIMIT) if country else NO_LIMIT
        type_spend = plan.spend_type.get(ntype, NO_LIMIT)
        spend_limited = (
            plan.spend_hour != NO_LIMIT
            or plan.spend_day != NO_LIMIT
            or plan.spend_month != NO_LIMIT
            or country_spend != NO_LIMIT
            or type_spend != NO_LIMIT
        )
        if row is None and spend_limited:
            violations.append({"reason": "unrated_destination", "e164": num.e164})
        rate, want, min_b = self._priced(plan, row, spend_limited)
        if violations and not plan.report_only:
            first = violations[0]
            return Decision(
                "deny",
                first["reason"],
                0,
                call_id,
                account,
                rate,
                number,
                warnings=warnings,
                detail=first,
                fail_mode=acc.fail_mode,
            )
        counts, spends = self._checks(plan, periods_at(when, plan.tz), account, country, ntype)
        horizon = plan.horizon_s
        now = _epoch(when)
        req = ReserveRequest(
            account=account,
            call_id=call_id,
            now=now,
            counts=counts,
            spends=spends,
            max_concurrent=plan.max_concurrent,
            want_e4=want,
            min_e4=min_b,
            ring_expires_at=now + self.settings.ring_timeout_s,
            hold_s=float(horizon + self.settings.end_grace_s),
            force=plan.report_only,
            meta={
                "deck": row.deck if row is not None else "",
                "e164": num.e164 or "",
                "at": when.isoformat(),
                "horizon": str(horizon),
                "limited": "1" if spend_limited else "0",
            },
        )
        return _Pending(
            req, plan, call_id, account, country, ntype, country_spend, type_spend, row,
            rate, number, violations, warnings,
        )  # fmt: skip

    def _priced(
        self, plan: Plan, row: RateRow | None, spend_limited: bool
    ) -> tuple[dict[str, Any] | None, int, int]:
        """The answer's ``rate`` of a row, and the reservation wanted (the cost of the
        longest grant) and the least budget (the first increment), when spend is limited."""
        if row is None:
            return None, 0, 0
        key = ("rate", id(row), spend_limited)
        hit = plan.memo.get(key)
        if hit is not None and hit[0] is row:  # the plan's deck keeps its rows (and ids)
            return hit[1], hit[2], hit[3]
        rate = {
            "deck": row.deck,
            "row": row.row,
            "prefix": row.prefix,
            "destination": row.destination,
            "rate_per_minute": str(row.rate_per_minute),
            "connect_fee": str(row.fees),
            "billing": row.billing,
            "currency": row.currency,
        }
        want = min_b = 0
        if spend_limited:
            want = to_e4(row.cost(plan.horizon_s))
            min_b = to_e4(row.cost(1))
        self._memo(plan, key, (row, rate, want, min_b))
        return rate, want, min_b

    def _checks(
        self, plan: Plan, p: Periods, account: str, country: str, ntype: str
    ) -> tuple[list[Check], list[Check]]:
        """The counters a call touches (count checks, spend checks), per minute and place."""
        key = (p.minute, country, ntype)
        hit: tuple[list[Check], list[Check]] | None = plan.memo.get(key)
        if hit is not None:
            return hit
        tag = account_tag(account)

        def per_place(
            what: str, by_country: dict[str, int], by_type: dict[str, int]
        ) -> list[Check]:
            """Today's ``what`` ("calls"/"spend") checks for the callee's country and type."""
            c = what[0]
            day, ttl = p.day, p.day_ttl
            out = []
            if country:
                limit = by_country.get(country, NO_LIMIT)
                out.append(
                    Check(f"{tag}:{c}dc:{country}:{day}", limit, ttl, f"{what}_per_day_country")
                )
            limit = by_type.get(ntype, NO_LIMIT)
            out.append(
                Check(f"{tag}:{c}dt:{ntype}:{day}", limit, ttl, f"{what}_per_day_number_type")
            )
            return out

        counts = [
            Check(f"{tag}:cm:{p.minute}", plan.calls_minute, p.minute_ttl, "calls_per_minute"),
            Check(f"{tag}:cd:{p.day}", plan.calls_day, p.day_ttl, "calls_per_day"),
            *per_place("calls", plan.calls_country, plan.calls_type),
        ]
        spends = [
            Check(f"{tag}:sh:{p.hour}", plan.spend_hour, p.hour_ttl, "spend_per_hour"),
            Check(f"{tag}:sd:{p.day}", plan.spend_day, p.day_ttl, "spend_per_day"),
            Check(f"{tag}:sm:{p.month}", plan.spend_month, p.month_ttl, "spend_per_month"),
            *per_place("spend", plan.spend_country, plan.spend_type),
        ]
        self._memo(plan, key, (counts, spends))
        return counts, spends

    @staticmethod
    def _memo(plan: Plan, key: Any, value: Any) -> None:
        if len(plan.memo) > 1_000:  # an account calling many places within 2 s
            plan.memo.clear()
        plan.memo[key] = value

    def _finish(self, p: _Pending, res: ReserveResult) -> Decision:
        plan, call_id, account, row, rate, number = (
            p.plan, p.call_id, p.account, p.row, p.rate, p.number
        )  # fmt: skip
        acc = plan.account
        violations, warnings = p.violations, p.warnings
        horizon = plan.horizon_s
        limits_out = self._limits_out(plan, res, p.country, p.ntype, p.country_spend, p.type_spend)
        if not res.ok:
            detail = {"reason": res.reason, "value": res.value, "limit": res.limit}
            if res.reason.startswith("spend"):
                detail = {
                    "reason": res.reason,
                    "limit": fmt_e4(res.limit),
                    "remaining": fmt_e4(res.remaining_e4 or 0),
                }
            return Decision(
                "deny",
                res.reason,
                0,
                call_id,
                account,
                rate,
                number,
                limits_out,
                warnings,
                detail,
                fail_mode=acc.fail_mode,
            )
        max_s = horizon
        if res.meta.get("limited", "0") == "1" and row is not None:
            max_s = min(horizon, row.max_seconds_within(from_e4(res.reserved_e4)))
        if res.duplicate:
            max_s = min(max_s, int(res.meta.get("horizon", max_s)))
        if res.reason:
            violations.append({"reason": res.reason, "value": res.value, "limit": res.limit})
        if violations:  # report-only: allowed, with what would have been denied
            for v in violations:
                warnings.append({**v, "would_deny": True})
            return Decision(
                "allow",
                "report_only",
                max_s,
                call_id,
                account,
                rate,
                number,
                limits_out,
                warnings,
                {"reserved": fmt_e4(res.reserved_e4)},
                report_only=True,
                fail_mode=acc.fail_mode,
            )
        return Decision(
            "allow",
            "ok",
            max_s,
            call_id,
            account,
            rate,
            number,
            limits_out,
            warnings,
            {"reserved": fmt_e4(res.reserved_e4), "duplicate": res.duplicate}
            if res.duplicate
            else {"reserved": fmt_e4(res.reserved_e4)},
            report_only=plan.report_only,
            fail_mode=acc.fail_mode,
        )

    @staticmethod
    def _limits_out(
        plan: Plan,
        res: ReserveResult,
        country: str,
        ntype: str,
        country_spend: int,
        type_spend: int,
    ) -> list[dict[str, Any]]:
        key = ("limits", country, ntype)
        base: list[dict[str, Any]] | None = plan.memo.get(key)
        if base is None:
            base = AuthorizeService._limits_of(plan, country, ntype, country_spend, type_spend)
            AuthorizeService._memo(plan, key, base)
        out = list(base)  # the entries are shared between answers: never changed
        if res.remaining_e4 is not None and out:
            out.append({"name": "budget_remaining", "limit": fmt_e4(max(res.remaining_e4, 0))})
        return out

    @staticmethod
    def _limits_of(
        plan: Plan, country: str, ntype: str, country_spend: int, type_spend: int
    ) -> list[dict[str, Any]]:
        lim = plan.limits
        out: list[dict[str, Any]] = []
        for name, value in (
            ("max_spend_per_hour", plan.spend_hour),
            ("max_spend_per_day", plan.spend_day),
            ("max_spend_per_month", plan.spend_month),
            (f"max_spend_per_day_by_country.{country}", country_spend),
            (f"max_spend_per_day_by_number_type.{ntype}", type_spend),
        ):
            if value != NO_LIMIT:
                out.append({"name": name, "limit": fmt_e4(value)})
        for name, n in (
            ("max_calls_per_minute", lim.max_calls_per_minute),
            ("max_calls_per_day", lim.max_calls_per_day),
            ("max_concurrent_calls", lim.max_concurrent_calls),
            ("max_call_duration_s", lim.max_call_duration_s),
            (f"max_calls_per_day_by_country.{country}", plan.calls_country.get(country)),
            (f"max_calls_per_day_by_number_type.{ntype}", plan.calls_type.get(ntype)),
        ):
            if n is not None:
                out.append({"name": name, "limit": n})
        return out

    # -- lifecycle ---------------------------------------------------------------
    # Each step has a blocking form and an ``_async`` form for the event loop (one or two
    # round trips that do not stall it); both share the decisions below. The handlers
    # pass the ``call`` they already read (tenant check), saving a round trip.
    def answer(self, call_id: str, at: datetime | None = None) -> CallState:
        """The call was answered: it now expires at answer + granted duration + grace."""
        call = self.state.get_call(call_id)
        now, expires = self._answer_times(call_id, call, at)
        return _found(call_id, self.state.answer(call_id, now, expires))

    async def answer_async(
        self, call_id: str, at: datetime | None = None, call: CallState | None = None
    ) -> CallState:
        if call is None:
            call = await self.state.get_call_async(call_id)
        now, expires = self._answer_times(call_id, call, at)
        return _found(call_id, await self.state.answer_async(call_id, now, expires))

    def _answer_times(
        self, call_id: str, call: CallState | None, at: datetime | None
    ) -> tuple[float, float]:
        if call is None:
            raise NotFound(call_id)
        now = _epoch(at if at is not None else datetime.now(UTC))
        return now, now + self.granted_s(call) + self.settings.end_grace_s

    def granted_s(self, call: CallState) -> int:
        """The max_duration_s the call was given (recomputed from its reservation)."""
        horizon = int(call.meta.get("horizon", self.settings.default_max_duration_s))
        if call.meta.get("limited") != "1" or call.meta.get("forced") == "1":
            return horizon
        row = self._row_of(call)
        if row is None:
            return horizon
        return min(horizon, row.max_seconds_within(from_e4(call.reserved_e4)))

    def _row_of(self, call: CallState) -> RateRow | None:
        deck_name = call.meta.get("deck", "")
        e164 = call.meta.get("e164", "")
        if not deck_name or not e164:
            return None
        deck = self.rates.deck_named(deck_name)
        if deck is None:
            # decks load with an account's first authorize: a call authorized by another
            # server, or before this one restarted, is priced by its account's deck
            deck = self.rates.deck_for(self.policy.account(call.account))
            if deck is not None and deck.name != deck_name:
                log.warning(
                    "call %s was reserved on deck %r; it is settled on %r, its account's "
                    "deck now", call.call_id, deck_name, deck.name,
                )  # fmt: skip
        if deck is None:
            return None
        return self.rates.lookup(deck, e164, datetime.fromisoformat(call.meta["at"]))

    def call_cost_e4(self, call: CallState, billsec: int) -> int:
        row = self._row_of(call) if billsec > 0 else None
        return 0 if row is None else to_e4(row.cost(billsec))

    def end(
        self,
        call_id: str,
        billsec: int | None = None,
        at: datetime | None = None,
        answered: bool | None = None,
    ) -> tuple[str, CallState, int]:
        call = _found(call_id, self.state.get_call(call_id))
        if call.state in ("ended", "expired"):
            return "already_ended", call, call.cost_e4 or 0
        cost, now = self._end_cost(call, billsec, at, answered)
        return self._ended(call_id, cost, self.state.end(call_id, cost, now))

    async def end_async(
        self,
        call_id: str,
        billsec: int | None = None,
        at: datetime | None = None,
        answered: bool | None = None,
        call: CallState | None = None,
    ) -> tuple[str, CallState, int]:
        if call is None:
            call = await self.state.get_call_async(call_id)
        call = _found(call_id, call)
        if call.state in ("ended", "expired"):
            return "already_ended", call, call.cost_e4 or 0
        cost, now = self._end_cost(call, billsec, at, answered)
        return self._ended(call_id, cost, await self.state.end_async(call_id, cost, now))

    def _end_cost(
        self, call: CallState, billsec: int | None, at: datetime | None, answered: bool | None
    ) -> tuple[int, float]:
        """The rated cost of the call (e4) and the end's event time."""
        when = at if at is not None else datetime.now(UTC)
        if billsec is None:
            if call.answered is None or answered is False:
                billsec = 0
            else:
                billsec = max(0, int(_epoch(when) - call.answered + 0.999999))
        if answered is False:
            billsec = 0
        return self.call_cost_e4(call, billsec), _epoch(when)

    @staticmethod
    def _ended(call_id: str, cost: int, result: EndResult) -> tuple[str, CallState, int]:
        if result.status == "unknown" or result.call is None:
            raise NotFound(call_id)
        return (
            result.status,
            result.call,
            cost if result.status == "ended" else (result.call.cost_e4 or 0),
        )

    def expire(self, at: datetime | None = None, account: str | None = None) -> int:
        when = at if at is not None else datetime.now(UTC)
        return self.state.expire(_epoch(when), account)

    async def expire_async(self, at: datetime | None = None, account: str | None = None) -> int:
        when = at if at is not None else datetime.now(UTC)
        return await self.state.expire_async(_epoch(when), account)

    # -- reads and admin ---------------------------------------------------------
    def counter_keys(
        self, account: str, at: datetime, countries: list[str], types: list[str]
    ) -> dict[str, str]:
        plan = self.plan(account)
        p = periods_at(at, plan.tz)
        tag = account_tag(account)
        keys = {
            "spend_hour": f"{tag}:sh:{p.hour}",
            "spend_day": f"{tag}:sd:{p.day}",
            "spend_month": f"{tag}:sm:{p.month}",
            "calls_minute": f"{tag}:cm:{p.minute}",
            "calls_day": f"{tag}:cd:{p.day}",
        }
        for c in sorted({*countries, *plan.spend_country, *plan.calls_country}):
            keys[f"spend_day_country.{c}"] = f"{tag}:sdc:{c}:{p.day}"
            keys[f"calls_day_country.{c}"] = f"{tag}:cdc:{c}:{p.day}"
        for t in sorted({*types, *plan.spend_type, *plan.calls_type}):
            keys[f"spend_day_number_type.{t}"] = f"{tag}:sdt:{t}:{p.day}"
            keys[f"calls_day_number_type.{t}"] = f"{tag}:cdt:{t}:{p.day}"
        return keys

    def counters(
        self,
        account: str,
        at: datetime | None = None,
        countries: list[str] | None = None,
        types: list[str] | None = None,
    ) -> dict[str, Any]:
        when = at if at is not None else datetime.now(UTC)
        keys = self.counter_keys(account, when, countries or [], types or [])
        spend_names = [n for n in keys if n.startswith("spend")]
        count_names = [n for n in keys if n.startswith("calls")]
        spends = self.state.read_spends([keys[n] for n in spend_names])
        counts = self.state.read_counts([keys[n] for n in count_names])
        plan = self.plan(account)
        out: dict[str, Any] = {
            "account": account,
            "at": when.isoformat(),
            "currency": plan.account.currency,
        }
        for n, (s, r) in zip(spend_names, spends, strict=True):
            out[n] = {"spent": fmt_e4(s), "reserved": fmt_e4(r)}
        for n, v in zip(count_names, counts, strict=True):
            out[n] = v
        out["concurrent"] = self.state.concurrent(account)
        block = self.state.get_block(account)
        out["blocked"] = (
            None if block is None else {"reason": block.reason, "by": block.by, "at": block.at}
        )
        return out

    def reset_counter(self, account: str, name: str, at: datetime | None = None) -> int:
        when = at if at is not None else datetime.now(UTC)
        if name == "concurrent":
            return self.state.release_live_calls(account)
        parts = name.split(".", 1)
        extra = [parts[1]] if len(parts) == 2 else []
        keys = self.counter_keys(
            account,
            when,
            extra if "country" in parts[0] else [],
            extra if "number_type" in parts[0] else [],
        )
        if name not in keys:
            raise NotFound(name)
        self.state.reset(keys[name])
        return 1

    def block(self, account: str, reason: str, by: str, at: datetime | None = None) -> BlockState:
        when = at if at is not None else datetime.now(UTC)
        state = BlockState(reason=reason, by=by, at=when.isoformat())
        self.state.block(account, state)
        return state

    def unblock(self, account: str) -> bool:
        return self.state.unblock(account)

    def set_policy(self, account: str, value: dict[str, Any] | None) -> None:
        self.state.set_override(account, value)
        self.invalidate(account)

    def audit(
        self, who: str, action: str, account: str | None, detail: dict[str, Any], tenant: str
    ) -> dict[str, Any]:
        entry = {
            "at": datetime.now(UTC).isoformat(),
            "who": who,
            "tenant": tenant,
            "action": action,
            "account": account,
            "detail": detail,
        }
        self.state.append_audit(entry)
        return entry
