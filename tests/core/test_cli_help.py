"""Every command's and option's help shows as written: rich markup in `--help` would
silently swallow a ``[tenants]`` or ``[defaults]`` (write ``\\[`` for a literal bracket)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import typer.main
from rich.errors import MarkupError
from rich.text import Text

from tollguard.cli import _register, app


class _Command(Protocol):
    """What the walk reads of a command. ``typer.main.get_command`` returns typer's
    vendored click ``Command``, whose class is only reachable as ``typer._click``."""

    @property
    def help(self) -> str | None: ...

    @property
    def params(self) -> Sequence[object]: ...


def _commands(cmd: _Command, path: str) -> Iterator[tuple[str, _Command]]:
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, f"{path} {name}")


def test_help_texts_render_as_written() -> None:
    _register()
    seen = 0
    wrong = []
    for path, cmd in _commands(typer.main.get_command(app), "tollguard"):
        for text in [cmd.help or "", *(getattr(p, "help", None) or "" for p in cmd.params)]:
            seen += 1
            try:
                shown = Text.from_markup(text).plain
            except MarkupError as exc:
                wrong.append((path, text, str(exc)))
                continue
            if shown != text.replace("\\[", "["):
                wrong.append((path, text, shown))
    assert seen > 100  # every command was found
    assert wrong == []


def test_command_summaries_are_one_line() -> None:
    """The command lists show a docstring's first paragraph with its line breaks: a
    summary wrapped in the source would show cut mid-sentence."""
    _register()
    long = [
        (path, (cmd.help or "").strip().split("\n\n")[0])
        for path, cmd in _commands(typer.main.get_command(app), "tollguard")
        if "\n" in (cmd.help or "").strip().split("\n\n")[0]
    ]
    assert long == []
