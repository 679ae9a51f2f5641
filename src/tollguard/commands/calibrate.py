"""`tollguard calibrate HISTORY...`: detection priors from the operator's own history."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tollguard.clikit import fail, load_policy_with_overrides

if TYPE_CHECKING:
    from tollguard.detect.calibrate import Calibration
    from tollguard.scan import ScanResult


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_cmd)


def calibrate_cmd(
    files: Annotated[
        list[Path],
        typer.Argument(help="CDR files of 2-4 weeks of normal history.", show_default=False),
    ],
    policy: Annotated[
        Path | None, typer.Option(help="Policy TOML (accounts, time zones, decks, detectors).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Priors file to write (JSON).")] = Path("priors.json"),
    country: Annotated[str | None, typer.Option(help="Dialing country, e.g. NL.")] = None,
    timezone: Annotated[
        str | None, typer.Option(help="Time zone of local CDR times, e.g. Europe/Amsterdam.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Input layout, or 'auto'.")] = "auto",
    rates: Annotated[
        str | None, typer.Option(help="Rate deck CSV (overrides the policy's).")
    ] = None,
    utc: Annotated[bool, typer.Option("--utc", help="CDR times are UTC, not local.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    force: Annotated[
        bool, typer.Option(help="Write the priors even from less than a week or one account.")
    ] = False,
) -> None:
    """Learn detection priors from history and report what detection would have raised.

    New accounts start from these priors instead of the built-in ones: the hours your
    customers call, what a call costs, the countries they call. Records in critical
    findings (a hack in the history) are not learned. Use the file with
    `priors = "priors.json"` under \\[defaults] in the policy."""
    from tollguard.detect.calibrate import calibrate
    from tollguard.detect.priors_file import write_priors
    from tollguard.scan import ScanOptions, ScanResult, scan_records

    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        fail(f"no such file: {', '.join(missing)}", "check the path; globs like cdr/*.csv work")
    pol = load_policy_with_overrides(policy, country=country, timezone=timezone)
    err = Console(stderr=True)
    result = ScanResult(currency=pol.defaults.currency or "EUR", detection=True)
    options = ScanOptions(fmt=fmt, rates=rates, assume_utc=utc)
    try:
        with Progress(
            TextColumn("[bold]calibrating[/bold] {task.fields[file]}"),
            TextColumn("{task.completed:,} records read"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=as_json or not err.is_terminal,
        ) as bar:
            task = bar.add_task("calibrate", file="", total=None)

            def hook(path: str, n: int) -> None:
                bar.update(task, advance=n, file=Path(path).name)

            cal = calibrate(scan_records(files, pol, result, hook, options), pol)
    except (ValueError, OSError) as exc:
        fail(str(exc), "see `tollguard calibrate --help` and docs/detection.md")
    report = cal.to_dict()
    report["files"] = [str(f) for f in files]
    report["rejected_lines"] = result.rejected
    report["duplicates"] = result.duplicates
    report["out"] = str(out)
    if cal.learned == 0:
        fail(
            "no record to learn from: nothing written",
            "give CDR files with calls (see the rejected lines with `tollguard scan`)",
        )
    too_little = cal.too_little()
    if too_little and not force:
        fail(
            f"{too_little}: priors from so little would make it everyone's normal; nothing written",
            "give 2-4 weeks of history of several accounts, or --force to write it anyway",
        )
    try:
        write_priors(out, cal.priors, {k: v for k, v in report.items() if k != "learned"})
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}", "give a writable --out path")
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    _print_report(cal, result, pol_path=policy, out=out)


def _print_report(cal: Calibration, scanned: ScanResult, pol_path: Path | None, out: Path) -> None:
    screen = Console()
    first = cal.first.isoformat() if cal.first else "?"
    last = cal.last.isoformat() if cal.last else "?"
    screen.print(
        f"Learned from [bold]{cal.learned:,}[/bold] of {cal.records:,} records, "
        f"{len(cal.accounts)} accounts, {first} to {last} ({cal.days:.2f} days); "
        f"{sum(cal.excluded.values()):,} records in critical findings left out; "
        f"{scanned.rejected:,} lines rejected, {scanned.duplicates:,} duplicates ignored."
    )
    table = Table(title="What detection would have raised on this history", title_justify="left")
    for col in ("detector", "warnings", "critical"):
        table.add_column(col, justify="left" if col == "detector" else "right")
    for name, counts in sorted(cal.by_detector.items()):
        table.add_row(name, f"{counts['warning']:,}", f"{counts['critical']:,}")
    if not cal.by_detector:
        table.add_row("(no alert)", "0", "0")
    screen.print(table)
    by_account = cal.accounts_by_alerts()
    if by_account:
        screen.print(
            "Accounts with the most alerts: "
            + "; ".join(
                f"{a or '(none)'} {c['critical']} critical, {c['warning']} warning(s)"
                for a, c in by_account[:10]
            )
        )
    learned = cal.summary()
    countries = ", ".join(f"{c} {v * 100:.1f}%" for c, v in learned["countries"].items())
    screen.print(
        f"Learned: {learned['calls_per_hour_median_account']} calls per hour (median account), "
        f"{learned['cost_per_call_mean']} per call on average, busiest "
        f"{', '.join(cal.busiest_hours())}, "
        f"{learned['night_share'] * 100:.1f}% of calls at night (00-07), "
        f"{learned['weekend_share'] * 100:.1f}% at weekends; countries "
        + (countries or "(none called by 2 or more accounts)")
    )
    for caution in cal.cautions:
        screen.print(f"[yellow]caution:[/yellow] {caution}")
    where = "the policy" if pol_path is None else str(pol_path)
    rel = out
    if pol_path is not None:
        rel = Path(os.path.relpath(out.resolve(), pol_path.resolve().parent))
    screen.print(
        f"Wrote [bold]{out}[/bold]. To use it, put under \\[defaults] in {where}:\n"
        f'  priors = "{rel}"'
    )
