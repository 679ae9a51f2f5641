"""The `tollguard` command. Each capability registers its commands from its own module."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="tollguard",
    help="Voice-fraud management: price CDRs exactly, enforce limits, detect toll fraud.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Imported here so `tollguard --help` stays fast and each module owns its commands.
    from tollguard.commands import register_all

    register_all(app)


def main() -> None:
    _register()
    app()


if __name__ == "__main__":
    main()
