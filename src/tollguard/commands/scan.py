"""`tollguard scan FILE...`: price every call in CDR files and say what deviates."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tollguard.cdr.mapping import ColumnMapping
from tollguard.clikit import fail, load_policy_with_overrides
from tollguard.detect.alert import alerts_jsonl
from tollguard.scan import UNRATED_KINDS, Enforcement, ScanOptions, ScanResult, run_scan

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("scan")(scan)


def scan(
    files: Annotated[
        list[Path], typer.Argument(help="CDR files (plain or .gz).", show_default=False)
    ],
    fmt: Annotated[str, typer.Option("--format", "-f", help="Input layout, or 'auto'.")] = "auto",
    rates: Annotated[
        str | None, typer.Option(help="Rate deck CSV (overrides the policy's).")
    ] = None,
    policy: Annotated[
        Path | None, typer.Option(help="Policy TOML (context, decks, limits).")
    ] = None,
    country: Annotated[str | None, typer.Option(help="Dialing country, e.g. NL.")] = None,
    timezone: Annotated[
        str | None, typer.Option(help="Time zone of local CDR times, e.g. Europe/Amsterdam.")
    ] = None,
    utc: Annotated[bool, typer.Option("--utc", help="CDR times are UTC, not local.")] = False,
    mapping: Annotated[
        list[str] | None,
        typer.Option("--map", help="Column mapping FIELD=COLUMN for CSVs with a header (repeat)."),
    ] = None,
    time_format: Annotated[
        str | None, typer.Option(help="strftime format of mapped times, e.g. '%d/%m/%Y %H:%M'.")
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="Source name for record ids (default: the format).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write rated records (.parquet or .csv).")
    ] = None,
    quarantine_out: Annotated[
        Path | None, typer.Option(help="Write every rejected line (JSON Lines).")
    ] = None,
    detect: Annotated[bool, typer.Option(help="Run the fraud detectors.")] = True,
    history: Annotated[
        list[Path] | None,
        typer.Option(
            help="Earlier CDR files detection learns from first; not counted, their alerts "
            "not reported (repeat)."
        ),
    ] = None,
    alerts_out: Annotated[Path | None, typer.Option(help="Write alerts (JSON Lines).")] = None,
    enforce: Annotated[
        bool, typer.Option(help="Replay as if tollguard had refused calls after a critical alert.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object to stdout.")
    ] = False,
) -> None:
    """Read CDR files, price every call exactly, and summarize per account."""
    missing = [str(f) for f in [*files, *(history or [])] if not f.is_file()]
    if missing:
        fail(f"no such file: {', '.join(missing)}", "check the path; globs like cdr/*.csv work")
    if history and not detect:
        fail("--history is learned by detection", "drop --no-detect, or drop --history")
    pol = load_policy_with_overrides(policy, country=country, timezone=timezone)
    if (
        rates is None
        and pol.defaults.rates is None
        and not any(a.rates for a in pol.accounts.values())
    ):
        console.print(
            "[yellow]No rate deck given (--rates or rates= in the policy): calls are counted "
            "but not priced.[/yellow]"
        )
    column_mapping = None
    if mapping or time_format:
        try:
            column_mapping = ColumnMapping.from_strings(mapping or [], time_format=time_format)
        except ValueError as exc:
            fail(str(exc), "e.g. --map start=calldate --map callee=dst")
    options = ScanOptions(
        mapping=column_mapping,
        source=source,
        fmt=fmt,
        rates=rates,
        out=out,
        quarantine_out=quarantine_out,
        detect=detect or alerts_out is not None or enforce,
        enforce=enforce,
        assume_utc=utc,
        history=history or (),
    )
    try:
        result = _run_with_progress(files, pol, options, quiet=as_json)
    except (ValueError, OSError) as exc:
        fail(str(exc), "see `tollguard scan --help` and docs/formats.md")
    if alerts_out is not None:
        alerts_out.write_bytes(alerts_jsonl(result.alerts))
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        screen = Console()
        print_summary(result, screen if screen.is_terminal else Console(width=140))


def _run_with_progress(
    files: list[Path], pol: Any, options: ScanOptions, *, quiet: bool
) -> ScanResult:
    every = [*options.history, *files]  # the history is read first
    total = sum(f.stat().st_size for f in every)
    big = total > 5_000_000 and not quiet and console.is_terminal
    if not big:
        return run_scan(files, pol, options)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[records]:,} records"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("scanning", total=len(every), records=0)
        done: dict[str, int] = {"records": 0}
        seen: set[str] = set()

        def hook(path: str, n: int) -> None:
            done["records"] += n
            if path not in seen:
                seen.add(path)
                bar.update(task, completed=len(seen) - 1, description=Path(path).name)
            bar.update(task, records=done["records"])

        result = run_scan(files, pol, options, hook)
        bar.update(task, completed=len(every))
    return result


def print_summary(result: ScanResult, out: Console) -> None:
    cur = result.currency
    for f in result.files:
        out.print(
            f"[dim]{f.path}: read as [bold]{f.format}[/bold]; {f.records:,} records, "
            f"{f.rejected:,} rejected, {f.duplicates:,} duplicates[/dim]"
        )
    table = Table(title=f"Calls per account ({cur})", title_justify="left")
    for col, just in [
        ("account", "left"),
        ("calls", "right"),
        ("answered", "right"),
        ("minutes", "right"),
        ("cost", "right"),
        ("top destinations by cost", "left"),
        ("countries", "left"),
    ]:
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for name, acc in sorted(result.accounts.items(), key=lambda kv: -kv[1].cost_e4):
        tops = "; ".join(f"{d['destination'] or '?'} {d['cost']}" for d in acc.top_destinations(2))
        countries = ", ".join(list(acc.countries())[:5])
        table.add_row(
            name or "(none)",
            f"{acc.calls:,}",
            f"{acc.answered:,}",
            f"{acc.billable_seconds / 60:,.1f}",
            f"{acc.cost:,}",
            tops,
            countries,
        )
    out.print(table)
    priced = result.records - result.unrated
    out.print(
        f"[bold]{result.records:,}[/bold] calls; [bold]{priced:,}[/bold] priced at "
        f"[bold]{cur} {result.cost:,}[/bold]; {result.unrated:,} unrated; "
        f"{result.rejected:,} lines rejected; {result.duplicates:,} duplicates ignored."
    )
    if result.quarantined:
        out.print("[bold red]Rejected lines[/bold red] (file:line: reason)")
        for q in result.quarantined[:20]:
            out.print(f"  {q.source_file}:{q.line}: {q.reason}")
        if result.rejected > 20:
            out.print(f"  ... {result.rejected - 20:,} more (use --quarantine-out FILE for all)")
    if result.unrated_calls:
        out.print("[bold yellow]Unrated calls[/bold yellow] (not priced, not counted as zero)")
        for kind, count in sorted(result.unrated_reasons.items(), key=lambda kv: -kv[1]):
            out.print(f"  {count:,} calls: {UNRATED_KINDS[kind]}")
        for u in result.unrated_calls[:5]:
            out.print(f"    e.g. {u['source_file']}:{u['source_line']}: {u['reason']}")
        out.print("  (all of them: --json, or --out rated.csv where cost is empty)")
    if result.history is not None:
        _print_history(result, out)
    if result.detection:
        _print_alerts(result, out)


def _print_history(result: ScanResult, out: Console) -> None:
    h = result.history
    assert h is not None
    span = f"{h.first:%Y-%m-%d %H:%M} to {h.last:%Y-%m-%d %H:%M} UTC" if h.first and h.last else ""
    out.print(
        f"Detection first learned from [bold]{h.records:,}[/bold] records of history "
        f"({len(h.files)} file(s), {span}); their calls are not in the totals above and "
        "their alerts are not reported."
    )
    if h.earlier_scanned:
        out.print(
            f"[yellow]caution:[/yellow] {h.earlier_scanned:,} scanned records ended before "
            "the history's last one: give history that comes before the scanned files"
        )


ALERTS_SHOWN = 50  # the rest are in --json and --alerts-out


def _print_alerts(result: ScanResult, out: Console) -> None:
    """One block per alert, most severe and earliest first: what, who, when, how much on
    one line; the explanation wrapped below it (a table column would be too narrow)."""
    if not result.alerts:
        out.print("[green]No alerts.[/green]")
        return
    order = {"critical": 0, "warning": 1}
    alerts = sorted(result.alerts, key=lambda a: (order[a.severity], a.detected_at))
    critical = sum(1 for a in alerts if a.severity == "critical")
    out.print(
        f"[bold]Alerts ({len(alerts)}):[/bold] {critical} critical, "
        f"{len(alerts) - critical} warning"
    )
    for a in alerts[:ALERTS_SHOWN]:
        style = "bold red" if a.severity == "critical" else "yellow"
        started = a.started_at.isoformat(timespec="minutes")
        detected = a.detected_at.isoformat(timespec="minutes")
        out.print(
            f"[{style}]{a.severity.upper():<8}[/{style}] {a.detector} "
            f"[bold]{escape(a.account or '(none)')}[/bold] -> {escape(a.subject or '(none)')}: "
            f"{a.records:,} call{'' if a.records == 1 else 's'}, {a.currency} {a.cost:,}; "
            f"started {started}, "
            f"detected {detected}"
        )
        out.print(Padding(escape(str(a.explanation.get("why", ""))), (0, 0, 0, 9)))
    if len(alerts) > ALERTS_SHOWN:
        out.print(
            f"... and {len(alerts) - ALERTS_SHOWN} more (all of them: --json or --alerts-out)"
        )
    for account, enf in sorted(result.enforcement.items()):
        if enf.first_block:
            out.print(
                f"[bold]{account or '(none)'}[/bold]: {describe_block(enf)}; "
                f"{result.currency} {enf.cost_incurred:,} incurred, "
                f"{result.currency} {enf.cost_prevented:,} prevented "
                f"({enf.calls_refused:,} calls refused)."
            )


def describe_block(enf: Enforcement) -> str:
    """ "account blocked at T" and/or "blocked +31909... at T, country:TL at T"."""
    parts = [f"account blocked at {enf.blocked_at}"] if enf.blocked_at else []
    subjects = sorted(enf.blocked_subjects.items(), key=lambda kv: kv[1])
    if subjects:
        shown = ", ".join(f"{s} at {t}" for s, t in subjects[:3])
        more = f" and {len(subjects) - 3} more" if len(subjects) > 3 else ""
        parts.append(f"blocked {shown}{more}")
    return "; ".join(parts)
