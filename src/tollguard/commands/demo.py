"""`tollguard demo`: a simulated month with the brief's fraud cases, scanned and replayed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console

from tollguard.commands.scan import print_summary
from tollguard.policy import load_policy
from tollguard.scan import ScanOptions, run_scan

err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    out: Annotated[Path, typer.Option(help="Folder for the simulated data and results.")] = Path(
        "demo-out"
    ),
    seed: Annotated[int, typer.Option(help="Simulation seed.")] = 1,
    days: Annotated[int, typer.Option(min=7, max=62, help="Days of traffic.")] = 28,
    scale: Annotated[
        float, typer.Option(help="Size of the premium-rate pumping (1.0 = 470,000 calls).")
    ] = 0.02,
) -> None:
    """Simulate a month of traffic for 40 businesses plus the brief's fraud cases, then
    price it, detect the fraud and show what tollguard would have stopped."""
    from tollguard.sim import simulate

    err.print(f"[bold]1/2[/bold] simulating {days} days of traffic into {out}/ (seed {seed}) ...")
    sim = simulate(out, ["all"], days=days, seed=seed, scale=scale)
    err.print(f"      {sim.calls:,} calls written to {sim.files['cdr']}")
    err.print("[bold]2/2[/bold] scanning: pricing, detecting, replaying with enforcement ...")
    policy = load_policy(sim.files["policy"])
    options = ScanOptions(
        detect=True,
        enforce=True,
        out=out / "rated.parquet",
        quarantine_out=out / "rejected.jsonl",
    )
    result = run_scan([sim.files["cdr"]], policy, options)
    with (out / "alerts.jsonl").open("wb") as fh:
        for alert in result.alerts:
            fh.write(orjson.dumps(alert.to_dict()) + b"\n")
    (out / "scan.json").write_bytes(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2))
    console = Console() if Console().is_terminal else Console(width=140)
    print_summary(result, console)
    console.rule("What the brief's cases would have cost, and what tollguard would have stopped")
    for scenario in sim.truth["scenarios"]:
        account = scenario["account"]
        enf = result.enforcement.get(account)
        if enf is None or enf.blocked_at is None:
            console.print(f"{scenario['scenario']:12} {account}: not blocked")
            continue
        console.print(
            f"{scenario['scenario']:12} {account}: blocked at {enf.blocked_at}; "
            f"EUR {enf.cost_incurred:,} incurred instead of "
            f"EUR {enf.cost_incurred + enf.cost_prevented:,} "
            f"({enf.calls_refused:,} calls refused)"
        )
    console.print(
        f"\nFiles in {out}/: Master.csv (CDRs), rates.csv, policy.toml, truth.json, "
        "rated.parquet, alerts.jsonl, scan.json, rejected.jsonl"
    )
    console.print(
        f"Try: tollguard scan {out}/Master.csv --policy {out}/policy.toml --enforce --json"
    )
