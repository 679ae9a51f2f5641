"""Helpers shared by CLI commands: clear failures and policy loading with overrides."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from tollguard.policy import Policy, PolicyError, default_policy, load_policy

_err = Console(stderr=True)


def fail(message: str, hint: str | None = None, code: int = 2) -> NoReturn:
    _err.print(f"[bold red]error:[/bold red] {message}")
    if hint:
        _err.print(f"[dim]hint: {hint}[/dim]")
    raise typer.Exit(code)


def load_policy_with_overrides(
    path: Path | None, *, country: str | None = None, timezone: str | None = None
) -> Policy:
    try:
        policy = load_policy(path) if path else default_policy()
        updates = {k: v for k, v in {"country": country, "timezone": timezone}.items() if v}
        if updates:
            if timezone:
                updates["cdr_timezone"] = timezone
            data = policy.model_dump(by_alias=True)
            data["defaults"].update(updates)
            policy = Policy.model_validate(data)
    except PolicyError as exc:
        fail(str(exc), "fix the key named above; docs/policy.md lists every key")
    except ValueError as exc:
        fail(f"invalid option: {exc}")
    if policy.defaults.priors:  # checked now, not when the first record reaches detection
        from tollguard.detect.priors_file import policy_priors

        try:
            policy_priors(policy)
        except ValueError as exc:
            fail(f"policy defaults.priors: {exc}", "fix or remove `priors` under \\[defaults]")
    return policy
