"""`tollguard serve`: the real-time authorize service; `tollguard keys`: API key helpers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from fastapi import APIRouter

    from tollguard.cases.service import CaseService
    from tollguard.limits.service import AuthorizeService

DEFAULT_STATE = "sqlite:///tollguard-state.db"

keys_app = typer.Typer(help="API keys for `tollguard serve` (stored hashed in a TOML file).")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")


def serve(
    policy: Annotated[
        Path | None, typer.Option(help="Policy TOML (accounts, limits, decks).")
    ] = None,
    rates: Annotated[str | None, typer.Option(help="Default rate deck CSV or deck name.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    state: Annotated[
        str | None,
        typer.Option(
            help="memory://, sqlite:///FILE (memory + SQLite journal; the default) or "
            "redis://HOST:PORT/DB. Default: $TOLLGUARD_REDIS_URL if set, else "
            f"{DEFAULT_STATE}."
        ),
    ] = None,
    keys: Annotated[
        Path | None, typer.Option(help="API keys TOML (default: $TOLLGUARD_KEYS_FILE).")
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Development only: every caller is an admin.")
    ] = False,
    allow_unknown_accounts: Annotated[
        bool,
        typer.Option(help="Authorize accounts not in the policy with \\[defaults] (else deny)."),
    ] = False,
    sweep_interval: Annotated[
        float, typer.Option(help="Seconds between expiry sweeps of calls without an end; 0 off.")
    ] = 30.0,
    ring_timeout: Annotated[int, typer.Option(help="Unanswered calls expire after (s).")] = 180,
    end_grace: Annotated[
        int, typer.Option(help="Answered calls expire max_duration_s + this (s).")
    ] = 300,
    max_duration: Annotated[
        int, typer.Option(help="Longest grant when no limit is tighter (s).")
    ] = 4 * 3600,
    lease_calls: Annotated[
        int,
        typer.Option(
            envvar="TOLLGUARD_LEASE_CALLS",
            help="Redis only: decide up to N calls per account and place from a quota lease"
            " held by this server, without a Redis round trip (docs/authorize.md,"
            " 'Quota leases'). 0: every decision asks Redis.",
        ),
    ] = 0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
    db: Annotated[
        str | None,
        typer.Option(
            help="Database for CDRs posted to /v1/cdrs (stored once), alerts and cases "
            "(sqlite:///tollguard.db, postgresql+psycopg://...)."
            " Default: $TOLLGUARD_DATABASE_URL; without it, cases are off."
        ),
    ] = None,
    dashboard: Annotated[
        bool, typer.Option(help="Serve the web dashboard (pages at /; needs --users).")
    ] = False,
    users: Annotated[
        Path | None, typer.Option(help="Dashboard users TOML (default: $TOLLGUARD_USERS_FILE).")
    ] = None,
    secure_cookies: Annotated[
        bool, typer.Option(help="Dashboard cookies only over HTTPS (behind a TLS proxy).")
    ] = False,
) -> None:
    """Answer switches' "may this call go through?" and keep every limit in real time."""
    import uvicorn

    from tollguard.api.app import create_app
    from tollguard.api.auth import Keyring, KeysError
    from tollguard.clikit import load_policy_with_overrides
    from tollguard.limits.backends import StateURLError, open_state
    from tollguard.limits.service import AuthorizeService, Settings

    pol = load_policy_with_overrides(policy)  # exit 2 with the reason on a bad policy
    keys_path = keys or (
        Path(os.environ["TOLLGUARD_KEYS_FILE"]) if os.environ.get("TOLLGUARD_KEYS_FILE") else None
    )
    if keys_path is None and not no_auth:
        typer.echo(
            "no API keys: pass --keys FILE (or set TOLLGUARD_KEYS_FILE); "
            "`tollguard keys new` makes one. --no-auth is for development only.",
            err=True,
        )
        raise typer.Exit(2)
    try:
        keyring = Keyring.load(keys_path) if keys_path is not None and not no_auth else None
    except KeysError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    url = state or os.environ.get("TOLLGUARD_REDIS_URL") or DEFAULT_STATE
    try:
        backend = open_state(url, lease_calls=lease_calls)
    except StateURLError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    settings = Settings(
        allow_unknown_accounts=allow_unknown_accounts,
        default_max_duration_s=max_duration,
        ring_timeout_s=ring_timeout,
        end_grace_s=end_grace,
    )
    try:
        service = AuthorizeService(pol, backend, rates, settings)
    except ValueError as exc:  # rate deck problems
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    cases = None
    ingestor = None
    db_url = db or os.environ.get("TOLLGUARD_DATABASE_URL")
    if db_url:
        from tollguard.cases.service import CaseService
        from tollguard.ingest.core import Ingestor
        from tollguard.store.engine import make_engine
        from tollguard.store.migrate import upgrade

        upgrade(db_url)
        store = make_engine(db_url)
        cases = CaseService(store, policy=pol)
        ingestor = Ingestor(store, pol, rates=service.rates.default_rates)  # POST /v1/cdrs
    web = None
    if dashboard:
        web = _dashboard(service, cases, users, secure_cookies)
    app = create_app(
        service, keyring, sweep_interval_s=sweep_interval, cases=cases, web=web, ingestor=ingestor
    )
    leases = f", quota leases of {lease_calls} calls" if lease_calls else ""
    typer.echo(
        f"tollguard serve on http://{host}:{port} (state {url.split('@')[-1]}{leases})", err=True
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
    backend.close()


def _dashboard(
    service: AuthorizeService, cases: CaseService | None, users: Path | None, secure: bool
) -> APIRouter:
    from tollguard.web.app import Dashboard
    from tollguard.web.users import UsersError, UserStore

    path = users or (
        Path(os.environ["TOLLGUARD_USERS_FILE"]) if os.environ.get("TOLLGUARD_USERS_FILE") else None
    )
    if path is None:
        typer.echo("--dashboard needs --users FILE (`tollguard users add` makes one)", err=True)
        raise typer.Exit(2)
    try:
        store = UserStore.load(path)
    except UsersError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if not store.users:
        typer.echo(f"{path}: no users yet; `tollguard users add` adds one", err=True)
        raise typer.Exit(2)
    return Dashboard(service, store, cases=cases, secure_cookies=secure).router


@keys_app.command("new")
def keys_new(
    name: Annotated[str, typer.Option(help="Key name (shown in the audit log).")],
    role: Annotated[str, typer.Option(help="switch | analyst | admin")] = "switch",
    tenant: Annotated[str, typer.Option(help="Tenant name from \\[tenants], or '*'.")] = "*",
) -> None:
    """Make a new key: prints the key once (give it to the client) and its TOML entry."""
    from tollguard.api.auth import ROLES, hash_key, new_key

    if role not in ROLES:
        typer.echo(f"role must be one of {list(ROLES)}", err=True)
        raise typer.Exit(2)
    raw = new_key()
    typer.echo(f"# key (shown once): {raw}")
    typer.echo(f'[[keys]]\nname = "{name}"\nrole = "{role}"\ntenant = "{tenant}"')
    typer.echo(f'sha256 = "{hash_key(raw)}"')


@keys_app.command("hash")
def keys_hash(key: Annotated[str, typer.Argument(help="The raw key.")]) -> None:
    """SHA-256 of a key, for the keys file."""
    from tollguard.api.auth import hash_key

    typer.echo(hash_key(key))


if __name__ == "__main__":  # `python -m tollguard.commands.serve serve ...` (same command)
    _standalone = typer.Typer(add_completion=False)
    register(_standalone)
    _standalone()
