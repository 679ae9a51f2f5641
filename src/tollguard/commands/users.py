"""`tollguard users ...`: dashboard users (names, roles, scrypt password hashes)."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated

import typer

from tollguard.clikit import fail

app = typer.Typer(help="Dashboard users, stored with scrypt hashes in a TOML file.",
                  no_args_is_help=True)  # fmt: skip

UsersOpt = Annotated[
    Path | None,
    typer.Option("--users", help="Users TOML (default: $TOLLGUARD_USERS_FILE, else users.toml)."),
]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="users")


def _path(users: Path | None) -> Path:
    if users is not None:
        return users
    env = os.environ.get("TOLLGUARD_USERS_FILE")
    return Path(env) if env else Path("users.toml")


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option(help="admin | analyst | customer")] = "analyst",
    account: Annotated[
        list[str] | None,
        typer.Option("--account", help="Account (glob) a customer may see; repeat for more."),
    ] = None,
    users: UsersOpt = None,
    password_env: Annotated[
        str | None,
        typer.Option(help="Read the password from this environment variable (scripts)."),
    ] = None,
) -> None:
    """Add a user (or replace one of the same name); asks for the password twice."""
    from tollguard.web.users import UsersError, UserStore

    path = _path(users)
    if password_env:
        password = os.environ.get(password_env, "")
        if not password:
            fail(f"${password_env} is empty or not set")
    else:
        password = getpass.getpass(f"password for {name}: ")
        if password != getpass.getpass("again: "):
            fail("the passwords differ")
    if len(password) < 8:
        fail("the password is shorter than 8 characters")
    try:
        store = UserStore.load(path)
        store.add(name, role, password, list(account or []))
    except UsersError as exc:
        fail(str(exc))
    typer.echo(f"{name} ({role}) written to {path}", err=True)


@app.command("list")
def list_users(users: UsersOpt = None) -> None:
    """Names, roles and accounts (never the hashes)."""
    from tollguard.web.users import UsersError, UserStore

    try:
        store = UserStore.load(_path(users))
    except UsersError as exc:
        fail(str(exc))
    for user in store.users.values():
        scope = ", ".join(user.accounts) if user.accounts else "all accounts"
        typer.echo(f"{user.name}\t{user.role}\t{scope}")
