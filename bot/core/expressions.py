"""Sandboxed Jinja expressions over ``inputs``, ``steps``, ``run``, ``incident``, ``item``.

Two forms are accepted wherever a playbook value may vary:

* a template string, ``"restart {{ item }} in {{ inputs.namespace }}"`` -> a string;
* a single expression, ``"{{ inputs.deployments }}"`` -> its native value (a list here).

``when`` and ``for_each`` also accept a bare expression (``inputs.deployments | length > 0``).

Templates run in :class:`jinja2.sandbox.ImmutableSandboxedEnvironment` with
:class:`jinja2.StrictUndefined`. On top of the sandbox, :func:`analyse` rejects any
access to a name starting with ``_`` before anything is evaluated, so escape attempts
such as ``{{ ''.__class__.__mro__ }}`` are validation errors, never executed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bot.core.errors import ExpressionError

ROOTS = ("inputs", "steps", "run", "incident", "item")
"""The names an expression may start from."""

RefPath = tuple[str | int, ...]

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


MAX_SIZE = 100_000
"""Largest string or sequence an operator may build; ``'a' * 10**9`` is refused."""


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, plus limits on operators that can build huge values.

    Constant folding is switched off (``optimized=False``) so nothing in a template is
    evaluated while it is merely being validated.
    """

    intercepted_binops = frozenset({"*", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Data first: `inputs.items` is the input called "items", not dict.items.
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > 64:
                raise SecurityError("exponent larger than 64 is not allowed")
            return left**right
        for seq, count in ((left, right), (right, left)):
            sized = isinstance(seq, str | list | tuple) and isinstance(count, int)
            if sized and len(seq) * count > MAX_SIZE:
                raise SecurityError(f"result longer than {MAX_SIZE} is not allowed")
        return left * right


@cache
def environment() -> ImmutableSandboxedEnvironment:
    """The one sandboxed environment used everywhere (validation, plan, engine)."""
    env = _Sandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        optimized=False,
    )
    env.globals.clear()  # no range(), lipsum(), dict(), cycler() ...: data in, text out
    return env


def is_template(value: object) -> bool:
    """True if ``value`` is a string that Jinja would treat as a template."""
    return isinstance(value, str) and ("{{" in value or "{%" in value or "{#" in value)


@dataclass(frozen=True)
class Analysis:
    """What a template refers to, known without evaluating it."""

    source: str
    references: tuple[RefPath, ...]
    single_expression: str | None
    """The inner text when the whole value is one ``{{ expr }}``; else None."""

    @property
    def roots(self) -> set[str]:
        return {str(ref[0]) for ref in self.references}


def _parse(source: str) -> nodes.Template:
    env = environment()
    try:
        tree = env.parse(source)
        env.compile(tree)  # catches unknown filters and tests, too
    except jinja2.TemplateSyntaxError as exc:
        raise ExpressionError(f"template syntax: {exc.message}", line=exc.lineno) from exc
    except jinja2.TemplateError as exc:  # TemplateAssertionError: unknown filter/test
        raise ExpressionError(f"template: {exc.message}") from exc
    return tree


def _chain(node: nodes.Node) -> RefPath | None:
    """``steps.rotate.outputs['arn']`` -> ("steps", "rotate", "outputs", "arn")."""
    parts: list[str | int] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            if not isinstance(node.arg.value, str | int):
                return None
            parts.append(node.arg.value)
            node = node.node
        elif isinstance(node, nodes.Name):
            parts.append(node.name)
            return tuple(reversed(parts))
        else:
            return None


def _forbidden(tree: nodes.Template) -> Iterator[str]:
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name: object = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        if isinstance(name, str) and name.startswith("_"):
            yield name


def _references(tree: nodes.Template, local: set[str]) -> list[RefPath]:
    found: list[RefPath] = []

    def visit(node: nodes.Node) -> None:
        if isinstance(node, nodes.Getattr | nodes.Getitem | nodes.Name):
            chain = _chain(node)
            if chain is not None:
                if isinstance(node, nodes.Name) and node.ctx != "load":
                    return
                if chain[0] not in local:
                    found.append(chain)
                return
            if isinstance(node, nodes.Getitem):  # dynamic subscript: refs on both sides
                visit(node.node)
                visit(node.arg)
                return
        for child in node.iter_child_nodes():
            visit(child)

    visit(tree)
    return found


def _locals(tree: nodes.Template) -> set[str]:
    """Names a template binds itself ({% set %}, {% for %}, macro args)."""
    bound: set[str] = set()
    for node in tree.find_all(nodes.Name):
        if node.ctx in ("store", "param"):
            bound.add(node.name)
    return bound


@lru_cache(maxsize=4096)
def analyse(source: str, *, bare: bool = False) -> Analysis:
    """Parse and statically check a template; raise :class:`ExpressionError` if unusable.

    With ``bare=True`` a value without ``{{`` is read as one expression (``when``).
    """
    text = source
    if bare and not is_template(source):
        text = "{{ " + source + " }}"
    tree = _parse(text)
    blocked = sorted(set(_forbidden(tree)))
    if blocked:
        names = ", ".join(repr(n) for n in blocked)
        raise ExpressionError(
            f"access to {names} is not allowed: names starting with '_' are blocked in expressions",
            attributes=blocked,
        )
    single: str | None = None
    body = tree.body
    if (
        len(body) == 1
        and isinstance(body[0], nodes.Output)
        and len(body[0].nodes) == 1
        and not isinstance(body[0].nodes[0], nodes.TemplateData)
    ):
        match = _SINGLE.match(text)
        if match:
            single = match.group("expr").strip()
    elif bare:
        raise ExpressionError("expected one expression, such as '{{ inputs.x | length > 0 }}'")
    refs = _references(tree, _locals(tree))
    return Analysis(source=source, references=tuple(refs), single_expression=single)


def _wrap(exc: Exception, source: str) -> ExpressionError:
    if isinstance(exc, SecurityError):
        return ExpressionError(f"blocked by the sandbox: {exc}", template=source)
    if isinstance(exc, jinja2.UndefinedError):
        return ExpressionError(f"undefined value: {exc.message}", template=source)
    return ExpressionError(f"cannot evaluate {source!r}: {exc}", template=source)


@lru_cache(maxsize=4096)
def _expression(source: str) -> Any:
    """Compiled once: compiling dominated the cost of a step (bench/engine_overhead.py)."""
    return environment().compile_expression(source, undefined_to_none=False)


@lru_cache(maxsize=4096)
def _template(source: str) -> jinja2.Template:
    return environment().from_string(source)


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Resolve every template inside ``value`` (a scalar, list or mapping)."""
    if isinstance(value, Mapping):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v, context) for v in value]
    if not is_template(value):
        return value
    return evaluate(value, context)


def evaluate(source: str, context: Mapping[str, Any], *, bare: bool = False) -> Any:
    """Evaluate one template; a single ``{{ expr }}`` keeps its native type."""
    analysis = analyse(source, bare=bare)
    try:
        if analysis.single_expression is not None:
            result = _expression(analysis.single_expression)(**context)
            if isinstance(result, jinja2.Undefined):
                str(result)  # StrictUndefined raises with a precise message
            return result
        return _template(source).render(**context)
    except ExpressionError:
        raise
    except (jinja2.TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
        raise _wrap(exc, source) from exc


def truthy(source: object, context: Mapping[str, Any]) -> bool:
    """Evaluate a ``when`` condition (a bool literal or an expression)."""
    if isinstance(source, bool):
        return source
    return bool(evaluate(str(source), context, bare=True))


def iter_strings(value: Any, path: RefPath = ()) -> Iterator[tuple[RefPath, str]]:
    """Every string leaf of a nested value, with its path (for per-value diagnostics)."""
    if isinstance(value, Mapping):
        for key, child in value.items():
            yield from iter_strings(child, (*path, key))
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        for index, child in enumerate(value):
            yield from iter_strings(child, (*path, index))
    elif isinstance(value, str):
        yield path, value


class Unresolved:
    """A value not known yet (an output of a step that has not run).

    Renders as ``<steps.create_key.outputs.access_key_id>``, so a plan shows exactly
    what will be substituted. Attribute and item access extend the path.
    """

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def __getattr__(self, name: str) -> Unresolved:
        if name.startswith("_"):
            raise AttributeError(name)
        return Unresolved(f"{self.path}.{name}")

    def __getitem__(self, key: object) -> Unresolved:
        return Unresolved(f"{self.path}.{key}")

    def __str__(self) -> str:
        return f"<{self.path}>"

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unresolved) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)
