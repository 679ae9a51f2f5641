"""The policy file (TOML): dialing context, rate decks, limits and detector tuning.

One file configures ``scan``, the detection engine and the authorize service.
Validation errors name the file, the dotted key and what is wrong.
"""

from __future__ import annotations

import tomllib
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tollguard.numbering.types import NumberType

Money = Annotated[Decimal, Field(ge=0, decimal_places=4)]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class PolicyError(ValueError):
    """A policy file that cannot be used; ``problems`` lists (key, message)."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {key}: {msg}" if key else f"{source}: {msg}" for key, msg in problems]
        super().__init__("\n".join(lines))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _upper_list(values: list[str]) -> list[str]:
    return [v.strip().upper() for v in values]


def _check_timezone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {value!r}; use an IANA name like 'Europe/Amsterdam'"
        ) from exc
    return value


def _check_country(value: str | None) -> str | None:
    return None if value is None else _check_countries([value])[0]


def _check_number_types(values: list[str]) -> list[str]:
    names = _upper_list(values)
    known = {t.name for t in NumberType}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown number type(s) {unknown}; use one of {sorted(known)}")
    return names


def _check_countries(values: list[str]) -> list[str]:
    names = _upper_list(values)
    bad = [n for n in names if not (len(n) == 2 and n.isalpha()) and n != "001"]
    if bad:
        raise ValueError(f"{bad} are not ISO 3166 alpha-2 country codes (e.g. 'TL', 'SO', 'NL')")
    return names


class TimeWindow(_Strict):
    """When calls (of a kind) are allowed, in the account's time zone.

    ``days = "mon-fri"`` or a list like ``["mon", "sat"]``; ``from``/``to`` as "HH:MM".
    ``applies_to`` restricts the window to "all", "international" or a number type.
    """

    days: str | list[str] = "mon-sun"
    start: time = Field(alias="from")
    stop: time = Field(alias="to")
    applies_to: str = "all"

    @field_validator("days")
    @classmethod
    def _days(cls, value: str | list[str]) -> str | list[str]:
        for part in [value] if isinstance(value, str) else value:
            for day in part.lower().split("-"):
                if day.strip() not in WEEKDAYS:
                    raise ValueError(f"unknown day {day!r}; use mon..sun or ranges like 'mon-fri'")
        return value

    def weekdays(self) -> frozenset[int]:
        """Monday=0 .. Sunday=6."""
        parts = [self.days] if isinstance(self.days, str) else self.days
        out: set[int] = set()
        for part in parts:
            bounds = [WEEKDAYS.index(d.strip()) for d in part.lower().split("-")]
            lo, hi = bounds[0], bounds[-1]
            out.update(range(lo, hi + 1) if lo <= hi else [*range(lo, 7), *range(0, hi + 1)])
        return frozenset(out)


class Limits(_Strict):
    """Hard limits an account asked for. All optional; absent means no limit."""

    max_spend_per_hour: Money | None = None
    max_spend_per_day: Money | None = None  # calendar day in the account's time zone
    max_spend_per_month: Money | None = None
    max_calls_per_day: int | None = Field(default=None, ge=0)
    max_calls_per_minute: int | None = Field(default=None, ge=0)
    max_concurrent_calls: int | None = Field(default=None, ge=0)
    max_call_duration_s: int | None = Field(default=None, gt=0)
    max_spend_per_day_by_country: dict[str, Money] = Field(default_factory=dict)
    max_calls_per_day_by_country: dict[str, int] = Field(default_factory=dict)
    max_spend_per_day_by_number_type: dict[str, Money] = Field(default_factory=dict)
    max_calls_per_day_by_number_type: dict[str, int] = Field(default_factory=dict)
    blocked_countries: list[str] = Field(default_factory=list)
    allowed_countries: list[str] = Field(default_factory=list)  # empty: all not blocked
    blocked_number_types: list[str] = Field(default_factory=list)
    allowed_number_types: list[str] = Field(default_factory=list)
    allowed_hours: list[TimeWindow] = Field(default_factory=list)  # empty: any time

    _countries = field_validator("blocked_countries", "allowed_countries")(_check_countries)
    _types = field_validator("blocked_number_types", "allowed_number_types")(_check_number_types)

    @field_validator("max_spend_per_day_by_country", "max_calls_per_day_by_country")
    @classmethod
    def _country_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        return dict(zip(_check_countries(list(value)), value.values(), strict=True))

    @field_validator("max_spend_per_day_by_number_type", "max_calls_per_day_by_number_type")
    @classmethod
    def _type_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        return dict(zip(_check_number_types(list(value)), value.values(), strict=True))


class DetectorSettings(_Strict):
    """Tuning for one detector: on/off, report-only, and its thresholds by name."""

    enabled: bool = True
    report_only: bool = False
    warning: dict[str, float] = Field(default_factory=dict)
    critical: dict[str, float] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)


class DialingContext(_Strict):
    """How the numbers and local times of a source/account are to be read."""

    country: str = "NL"
    timezone: str = "UTC"
    international_prefix: str | None = None  # None: the country's own (00 for NL, 011 for US)
    trunk_prefix: str | None = None  # None: the country's own (0 for NL, 1 for US)
    outside_line_prefix: str = ""  # PBX digit(s) to strip first, e.g. "9"

    _country = field_validator("country")(_check_country)
    _tz = field_validator("timezone")(_check_timezone)


class Contact(_Strict):
    name: str = ""
    email: str | None = None
    webhook: str | None = None
    min_severity: Literal["warning", "critical"] = "warning"
    # Name of the environment variable holding this webhook's HMAC secret
    # (None: TOLLGUARD_WEBHOOK_SECRET). Secrets never sit in the policy file.
    webhook_secret_env: str | None = None


class Escalation(_Strict):
    """Who is told when a case is not acknowledged in time (see docs/notifications.md)."""

    after_minutes: int = Field(default=30, gt=0)
    contacts: list[Contact] = Field(default_factory=list)


class AccountPolicy(_Strict):
    """Everything that applies to one account (merged over ``[defaults]``)."""

    country: str | None = None
    timezone: str | None = None
    currency: str | None = None
    rates: str | None = None  # deck name from [decks] or a path
    outside_line_prefix: str | None = None
    report_only: bool = False  # decide and log, but never refuse or block
    on_critical: Literal["alert", "block"] = "alert"
    fail_mode: Literal["open", "closed"] = "open"  # what the switch should do without an answer
    # "terminating": a number-range holder / PRS carrier / interconnect whose volume is not
    # its own choice; detection never blocks its trunk (see docs/detection.md). None: the
    # [defaults] value, else "originating".
    traffic: Literal["originating", "terminating"] | None = None
    limits: Limits = Field(default_factory=Limits)
    detectors: dict[str, DetectorSettings] = Field(default_factory=dict)
    contacts: list[Contact] = Field(default_factory=list)
    escalation: Escalation | None = None

    _country = field_validator("country")(_check_country)
    _tz = field_validator("timezone")(_check_timezone)


class Defaults(AccountPolicy):
    country: str | None = "NL"
    timezone: str | None = "UTC"
    currency: str | None = "EUR"
    cdr_timezone: str | None = None  # how local CDR times are read; None: same as timezone
    international_prefix: str | None = None
    trunk_prefix: str | None = None
    risk_list: str | None = None  # CSV overriding/extending the bundled high-risk list
    priors: str | None = None  # JSON written by `tollguard calibrate` (detection priors)
    operators: list[Contact] = Field(default_factory=list)  # told about every account's cases

    _cdr_tz = field_validator("cdr_timezone")(_check_timezone)


class DeckRef(_Strict):
    path: str
    currency: str | None = None


class Policy(_Strict):
    defaults: Defaults = Field(default_factory=Defaults)
    decks: dict[str, DeckRef] = Field(default_factory=dict)
    accounts: dict[str, AccountPolicy] = Field(default_factory=dict)
    # Where relative paths in the file are resolved from (the file's folder).
    base_dir: str = "."

    @model_validator(mode="after")
    def _check_refs(self) -> Policy:
        for name, acc in self.accounts.items():
            if acc.rates and acc.rates not in self.decks and not acc.rates.endswith(".csv"):
                raise ValueError(
                    f"accounts.{name}.rates: {acc.rates!r} is neither a deck in [decks] "
                    "nor a .csv path"
                )
        return self

    # -- resolved views ---------------------------------------------------
    def account(self, account_id: str) -> ResolvedAccount:
        own = self.accounts.get(account_id)
        d = self.defaults
        merged_detectors = dict(d.detectors)
        if own is not None:
            merged_detectors.update(own.detectors)
        src = own or d
        return ResolvedAccount(
            account=account_id,
            known=own is not None,
            timezone=(own and own.timezone) or d.timezone or "UTC",
            currency=(own and own.currency) or d.currency or "EUR",
            rates=(own and own.rates) or d.rates,
            context=self.dialing_context(account_id),
            limits=own.limits if own is not None and own.limits != Limits() else d.limits,
            report_only=src.report_only,
            on_critical=src.on_critical,
            fail_mode=src.fail_mode,
            traffic=(own and own.traffic) or d.traffic or "originating",
            detectors=merged_detectors,
            contacts=list(src.contacts) or list(d.contacts),
            operators=list(d.operators),
            escalation=(own and own.escalation) or d.escalation,
        )

    def dialing_context(self, account_id: str | None = None) -> DialingContext:
        own = self.accounts.get(account_id or "") if account_id else None
        d = self.defaults
        return DialingContext(
            country=(own and own.country) or d.country or "NL",
            timezone=d.cdr_timezone or (own and own.timezone) or d.timezone or "UTC",
            international_prefix=d.international_prefix,
            trunk_prefix=d.trunk_prefix,
            outside_line_prefix=(
                own.outside_line_prefix
                if own is not None and own.outside_line_prefix is not None
                else d.outside_line_prefix or ""
            ),
        )

    def resolve_path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else Path(self.base_dir) / p


class ResolvedAccount(BaseModel):
    model_config = ConfigDict(frozen=True)

    account: str
    known: bool
    timezone: str
    currency: str
    rates: str | None
    context: DialingContext
    limits: Limits
    report_only: bool
    on_critical: Literal["alert", "block"]
    fail_mode: Literal["open", "closed"]
    detectors: dict[str, DetectorSettings]
    traffic: Literal["originating", "terminating"] = "originating"
    contacts: list[Contact]
    operators: list[Contact] = []
    escalation: Escalation | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def detector(self, name: str) -> DetectorSettings:
        return self.detectors.get(name, DetectorSettings())


def _format_loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def parse_policy(data: dict[str, Any], source: str = "<policy>", base_dir: str = ".") -> Policy:
    try:
        return Policy.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        problems = [(_format_loc(err["loc"]), err["msg"]) for err in exc.errors()]
        raise PolicyError(source, problems) from None


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(str(path), [("", f"cannot read policy file: {exc.strerror}")]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(str(path), [("", f"not valid TOML: {exc}")]) from None
    return parse_policy(data, str(path), str(path.parent))


def default_policy() -> Policy:
    return Policy()
