"""`tollguard simulate OUT_DIR`: write a realistic CDR dataset with the brief's fraud scenarios."""

from __future__ import annotations

import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tollguard.clikit import fail

err = Console(stderr=True)
out = Console()

SCENARIO_HELP = (
    "pbx-hack | voip-hack | prs-pumping | wangiri | sequential | normal | all "
    "(repeat the option for several; normal traffic is always included)."
)


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_cmd)


def simulate_cmd(
    out_dir: Annotated[
        Path, typer.Argument(help="Folder to write Master.csv, rates.csv, policy.toml, truth.json.")
    ],
    scenario: Annotated[list[str], typer.Option("--scenario", "-s", help=SCENARIO_HELP)] = ["all"],  # noqa: B006
    days: Annotated[int, typer.Option(min=1, max=400, help="Days of traffic.")] = 30,
    seed: Annotated[int, typer.Option(help="Same seed, same files, byte for byte.")] = 1,
    accounts: Annotated[int, typer.Option(min=1, max=2000, help="Normal business accounts.")] = 40,
    fmt: Annotated[
        str, typer.Option("--format", help="asterisk (Master.csv, 18 columns) or freeswitch.")
    ] = "asterisk",
    start: Annotated[
        str, typer.Option(help="First day (local, Europe/Amsterdam), YYYY-MM-DD.")
    ] = "2026-10-01",
    scale: Annotated[
        float, typer.Option(min=0.0001, max=10.0, help="Volume factor for PRS pumping.")
    ] = 1.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON on stdout.")
    ] = False,
) -> None:
    """Write simulated traffic: normal business calls plus fraud scenarios, with ground truth."""
    from tollguard.sim import FORMATS, expand_scenarios, simulate

    if fmt not in FORMATS:
        fail(f"unknown format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    try:
        first = date.fromisoformat(start)
        names = expand_scenarios(scenario)
    except ValueError as exc:
        fail(str(exc))
    began = time.perf_counter()
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]simulating[/bold] {task.description}"),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=as_json or not err.is_terminal,
    ) as progress:
        task = progress.add_task(", ".join(names) or "normal", total=None)

        def hook(n: int) -> None:
            progress.advance(task, n)

        result = simulate(
            out_dir, scenario, days=days, seed=seed, accounts=accounts, fmt=fmt, start=first,
            scale=scale, progress=hook,
        )  # fmt: skip
    summary = result.summary()
    summary["seconds"] = round(time.perf_counter() - began, 2)
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    print_summary(summary, result.truth)


def print_summary(summary: dict[str, Any], truth: dict[str, Any]) -> None:
    out.print(
        f"[green]wrote {summary['calls']:,} calls[/green] ({truth['format']}, "
        f"{truth['start']} .. {truth['end']}, seed {truth['seed']}) in {summary['seconds']} s"
    )
    for kind, path in summary["files"].items():
        out.print(f"  {kind:7} {path}")
    table = Table(title="calls per scenario", show_lines=False)
    table.add_column("scenario")
    table.add_column("account")
    table.add_column("calls", justify="right")
    table.add_column("onset")
    table.add_column("est. cost EUR", justify="right")
    table.add_row(
        "normal",
        f"{len(truth['normal_accounts'])} accounts",
        f"{truth['calls_by_scenario']['normal']:,}",
        "",
        "",
    )
    for sc in truth["scenarios"]:
        table.add_row(
            sc["scenario"],
            sc["account"],
            f"{sc['calls']:,}",
            sc["onset"] or "",
            sc["cost_estimate"],
        )
    out.print(table)
