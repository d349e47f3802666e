"""Turn pydantic validation errors into diagnostics located in the YAML source."""

from __future__ import annotations

import difflib
import types
from collections.abc import Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from bot.core.diagnostics import Diagnostic
from bot.core.playbook import STEP_TAGS
from bot.core.yamlsrc import Path, SourceMap

_KEY_MARK = "[key]"


def _field_names(model: type[BaseModel]) -> dict[str, Any]:
    names: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        names[info.alias or name] = info.annotation
    return names


def _tag_of(arg: Any) -> str | None:
    if get_origin(arg) is Annotated:
        for meta in get_args(arg)[1:]:
            tag = getattr(meta, "tag", None)
            if isinstance(tag, str):
                return tag
    return None


def _unwrap_optional(tp: Any) -> Any:
    """``X | None`` -> ``X``; other unions are left alone."""
    tp = _strip(tp)
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _strip(args[0])
    return tp


def _model_at(root: Any, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Follow ``loc`` through the type annotations to the model that owns its last key."""
    current: Any = root
    for part in loc:
        current = _descend(current, part)
        if current is None:
            return None
    current = _unwrap_optional(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _strip(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _variant(tp: Any, part: Any) -> Any:
    """The member of a tagged union selected by ``part`` (a step tag or a trigger kind)."""
    for arg in get_args(tp):
        if _tag_of(arg) == part:
            return arg
        inner = _strip(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            kind = inner.model_fields.get("kind")
            if kind is not None and kind.default == part:
                return inner
    return None


def _descend(tp: Any, part: Any) -> Any:
    tp = _strip(tp)
    if get_origin(tp) in (Union, types.UnionType):
        chosen = _variant(tp, part)
        if chosen is not None:
            return chosen
        tp = _unwrap_optional(tp)
    origin = get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return _field_names(tp).get(part)
    if origin in (list, dict):
        return get_args(tp)[-1]
    return None


def _clean(model: Any, loc: Sequence[Any]) -> tuple[Path, bool]:
    """Drop the parts of a pydantic ``loc`` that are not in the document.

    Walks the annotations alongside ``loc`` so that only a step union's tag is dropped
    and only a dict's key marker counts as one: a user's key that happens to be
    spelled ``wait-step`` or ``[key]`` stays a path element.
    """
    path: list[str | int] = []
    key = False
    current: Any = model
    for number, part in enumerate(loc):
        tp = _strip(current) if current is not None else None
        if get_origin(tp) in (Union, types.UnionType):
            chosen = _variant(tp, part)
            if chosen is not None and part in STEP_TAGS:
                current = chosen  # a step's tag is not written in the YAML
                continue
            tp = _unwrap_optional(tp)
        if get_origin(tp) is dict and number == len(loc) - 2 and loc[-1] == _KEY_MARK:
            path.append(str(part))
            key = True
            break
        path.append(part if isinstance(part, int) else str(part))
        current = _descend(tp, part) if tp is not None else None
    return tuple(path), key


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def diagnostics(
    error: ValidationError,
    smap: SourceMap,
    *,
    model: Any,
    prefix: Path = (),
    code: str = "schema",
    skip: frozenset[Path] = frozenset(),
) -> list[Diagnostic]:
    """One diagnostic per pydantic error, located via ``smap``.

    ``prefix`` is where the validated value sits in the document; errors at or below a
    path in ``skip`` are dropped (used for values that are templates).
    """
    found: list[Diagnostic] = []
    for detail in error.errors():
        diag = _one(detail, smap, model=model, prefix=prefix, code=code, skip=skip)
        if diag is not None:
            found.append(diag)
    return found


def _one(
    detail: ErrorDetails,
    smap: SourceMap,
    *,
    model: Any,
    prefix: Path,
    code: str,
    skip: frozenset[Path],
) -> Diagnostic | None:
    raw_loc = tuple(detail["loc"])
    local, is_key = _clean(model, raw_loc)
    kind = detail["type"]
    if kind not in ("missing", "extra_forbidden") and any(
        local[:n] in skip for n in range(1, len(local) + 1)
    ):
        return None
    path = prefix + local
    msg = detail["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    hint = None
    if kind == "extra_forbidden":
        owner = _model_at(model, tuple(p for p in raw_loc[:-1]))
        allowed = sorted(k for k in _field_names(owner) if k != "kind") if owner else []
        name = str(local[-1]) if local else ""
        message = f"unknown key {name!r}"
        close = difflib.get_close_matches(name, allowed, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
        if allowed:
            hint = "allowed keys: " + ", ".join(allowed)
        return Diagnostic(smap.locate(path, key=True), code, message, hint=hint)
    if kind == "missing" and local:
        where = _dotted(local[:-1])
        message = f"missing required key {local[-1]!r}" + (f" in {where}" if where else "")
        return Diagnostic(smap.locate(path[:-1], key=True), code, message)
    if kind == "string_pattern_mismatch":
        pattern = (detail.get("ctx") or {}).get("pattern")
        msg = f"{detail['input']!r} does not match the pattern {pattern}"
    elif kind == "step_kind":
        msg = "a step needs exactly one of the keys: action, approval, manual, wait, playbook"
    label = _dotted(local)
    text = f"{label}: {msg}" if label and kind != "step_kind" else msg
    return Diagnostic(smap.locate(path, key=is_key), code, text)
