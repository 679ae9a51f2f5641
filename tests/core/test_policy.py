"""The policy file: parsing, validation messages, per-account resolution."""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from pathlib import Path

import pytest

from tollguard.policy import PolicyError, load_policy, parse_policy

ISSUE_EXAMPLE = """
[defaults]
country = "NL"                 # dialing context for normalization
timezone = "Europe/Amsterdam"  # how local CDR times are read, and where a "day" starts
currency = "EUR"
rates = "rates.csv"            # may also be given with --rates

[accounts."acme-hq".limits]
max_spend_per_day = "500.00"
max_calls_per_day = 2000
max_concurrent_calls = 30
blocked_countries = ["TL", "SO"]
blocked_number_types = ["PREMIUM_RATE", "SATELLITE"]
"""


def test_issue_example_parses_and_resolves(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(ISSUE_EXAMPLE)
    policy = load_policy(path)
    acme = policy.account("acme-hq")
    assert acme.known
    assert acme.timezone == "Europe/Amsterdam"
    assert acme.limits.max_spend_per_day == Decimal("500.00")
    assert acme.limits.max_calls_per_day == 2000
    assert acme.limits.blocked_countries == ["TL", "SO"]
    assert acme.limits.blocked_number_types == ["PREMIUM_RATE", "SATELLITE"]
    # relative paths resolve next to the policy file, not the working directory
    assert policy.resolve_path("rates.csv") == tmp_path / "rates.csv"


def test_unknown_account_falls_back_to_defaults() -> None:
    policy = parse_policy(
        {"defaults": {"timezone": "Europe/Amsterdam", "limits": {"max_spend_per_day": "50"}}}
    )
    other = policy.account("nobody")
    assert not other.known
    assert other.limits.max_spend_per_day == Decimal("50")
    assert other.currency == "EUR"


def test_errors_name_file_key_and_problem() -> None:
    bad = {
        "defaults": {"timezone": "Mars/Olympus"},
        "accounts": {
            "x": {
                "limits": {
                    "max_spend_per_day": "lots",
                    "blocked_countries": ["Timor"],
                    "blocked_number_types": ["EXPENSIVE"],
                    "max_calls_per_day": -1,
                }
            }
        },
    }
    with pytest.raises(PolicyError) as info:
        parse_policy(bad, "p.toml")
    text = str(info.value)
    keys = {key for key, _ in info.value.problems}
    assert "defaults.timezone" in keys or "Mars/Olympus" in text
    assert "accounts.x.limits.max_spend_per_day" in keys
    assert "accounts.x.limits.blocked_countries" in keys
    assert "accounts.x.limits.blocked_number_types" in keys
    assert "accounts.x.limits.max_calls_per_day" in keys
    assert all(line.startswith("p.toml: ") for line in text.splitlines())


def test_unknown_key_is_an_error_not_ignored() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy({"accounts": {"x": {"limits": {"max_spend_per_dya": "5"}}}})
    assert "accounts.x.limits.max_spend_per_dya" in str(info.value)


def test_money_with_too_many_decimals_rejected() -> None:
    with pytest.raises(PolicyError):
        parse_policy({"defaults": {"limits": {"max_spend_per_day": "1.00001"}}})


def test_time_windows_and_weekdays() -> None:
    policy = parse_policy(
        {
            "accounts": {
                "a": {
                    "limits": {
                        "allowed_hours": [
                            {
                                "days": "mon-fri",
                                "from": "07:00",
                                "to": "20:00",
                                "applies_to": "international",
                            },
                            {"days": ["sat", "sun"], "from": "10:00", "to": "12:00"},
                            {"days": "fri-mon", "from": "00:00", "to": "23:59"},
                        ]
                    }
                }
            }
        }
    )
    windows = policy.account("a").limits.allowed_hours
    assert windows[0].weekdays() == frozenset({0, 1, 2, 3, 4})
    assert windows[0].start == time(7) and windows[0].stop == time(20)
    assert windows[1].weekdays() == frozenset({5, 6})
    assert windows[2].weekdays() == frozenset({4, 5, 6, 0})  # wraps over the weekend


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[defaults\ncountry = 'NL'")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(broken)
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy(tmp_path / "missing.toml")


def test_account_rates_must_name_a_deck_or_csv() -> None:
    with pytest.raises(PolicyError, match="neither a deck"):
        parse_policy({"accounts": {"a": {"rates": "wholesale"}}})
    ok = parse_policy(
        {"decks": {"wholesale": {"path": "w.csv"}}, "accounts": {"a": {"rates": "wholesale"}}}
    )
    assert ok.account("a").rates == "wholesale"


def test_dialing_context_per_account_and_cdr_timezone() -> None:
    policy = parse_policy(
        {
            "defaults": {
                "country": "NL",
                "timezone": "Europe/Amsterdam",
                "outside_line_prefix": "9",
            },
            "accounts": {"be": {"country": "BE", "outside_line_prefix": ""}},
        }
    )
    assert policy.dialing_context("be").country == "BE"
    assert policy.dialing_context("be").outside_line_prefix == ""
    assert policy.dialing_context("nl").outside_line_prefix == "9"
    assert policy.dialing_context().timezone == "Europe/Amsterdam"
