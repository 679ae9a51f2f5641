"""`tollguard tariffs check A.csv B.csv`: where two tariff sources disagree, and by how much."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tollguard.cases.clisupport import JsonOpt, emit_json
from tollguard.clikit import fail
from tollguard.tariffs import TariffError, TariffTable, compare

app = typer.Typer(help="Tariff integrity checks.", no_args_is_help=True)
out = Console()


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="tariffs")


@app.command("check")
def check(
    source_a: Annotated[Path, typer.Argument(help="First tariff CSV (e.g. the registry).")],
    source_b: Annotated[Path, typer.Argument(help="Second tariff CSV (e.g. carrier billing).")],
    country: Annotated[
        str | None, typer.Option(help="Read national numbers as this country's (e.g. NL).")
    ] = None,
    lengths: Annotated[
        str, typer.Option(help="Call lengths in seconds to compare costs at.")
    ] = "12,180",
    as_json: JsonOpt = False,
) -> None:
    """List every number on which tariff sources A and B disagree (exit 1 if any).

    With the factor between the costs of a call under each at typical lengths. Exit 1
    when there is any discrepancy (like diff)."""
    for p in (source_a, source_b):
        if not p.is_file():
            fail(f"no such file: {p}")
    try:
        secs = [int(x) for x in lengths.split(",") if x.strip()]
        a = TariffTable.load(source_a, country=country)
        b = TariffTable.load(source_b, country=country)
        found = compare(a, b, lengths=secs)
    except (TariffError, ValueError) as exc:
        fail(str(exc), "see docs/cases.md#tariff-checks for the CSV layout")
    if as_json:
        emit_json({"a": str(source_a), "b": str(source_b), "lengths": secs,
                   "numbers_a": len(a.tariffs), "numbers_b": len(b.tariffs),
                   "discrepancies": [d.to_dict() for d in found]})  # fmt: skip
    else:
        out.print(f"A = {source_a} ({len(a.tariffs)} numbers), B = {source_b} "
                  f"({len(b.tariffs)} numbers); {len(found)} discrepancies")  # fmt: skip
        if found:
            table = Table("number", "kind", "A", "B",
                          *[f"{s} s: A / B (factor)" for s in secs], "max factor")  # fmt: skip
            for d in found:
                cells = [
                    f"{c.cost_a} / {c.cost_b} ({c.factor if c.factor is not None else '-'})"
                    for c in d.comparisons
                ] or ["-"] * len(secs)
                table.add_row(d.number, d.kind,
                              d.tariff_a.describe() if d.tariff_a else "-",
                              d.tariff_b.describe() if d.tariff_b else "-", *cells,
                              str(d.max_factor or "-"))  # fmt: skip
            out.print(table)
    if found:
        raise typer.Exit(1)
