"""Shared bits of the case, audit, notify, payout and tariff commands: options, db, output."""

from __future__ import annotations

import getpass
import os
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from sqlalchemy import Engine

from tollguard.clikit import fail, load_policy_with_overrides
from tollguard.policy import Policy

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL (default: $TOLLGUARD_DATABASE_URL, else sqlite:///./tollguard.db).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON to stdout.")]
ActorOpt = Annotated[
    str | None, typer.Option("--actor", help="Who does this (default: $TOLLGUARD_USER or login).")
]
NowOpt = Annotated[
    str | None,
    typer.Option(
        "--now", help="Time of the action, ISO 8601 with zone (default: the clock).", hidden=True
    ),
]
SmtpOpt = Annotated[
    str | None, typer.Option("--smtp", help="SMTP URL (default $TOLLGUARD_SMTP_URL).")
]
PolicyOpt = Annotated[Path | None, typer.Option("--policy", help="Policy TOML (contacts, ...).")]


def actor_name(actor: str | None) -> str:
    if actor:
        return actor
    env = os.environ.get("TOLLGUARD_USER")
    if env:
        return env
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def parse_time(value: str | None, *, name: str = "--now") -> datetime | None:
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"{name} {value!r} is not an ISO 8601 time", "e.g. 2011-06-28T10:19:00+02:00")
    if dt.tzinfo is None:
        fail(f"{name} {value!r} has no time zone", "add Z or +02:00")
    return dt.astimezone(UTC)


def parse_day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{name} {value!r} is not a date", "use YYYY-MM-DD")


def db(url: str | None) -> Engine:
    from tollguard.cases.db import open_engine

    try:
        return open_engine(url)
    except Exception as exc:
        fail(f"cannot open the database {url or '(default)'}: {exc}", "check --db / the server")


def policy(path: Path | None) -> Policy | None:
    return load_policy_with_overrides(path) if path is not None else None


def emit_json(value: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n")
