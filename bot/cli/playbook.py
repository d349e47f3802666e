"""``irbot playbook``: validate, plan, list, schema."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from bot.cli.output import console, emit_json, fail, input_option, json_option
from bot.core.errors import IrbotError, UsageError

DEFAULT_PLAYBOOKS = "playbooks"

playbooks_option = click.option(
    "--playbooks",
    "playbooks_dir",
    envvar="IRBOT_PLAYBOOKS",
    default=DEFAULT_PLAYBOOKS,
    show_default=True,
    show_envvar=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory holding the playbooks.",
)


@click.group()
def playbook() -> None:
    """Validate, preview and describe playbooks."""


@playbook.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@json_option
def validate(paths: tuple[Path, ...], as_json: bool) -> None:
    """Check playbooks without running anything.

    PATHS are files or directories (default: $IRBOT_PLAYBOOKS or ./playbooks).
    Every problem is reported at once as FILE:LINE:COLUMN. Exit 0 if all are
    valid, 1 if any is invalid, 2 on a usage error.
    """
    from bot.core import library

    targets = list(paths) or [Path(os.environ.get("IRBOT_PLAYBOOKS", DEFAULT_PLAYBOOKS))]
    try:
        lib = library.read(targets)
    except IrbotError as exc:
        fail(exc, as_json=as_json)
    if not lib.results:
        where = ", ".join(map(str, targets))
        fail(UsageError(f"no playbooks (*.yaml, *.yml) found in {where}"), as_json=as_json)
    if as_json:
        emit_json(
            {
                "ok": lib.ok,
                "files": [
                    {
                        "path": r.file,
                        "playbook": r.playbook.name if r.playbook else None,
                        "ok": r.ok,
                        "diagnostics": [d.to_dict() for d in r.diagnostics],
                    }
                    for r in lib.results
                ],
            }
        )
    else:
        out = console()
        for result in lib.results:
            for diag in result.diagnostics:
                style = "red" if diag.severity == "error" else "yellow"
                out.print(diag.format(), style=style, markup=False)
            mark = "[green]ok[/]" if result.ok else "[red]invalid[/]"
            out.print(f"{mark}  {result.file}", markup=True)
        errors = sum(1 for d in lib.diagnostics if d.severity == "error")
        bad = sum(1 for r in lib.results if not r.ok)
        if lib.ok:
            out.print(f"[bold green]{len(lib.results)} playbook(s) valid[/]", markup=True)
        else:
            out.print(
                f"[bold red]{bad} of {len(lib.results)} playbook(s) invalid, {errors} error(s)[/]",
                markup=True,
            )
    raise SystemExit(0 if lib.ok else 1)


@playbook.command(name="list")
@playbooks_option
@json_option
def list_(playbooks_dir: Path, as_json: bool) -> None:
    """List the playbooks with their inputs."""
    from bot.core import library

    try:
        lib = library.read([playbooks_dir])
    except IrbotError as exc:
        fail(exc, as_json=as_json)
    rows: list[dict[str, Any]] = []
    for result in lib.results:
        book = result.playbook
        rows.append(
            {
                "name": book.name if book else None,
                "version": book.version if book else None,
                "file": result.file,
                "valid": result.ok,
                "description": book.description if book else "",
                "inputs": {
                    name: {
                        "type": spec.type.value,
                        "required": spec.is_required,
                        "default": spec.default,
                    }
                    for name, spec in (book.inputs.items() if book else ())
                },
            }
        )
    if as_json:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table("playbook", "v", "inputs", "description", title=f"playbooks in {playbooks_dir}")
    for row in rows:
        inputs = ", ".join(f"{n}{'' if i['required'] else '?'}" for n, i in row["inputs"].items())
        name = row["name"] or f"[red]{row['file']} (invalid)[/]"
        table.add_row(name, str(row["version"] or ""), inputs, row["description"].strip())
    console().print(table)


@playbook.command()
@click.argument("name")
@input_option
@playbooks_option
@json_option
def plan(name: str, pairs: tuple[str, ...], playbooks_dir: Path, as_json: bool) -> None:
    """Show what running playbook NAME would do.

    Each step is shown with its arguments resolved from the inputs.

    Destructive steps are marked with the gate that guards them; each gate shows
    the plan digest its approvers will sign.
    """
    from bot.core import inputs, library
    from bot.core import plan as planning

    try:
        lib = library.read([playbooks_dir])
        loaded = lib.get(name)
        values = inputs.parse_pairs(pairs, loaded.playbook)
    except IrbotError as exc:
        fail(exc, as_json=as_json)
    result = planning.build(loaded, values)
    if as_json:
        emit_json(result.to_dict())
        return
    _print_plan(result)


def _print_plan(result: Any) -> None:
    from rich.text import Text

    out = console()
    out.print(
        Text.assemble(
            (f"{result.playbook}", "bold"), f" v{result.version}  sha256 {result.sha256[:12]}"
        )
    )
    out.print("inputs: " + "  ".join(f"{k}={_show(v)}" for k, v in result.inputs.items()))
    gates = {g.id: g for g in result.gates}
    for number, step in enumerate(result.steps, 1):
        head = Text(f"{number:>2}. ")
        head.append(step.id, "bold")
        head.append(
            f"  {step.title}  [{step.action or step.kind}]", "dim" if step.title == step.id else ""
        )
        if step.destructive:
            head.append("  DESTRUCTIVE", "bold red")
            head.append(
                f", guarded by {step.guarded_by}" if step.guarded_by else ", UNGUARDED", "red"
            )
        out.print(head)
        if step.when is False:
            out.print("      skipped: its `when` is false for these inputs", style="yellow")
        elif step.when not in (None, True):
            out.print(f"      when: {step.when}")
        if isinstance(step.items, list):
            out.print(f"      for each of: {_show(step.items)}")
            for item, args in zip(step.items, step.arguments, strict=True):
                out.print(f"      [{item}] {_args(args)}", markup=False)
        elif step.arguments not in (None, {}):
            if step.items is not None:
                out.print(f"      for each of: {step.items}")
            out.print(f"      {_args(step.arguments)}", markup=False)
        if step.detail:
            out.print(f"      {step.detail}", style="dim")
        if step.id in gates:
            gate = gates[step.id]
            covers = ", ".join(gate.covers) or "nothing"
            out.print(f"      covers: {covers}; plan digest {gate.digest[:12]}", style="cyan")


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "(none)"
    return str(value)


def _args(value: Any) -> str:
    if isinstance(value, dict):
        return "  ".join(f"{k}: {_show(v)}" for k, v in value.items())
    return str(value)


@playbook.command()
def schema() -> None:
    """Print the JSON Schema of playbooks (for editor completion)."""
    from bot.core.schema import playbook_schema

    emit_json(playbook_schema())
