"""`python -m tollguard.ingest ...`: the `tollguard ingest` command on its own (cron, tests)."""

from __future__ import annotations

import typer

from tollguard.commands.ingest import ingest


def main() -> None:
    typer.run(ingest)


if __name__ == "__main__":
    main()
