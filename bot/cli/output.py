"""How the CLI shows things: rich text for people, ``--json`` for machines, errors on stderr."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from bot.core.errors import IrbotError

if TYPE_CHECKING:
    from rich.console import Console

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
input_option = click.option(
    "--input",
    "-i",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="An input; repeat for more. Lists are comma-separated.",
)


def console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True, emoji=False)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def fail(error: IrbotError, *, as_json: bool) -> NoReturn:
    """Show ``error`` (JSON on stdout for machines, text on stderr for people) and exit."""
    if as_json:
        emit_json(error.to_dict())
    else:
        err = console(stderr=True)
        err.print("error:", style="bold red", end=" ")
        err.print(error.show(), markup=False)
    sys.exit(error.exit_code)


def run_guarded(command: click.Command) -> None:
    """Run the click command; irbot errors that escape a command still show themselves."""
    try:
        command.main(standalone_mode=True)
    except IrbotError as exc:  # pragma: no cover - commands catch their own
        fail(exc, as_json="--json" in sys.argv)
