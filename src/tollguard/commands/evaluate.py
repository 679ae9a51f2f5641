"""`tollguard evaluate SIM_DIR`: how detection does on a simulated dataset's ground truth."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tollguard.clikit import fail, load_policy_with_overrides


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)


def evaluate_cmd(
    folder: Annotated[
        Path, typer.Argument(help="A folder written by `tollguard simulate` (with truth.json).")
    ],
    policy: Annotated[
        Path | None,
        typer.Option(help="Policy to evaluate (default: the folder's policy.toml)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check detection on a simulated dataset against its ground truth.

    Minutes to a critical alert, calls before one, false alerts on normal accounts; exit
    code 1 when a target is missed (test a policy before putting it live)."""
    from tollguard.sim.evaluate import evaluate_dataset

    if not (folder / "truth.json").is_file():
        fail(
            f"{folder} has no truth.json",
            "give a folder written by `tollguard simulate OUT_DIR`",
        )
    out, err = Console(), Console(stderr=True)  # made here: they bind to the streams of now
    pol = load_policy_with_overrides(policy or folder / "policy.toml")
    try:
        with err.status("reading, rating and detecting", spinner="dots"):
            result = evaluate_dataset(folder, pol)
    except KeyError as exc:
        fail(
            f"{folder / 'truth.json'} has no {exc} (not written by this tollguard simulate?)",
            "simulate the dataset again: `tollguard simulate OUT_DIR`",
        )
    except (ValueError, OSError) as exc:
        fail(str(exc), "see `tollguard evaluate --help` and docs/simulator.md")
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        table = Table(title=f"Detection on {folder} ({result.alerts} alerts)", title_justify="left")
        for col in ("check", "value", "target", ""):
            table.add_column(col)
        for c in result.checks:
            mark = (
                ""
                if c.ok is None
                else "[green]ok[/green]"
                if c.ok
                else "[bold red]missed[/bold red]"
            )
            table.add_row(c.name, c.value, c.target, mark)
        out.print(table)
        if result.failures:
            out.print(f"[bold red]{len(result.failures)} target(s) missed[/bold red]")
        else:
            out.print("[green]every target met[/green]")
    if result.failures:
        raise typer.Exit(1)
