"""A set of playbooks checked together: names, sub-playbook calls and cycles.

Reading files is the only I/O here (no SDKs), so the CLI can validate a directory
without credentials.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath

from bot.core.catalog import ActionSpec, default_catalog
from bot.core.diagnostics import Diagnostic, Location
from bot.core.errors import NotFoundError, PlaybookInvalid, UsageError
from bot.core.playbook import PlaybookStep
from bot.core.validate import LoadedPlaybook, Result, _suggest, check, sorted_diagnostics

SUFFIXES = (".yaml", ".yml")


@dataclass
class Library:
    """Every playbook found, and every problem found, across a set of files."""

    results: list[Result] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return sorted_diagnostics(d for r in self.results for d in r.diagnostics)

    def names(self) -> list[str]:
        return sorted({r.playbook.name for r in self.results if r.playbook is not None})

    def get(self, name: str) -> LoadedPlaybook:
        """The valid playbook called ``name``; NotFoundError or PlaybookInvalid otherwise."""
        for result in self.results:
            if result.playbook is not None and result.playbook.name == name:
                return result.loaded()
        known = ", ".join(self.names()) or "none"
        raise NotFoundError(
            f"no playbook named {name!r}{_suggest(name, self.names())} (known: {known})"
        )

    def loaded(self) -> dict[str, LoadedPlaybook]:
        """Every playbook, all valid, or PlaybookInvalid listing every problem."""
        if not self.ok:
            raise PlaybookInvalid(self.diagnostics)
        return {r.loaded().name: r.loaded() for r in self.results}


def discover(paths: Iterable[str | FsPath]) -> list[FsPath]:
    """Expand directories to their ``*.yaml``/``*.yml`` files; raise UsageError if missing."""
    found: list[FsPath] = []
    for raw in paths:
        path = FsPath(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise UsageError(f"no such file or directory: {path}")
    return found


def read(paths: Iterable[str | FsPath], catalog: Mapping[str, ActionSpec] | None = None) -> Library:
    """Check each file, then the cross-file rules."""
    catalog = default_catalog() if catalog is None else catalog
    library = Library()
    for path in discover(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            diag = Diagnostic(Location(str(path), 1, 1), "read", f"cannot read file: {exc}")
            library.results.append(Result(str(path), "", None, None, [diag]))
            continue
        library.results.append(check(text, str(path), catalog))
    link(library)
    return library


def link(library: Library) -> None:
    """Add cross-file diagnostics: duplicate names, unknown sub-playbooks, inputs, cycles."""
    by_name: dict[str, Result] = {}
    for result in library.results:
        if result.playbook is None:
            continue
        name = result.playbook.name
        if name in by_name:
            first = by_name[name].file
            _add(
                result,
                ("name",),
                "duplicate-playbook",
                f"playbook name {name!r} is also used by {first}",
            )
        else:
            by_name[name] = result
    calls: dict[str, list[str]] = {}
    for result in library.results:
        if result.playbook is None:
            continue
        for index, step in enumerate(result.playbook.steps):
            if not isinstance(step, PlaybookStep):
                continue
            calls.setdefault(result.playbook.name, []).append(step.playbook)
            _check_call(result, index, step, by_name)
    for cycle in _cycles(calls):
        head = by_name[cycle[0]]
        assert head.playbook is not None
        for index, step in enumerate(head.playbook.steps):
            if isinstance(step, PlaybookStep) and step.playbook == cycle[1]:
                _add(
                    head,
                    ("steps", index, "playbook"),
                    "playbook-cycle",
                    "sub-playbook cycle: " + " -> ".join(cycle),
                )
                break
    for result in library.results:
        result.diagnostics = sorted_diagnostics(result.diagnostics)


def _add(
    result: Result, path: tuple[str | int, ...], code: str, message: str, *, key: bool = False
) -> None:
    assert result.smap is not None
    result.diagnostics.append(Diagnostic(result.smap.locate(path, key=key), code, message))


def _check_call(
    result: Result, index: int, step: PlaybookStep, by_name: Mapping[str, Result]
) -> None:
    child = by_name.get(step.playbook)
    path: tuple[str | int, ...] = ("steps", index)
    if child is None or child.playbook is None:
        _add(
            result,
            (*path, "playbook"),
            "unknown-playbook",
            f"unknown playbook {step.playbook!r}{_suggest(step.playbook, by_name)}",
        )
        return
    declared = child.playbook.inputs
    for key in step.with_:
        if key not in declared:
            _add(
                result,
                (*path, "with", key),
                "playbook-input",
                f"playbook {step.playbook!r} has no input {key!r}{_suggest(key, declared)}",
                key=True,
            )
    for name, spec in declared.items():
        if spec.is_required and name not in step.with_:
            _add(
                result,
                (*path, "with"),
                "playbook-input",
                f"playbook {step.playbook!r} needs input {name!r}",
                key=True,
            )


def _cycles(calls: Mapping[str, list[str]]) -> list[list[str]]:
    """Each elementary cycle once, rotated to start at its smallest name."""
    found: dict[tuple[str, ...], list[str]] = {}

    def visit(node: str, trail: list[str]) -> None:
        for child in calls.get(node, []):
            if child in trail:
                cycle = trail[trail.index(child) :]
                start = cycle.index(min(cycle))
                rotated = cycle[start:] + cycle[:start]
                found.setdefault(tuple(rotated), [*rotated, rotated[0]])
            elif len(trail) < 64:
                visit(child, [*trail, child])

    for root in sorted(calls):
        visit(root, [root])
    return list(found.values())
