"""YAML with positions: parse a document and remember where every key and value is.

Validation speaks in ``file:line:column``; pydantic and our own checks speak in
paths such as ``("steps", 2, "with", "name")``. A :class:`SourceMap` turns the
second into the first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from bot.core.diagnostics import Diagnostic, Location

Path = tuple[str | int, ...]

MAX_BYTES = 1_000_000
"""Playbooks are small; anything larger is a mistake or an attack."""

_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml when present: faster, and it caps nesting depth instead of recursing."""


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """Safe loading; a scalar that cannot be built (``2024-02-30``, ``!!int x``) becomes a
    located YAML error instead of a bare ValueError."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError, LookupError, AttributeError) as exc:
            # PyYAML's scalar constructors fail this way on malformed tagged scalars.
            problem = f"cannot read value {str(node.value)[:40]!r}: {str(exc)[:120]}"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from exc


MAX_DEPTH = 64
"""Playbooks are shallow; deeper documents are refused before anything recurses over them."""

MAX_NODES = 50_000
"""Upper bound on expanded YAML nodes, so alias bombs cannot explode validation."""


@dataclass
class SourceMap:
    """Where each path of a parsed document starts."""

    file: str
    values: dict[Path, Location] = field(default_factory=dict)
    keys: dict[Path, Location] = field(default_factory=dict)

    def locate(self, path: Path, *, key: bool = False) -> Location:
        """The location of ``path``, or of its nearest ancestor that exists.

        With ``key=True`` the key's own position is preferred (for "unknown key").
        """
        probe = tuple(path)
        while True:
            if key and probe in self.keys:
                return self.keys[probe]
            if probe in self.values:
                return self.values[probe]
            if not probe:
                return Location(self.file, 1, 1)
            probe = probe[:-1]


class YamlSourceError(Exception):
    """The text is not a single YAML mapping we can read; carries diagnostics."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__(diagnostics[0].message)
        self.diagnostics = diagnostics


def _loc(file: str, mark: Any) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


def _error(file: str, line: int, column: int, message: str) -> YamlSourceError:
    return YamlSourceError([Diagnostic(Location(file, line, column), "yaml", message)])


class _Walker:
    """Walks the composed node tree next to the constructed data, recording marks."""

    def __init__(self, loader: Any, smap: SourceMap) -> None:
        self.loader = loader
        self.smap = smap
        self.budget = MAX_NODES
        self.active: set[int] = set()
        self.problems: list[Diagnostic] = []

    def walk(self, node: yaml.Node, path: Path) -> None:
        self.budget -= 1
        if self.budget < 0:
            raise _error(self.smap.file, 1, 1, f"document expands to more than {MAX_NODES} nodes")
        if len(path) > MAX_DEPTH:
            mark = node.start_mark
            raise _error(
                self.smap.file,
                mark.line + 1,
                mark.column + 1,
                f"YAML is nested more than {MAX_DEPTH} levels deep",
            )
        self.smap.values.setdefault(path, _loc(self.smap.file, node.start_mark))
        if id(node) in self.active:
            raise _error(
                self.smap.file,
                node.start_mark.line + 1,
                node.start_mark.column + 1,
                "recursive YAML alias is not allowed",
            )
        if isinstance(node, yaml.MappingNode):
            self.active.add(id(node))
            seen: dict[Any, Location] = {}
            for key_node, value_node in node.value:
                key = self._key(key_node)
                key_loc = _loc(self.smap.file, key_node.start_mark)
                if key in seen and isinstance(key_node, yaml.ScalarNode):
                    self.problems.append(
                        Diagnostic(
                            key_loc,
                            "duplicate-key",
                            f"duplicate key {key!r} (first defined at line {seen[key].line})",
                        )
                    )
                seen.setdefault(key, key_loc)
                child: Path = (*path, key)
                self.smap.keys.setdefault(child, key_loc)
                self.walk(value_node, child)
            self.active.discard(id(node))
        elif isinstance(node, yaml.SequenceNode):
            self.active.add(id(node))
            for index, item in enumerate(node.value):
                self.walk(item, (*path, index))
            self.active.discard(id(node))

    def _key(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value = self.loader.construct_object(node)
            try:
                hash(value)
            except TypeError:  # pragma: no cover - PyYAML refuses these first
                return repr(value)
            return value
        return f"<{type(node).__name__} key at line {node.start_mark.line + 1}>"


def load(text: str, file: str) -> tuple[Any, SourceMap, list[Diagnostic]]:
    """Parse ``text`` into plain data and a source map.

    Returns soft problems (duplicate keys) as diagnostics; raises
    :class:`YamlSourceError` when the text cannot be read at all.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise _error(file, 1, 1, f"file is larger than {MAX_BYTES} bytes")
    smap = SourceMap(file)
    try:
        loader = _Loader(text)
    except UnicodeError as exc:
        raise _error(
            file, 1, 1, "the file is not valid UTF-8 text (it contains a lone surrogate)"
        ) from exc
    try:
        node = loader.get_single_node()
        if node is None:
            raise _error(file, 1, 1, "the file is empty; a playbook is a YAML mapping")
        data = loader.construct_document(node)
        walker = _Walker(loader, smap)
        walker.walk(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise _error(file, line, column, f"YAML syntax: {problem}") from exc
    except yaml.YAMLError as exc:
        raise _error(file, 1, 1, f"YAML: {exc}") from exc
    except RecursionError as exc:
        raise _error(file, 1, 1, "YAML is nested too deeply") from exc
    except UnicodeError as exc:
        raise _error(
            file, 1, 1, "the file is not valid UTF-8 text (it contains a lone surrogate)"
        ) from exc
    finally:
        loader.dispose()
    return data, smap, walker.problems
