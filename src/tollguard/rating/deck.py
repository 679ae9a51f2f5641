"""Rate decks: load a CSV price list by number prefix and price single calls exactly.

The deck format, billing increments, effective dates and the rounding rule are
described in docs/rating.md. In short:

* ``cost = connect_fee + per_call_fee + rate_per_minute * charged_seconds / 60``,
  rounded ROUND_HALF_UP to 0.0001 once per call;
* fees are charged only on answered calls with at least one billable second;
* ``charged_seconds`` rounds ``billsec`` up to the deck row's increments;
* the deck as of a call's start holds, per prefix, the row with the latest
  ``effective_from`` at or before the start; the longest such prefix wins.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from pathlib import Path

from tollguard.cdr.model import MONEY_QUANTUM

__all__ = [
    "DEFAULT_BILLING",
    "FEE_PLACES",
    "MAX_RATE_PER_MINUTE",
    "RATE_PLACES",
    "UNLIMITED_SECONDS",
    "RateDeck",
    "RateDeckError",
    "RateRow",
    "datetime_to_us",
    "e164_digits",
    "normalize_prefix",
]

RATE_PLACES = 6  # decimals allowed in rate_per_minute
FEE_PLACES = 4  # decimals allowed in connect_fee / per_call_fee (= MONEY_QUANTUM)
MAX_RATE_PER_MINUTE = Decimal(100_000)  # anything above is a typo, and keeps integer math small
MAX_FEE = Decimal(100_000)
DEFAULT_BILLING = (1, 1)
MAX_INCREMENT = 86_400
# max_seconds_within() when the budget can never run out (rate 0, fees within budget).
UNLIMITED_SECONDS = 2**31 - 1
MAX_REPORTED_PROBLEMS = 50

REQUIRED_COLUMNS = ("prefix", "destination", "rate_per_minute")
OPTIONAL_COLUMNS = ("connect_fee", "per_call_fee", "billing", "effective_from", "currency")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_PLAIN_DECIMAL = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)$")
_BILLING = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_PREFIX_JUNK = re.compile(r"[\s\-().]")


def datetime_to_us(value: datetime) -> int:
    """Microseconds since the Unix epoch; a naive datetime is read as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _ONE_US


def normalize_prefix(text: str) -> str | None:
    """Deck prefix or E.164 number to its digits: '+670 77' -> '67077'; None if not digits."""
    digits = _PREFIX_JUNK.sub("", text.strip())
    if digits.startswith("+"):
        digits = digits[1:]
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    return digits


def e164_digits(number: str) -> str | None:
    """'+31201234567' or '31201234567' -> '31201234567'; None unless 1-15 digits not
    starting with 0 (no spaces: numbers are normalized before rating)."""
    digits = number[1:] if number.startswith("+") else number
    if not (0 < len(digits) <= 15 and digits.isascii() and digits.isdigit()) or digits[0] == "0":
        return None
    return digits


def _e4(value: Decimal) -> int:
    return int((value / MONEY_QUANTUM).to_integral_value(rounding=ROUND_FLOOR))


@dataclass(frozen=True)
class RateRow:
    """One priced prefix of a deck (one version of it, when effective dates are used).

    ``row`` is the 1-based physical line of the row in the deck file, the same
    number that error messages use.
    """

    deck: str
    row: int
    prefix: str
    destination: str
    rate_per_minute: Decimal
    connect_fee: Decimal
    per_call_fee: Decimal
    first_increment: int
    next_increment: int
    effective_from: datetime | None
    currency: str

    @property
    def billing(self) -> str:
        return f"{self.first_increment}/{self.next_increment}"

    @property
    def fees(self) -> Decimal:
        return self.connect_fee + self.per_call_fee

    def charged_seconds(self, billsec: int) -> int:
        """``billsec`` rounded up to the increments; 0 for a call without billable seconds."""
        if billsec <= 0:
            return 0
        first, nxt = self.first_increment, self.next_increment
        if billsec <= first:
            return first
        return first + -(-(billsec - first) // nxt) * nxt

    def cost(self, billsec: int, answered: bool = True) -> Decimal:
        """Exact price of one call, rounded ROUND_HALF_UP to 0.0001 once.

        Unanswered calls and calls with ``billsec <= 0`` cost 0 (no fees either).
        """
        if not answered or billsec <= 0:
            return Decimal(0).quantize(MONEY_QUANTUM)
        seconds = self.charged_seconds(billsec)
        with localcontext() as ctx:
            ctx.prec = 60
            raw = self.connect_fee + self.per_call_fee + self.rate_per_minute * seconds / 60
            return raw.quantize(MONEY_QUANTUM, rounding=ROUND_HALF_UP)

    def max_seconds_within(self, budget: Decimal) -> int:
        """Longest ``billsec`` whose cost stays within ``budget``.

        The answer is always an increment boundary (a call of that length costs
        exactly what the whole increment costs). 0 when even the first increment
        plus the fees exceeds the budget; ``UNLIMITED_SECONDS`` when the rate is 0
        and the fees fit.
        """
        if budget < 0:
            return 0
        fees_e4 = _e4(self.fees)
        budget_e4 = _e4(budget)  # costs have 4 places, so cost <= budget <=> cost <= floor4(budget)
        left_e4 = budget_e4 - fees_e4
        if left_e4 < 0:
            return 0
        rate_e6 = int(self.rate_per_minute.scaleb(RATE_PLACES))
        if rate_e6 == 0:
            return UNLIMITED_SECONDS
        # variable cost in e4 = round_half_up(rate_e6 * s / 6000) <= left
        # <=> rate_e6 * s + 3000 < 6000 * (left + 1) <=> rate_e6 * s <= 6000 * left + 2999
        max_charged = (6000 * left_e4 + 2999) // rate_e6
        first, nxt = self.first_increment, self.next_increment
        if max_charged < first:
            return 0
        seconds = first + (max_charged - first) // nxt * nxt
        return min(seconds, UNLIMITED_SECONDS)


class RateDeckError(ValueError):
    """A deck file that cannot be used; ``problems`` holds every "file:line: message"."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = problems[:MAX_REPORTED_PROBLEMS]
        more = len(problems) - len(shown)
        text = "\n".join(shown)
        if more > 0:
            text += f"\n... and {more} more problem(s)"
        super().__init__(text)


@dataclass
class _PrefixVersions:
    """All versions of one prefix, ordered by effective_from (undated first)."""

    starts_us: list[int] = field(default_factory=list)
    rows: list[RateRow] = field(default_factory=list)

    def at(self, at_us: int) -> RateRow | None:
        i = bisect_right(self.starts_us, at_us)
        return self.rows[i - 1] if i else None


# effective_from None sorts before every real instant
UNDATED_US = -(2**62)


class RateDeck:
    """A loaded rate deck. Build with :meth:`load` (or the constructor for tests)."""

    def __init__(self, name: str, currency: str, rows: Iterable[RateRow]) -> None:
        self.name = name
        self.currency = currency
        self.rows: list[RateRow] = list(rows)
        index: dict[str, _PrefixVersions] = {}
        for row in sorted(self.rows, key=_row_start_us):
            versions = index.setdefault(row.prefix, _PrefixVersions())
            versions.starts_us.append(_row_start_us(row))
            versions.rows.append(row)
        self._index = index
        self._lengths = sorted({len(p) for p in index}, reverse=True)

    def __repr__(self) -> str:
        return f"RateDeck(name={self.name!r}, currency={self.currency!r}, rows={len(self.rows)})"

    @property
    def dated(self) -> bool:
        """True when any row has an effective_from."""
        return any(r.effective_from is not None for r in self.rows)

    @classmethod
    def load(cls, path: str | Path, name: str | None = None, currency: str = "EUR") -> RateDeck:
        """Read a deck CSV. ``currency`` applies to rows without a currency column/value.

        Raises :class:`RateDeckError` listing every problem with its line number.
        """
        path = Path(path)
        label = str(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise RateDeckError([f"{label}: cannot read rate deck: {exc.strerror}"]) from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            problem = f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start})"
            raise RateDeckError([problem]) from None
        return cls.parse(text, name=name or path.stem, currency=currency, source=label)

    @classmethod
    def parse(cls, text: str, name: str, currency: str = "EUR", source: str = "<deck>") -> RateDeck:
        """Parse deck CSV text; ``source`` names the file in error messages."""
        rows, problems = _parse(text, name, currency.strip().upper(), source)
        if problems:
            raise RateDeckError(problems)
        currencies = {r.currency for r in rows}
        deck_currency = currencies.pop() if len(currencies) == 1 else currency.strip().upper()
        return cls(name, deck_currency, rows)

    def versions(self, prefix: str) -> list[RateRow]:
        """Every row for an exact prefix, oldest first."""
        found = self._index.get(prefix)
        return list(found.rows) if found else []

    def lookup(self, e164: str, at: datetime) -> RateRow | None:
        """The row pricing a call to ``e164`` started at ``at``, or None (unrated).

        Longest prefix among the rows in effect at ``at``: a prefix whose first
        version starts later does not hide a shorter prefix that is in effect.
        """
        digits = e164_digits(e164)
        if digits is None:
            return None
        at_us = datetime_to_us(at)
        n = len(digits)
        for length in self._lengths:
            if length > n:
                continue
            versions = self._index.get(digits[:length])
            if versions is not None:
                row = versions.at(at_us)
                if row is not None:
                    return row
        return None


def _row_start_us(row: RateRow) -> int:
    return UNDATED_US if row.effective_from is None else datetime_to_us(row.effective_from)


def _parse_decimal(text: str, column: str, places: int) -> tuple[Decimal | None, str | None]:
    value = text.strip()
    if not _PLAIN_DECIMAL.match(value):
        hint = ""
        if re.match(r"^\d*,\d+$", value):
            hint = " (use '.' as the decimal separator)"
        elif value.startswith("-"):
            return None, f"{column} {value!r} is negative"
        return None, f"{column} {value!r} is not a number{hint}"
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None, f"{column} {value!r} is not a number"
    quantum = Decimal(1).scaleb(-places)
    if number.quantize(quantum, rounding=ROUND_FLOOR) != number:
        return None, f"{column} {value!r} has more than {places} decimal places"
    return number, None


def _parse_effective(text: str) -> tuple[datetime | None, str | None]:
    value = text.strip()
    if not value:
        return None, None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            d = date.fromisoformat(value)
        except ValueError as exc:
            return None, f"effective_from {value!r} is not a valid date ({exc})"
        return datetime(d.year, d.month, d.day, tzinfo=UTC), None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None, (
            f"effective_from {value!r} is not a date (YYYY-MM-DD) "
            "or a datetime with offset (YYYY-MM-DDTHH:MM:SS+01:00)"
        )
    if moment.tzinfo is None:
        return None, (
            f"effective_from {value!r} has no UTC offset; add one (e.g. '+00:00' or 'Z') "
            "or give a plain date (read as 00:00 UTC)"
        )
    return moment.astimezone(UTC), None


def _header(fields: list[str], where: str) -> tuple[dict[str, int], list[str]]:
    names = [f.strip().lower().lstrip("\ufeff") for f in fields]
    problems: list[str] = []
    columns: dict[str, int] = {}
    known = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
    for i, col in enumerate(names):
        if col in columns:
            problems.append(f"{where}: column {col!r} appears twice")
        elif col in known:
            columns[col] = i
        elif col:
            close = difflib.get_close_matches(col, known, n=1, cutoff=0.8)
            if close:
                problems.append(f"{where}: unknown column {col!r}; did you mean {close[0]!r}?")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        problems.append(
            f"{where}: missing required column(s) {', '.join(missing)}; "
            f"the header must name {', '.join(REQUIRED_COLUMNS)}"
        )
    return columns, problems


def _parse(text: str, name: str, currency: str, source: str) -> tuple[list[RateRow], list[str]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    problems: list[str] = []
    header: list[str] | None = None
    columns: dict[str, int] = {}
    rows: list[RateRow] = []
    seen: dict[tuple[str, int], int] = {}
    if not _CURRENCY.match(currency):
        problems.append(f"{source}: default currency {currency!r} is not a 3-letter ISO 4217 code")
    try:
        for fields in reader:
            line = reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            if header is None:
                header = fields
                columns, header_problems = _header(fields, f"{source}:{line}")
                problems.extend(header_problems)
                if any(c not in columns for c in REQUIRED_COLUMNS):
                    return [], problems
                continue
            row, row_problems = _parse_row(fields, columns, line, name, currency)
            problems.extend(f"{source}:{line}: {p}" for p in row_problems)
            if row is None:
                continue
            key = (row.prefix, _row_start_us(row))
            if key in seen:
                when = (
                    "without effective_from"
                    if row.effective_from is None
                    else f"effective {row.effective_from.isoformat()}"
                )
                problems.append(
                    f"{source}:{line}: prefix {row.prefix} {when} is already on line {seen[key]}"
                )
                continue
            seen[key] = line
            rows.append(row)
    except csv.Error as exc:
        problems.append(f"{source}:{reader.line_num}: not valid CSV: {exc}")
    if header is None:
        wanted = ", ".join(REQUIRED_COLUMNS)
        problems.append(f"{source}: empty rate deck; expected a header line with {wanted}")
    elif not rows and not problems:
        problems.append(f"{source}: rate deck has a header but no rows")
    currencies = {r.currency for r in rows}
    if len(currencies) > 1:
        problems.append(
            f"{source}: rows use several currencies ({', '.join(sorted(currencies))}); "
            "one deck must price in one currency"
        )
    return rows, problems


def _parse_row(
    fields: list[str], columns: dict[str, int], line: int, deck: str, currency: str
) -> tuple[RateRow | None, list[str]]:
    problems: list[str] = []

    def get(col: str) -> str:
        i = columns.get(col)
        if i is None or i >= len(fields):
            return ""
        return fields[i].strip()

    needed = max(columns[c] for c in REQUIRED_COLUMNS) + 1
    if len(fields) < needed:
        problems.append(
            f"has {len(fields)} field(s); prefix, destination and rate_per_minute need {needed}"
        )
        return None, problems

    raw_prefix = get("prefix")
    prefix = normalize_prefix(raw_prefix)
    if prefix is None:
        problems.append(f"prefix {raw_prefix!r} is not a digit string like '+67077' or '67077'")
    elif prefix.startswith("0"):
        problems.append(
            f"prefix {raw_prefix!r} starts with 0; write E.164 prefixes with the country code "
            "(e.g. '31900' for Dutch 0900 numbers)"
        )
    elif len(prefix) > 15:
        problems.append(f"prefix {raw_prefix!r} is longer than an E.164 number (15 digits)")

    rate, err = _parse_decimal(get("rate_per_minute"), "rate_per_minute", RATE_PLACES)
    if err:
        problems.append(err)
    elif rate is not None and rate > MAX_RATE_PER_MINUTE:
        text = get("rate_per_minute")
        problems.append(f"rate_per_minute {text!r} is above {MAX_RATE_PER_MINUTE}")

    fees: dict[str, Decimal] = {}
    for col in ("connect_fee", "per_call_fee"):
        text = get(col)
        if not text:
            fees[col] = Decimal("0")
            continue
        fee, err = _parse_decimal(text, col, FEE_PLACES)
        if err:
            problems.append(err)
        elif fee is not None:
            if fee > MAX_FEE:
                problems.append(f"{col} {text!r} is above {MAX_FEE}")
            fees[col] = fee

    first, nxt = DEFAULT_BILLING
    billing = get("billing")
    if billing:
        m = _BILLING.match(billing)
        if not m:
            problems.append(
                f"billing {billing!r} is not 'first/next' seconds like '60/60', '30/6' or '1/1'"
            )
        else:
            first, nxt = int(m.group(1)), int(m.group(2))
            if not (1 <= first <= MAX_INCREMENT and 1 <= nxt <= MAX_INCREMENT):
                problems.append(
                    f"billing {billing!r}: increments must be 1..{MAX_INCREMENT} seconds"
                )

    effective, err = _parse_effective(get("effective_from"))
    if err:
        problems.append(err)

    row_currency = get("currency").upper() or currency
    if not _CURRENCY.match(row_currency):
        problems.append(f"currency {get('currency')!r} is not a 3-letter ISO 4217 code like 'EUR'")

    if problems or prefix is None or rate is None:
        return None, problems
    return (
        RateRow(
            deck=deck,
            row=line,
            prefix=prefix,
            destination=get("destination"),
            rate_per_minute=rate,
            connect_fee=fees["connect_fee"],
            per_call_fee=fees["per_call_fee"],
            first_increment=first,
            next_increment=nxt,
            effective_from=effective,
            currency=row_currency,
        ),
        problems,
    )
