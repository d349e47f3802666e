"""Secret-safe structured logs: one configuration for irbot's own lines and every library's.

::

    structlog.get_logger("irbot.…") ─┐
                                      ├─> ids, level, logger, UTC time ─> exception text ─┐
    logging (uvicorn, botocore, dbos, ─┘                                                  │
     slack_sdk, kubernetes …)                        JSON (not a terminal) <─ REDACT <────┘
                                                     or console (a terminal)

Both kinds of line meet in one :class:`structlog.stdlib.ProcessorFormatter` on one
handler, so they share the format and, above all, the redaction. Redaction runs last
before rendering, after exceptions were turned into text (an exception message can carry
a secret, and a renderer that formatted the traceback itself would print it unmasked). It
reuses :class:`bot.core.redaction.Redactor` (secret key names anywhere in nested data,
value patterns of known credential formats) plus the values the current action call
marked secret (:func:`masking`).

Ids: the engine binds ``incident_id``, ``run_id`` and ``step`` with
``structlog.contextvars.bound_contextvars`` around each action call; every line logged
inside, by irbot or by a library, carries them.

``IRBOT_LOG_FORMAT`` (``json`` | ``console``) and ``IRBOT_LOG_LEVEL`` win over what a
command chooses; a bad value is a :class:`ConfigError` naming the variable.

structlog is imported only when a configuration is applied: importing it (and the rich
traceback code it pulls in) costs ~0.15 s, and :func:`resolve` alone lets the CLI check
the variables without paying for it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import TYPE_CHECKING, Any, TextIO

from bot.core.errors import ConfigError
from bot.core.redaction import Redactor

if TYPE_CHECKING:
    import structlog
    from structlog.types import Processor

FORMAT_ENV = "IRBOT_LOG_FORMAT"
LEVEL_ENV = "IRBOT_LOG_LEVEL"
FORMATS = {"json": True, "console": False}
LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}
OWN_LOGGER = "irbot"
"""irbot's loggers are ``irbot.*``; they log at the chosen level. Libraries log at the
chosen level or WARNING, whichever is higher (their INFO is noise, and some DEBUG output,
botocore's, carries request bodies)."""
SELF_HANDLED = ("dbos",)
"""Loggers that do not propagate to the root: DBOS gives its logger a console handler of
its own unless it already has one, so it gets ours instead."""

_BASE = Redactor()
_SECRETS: ContextVar[AbstractSet[str]] = ContextVar("irbot_log_secrets", default=frozenset())


@dataclass(frozen=True)
class Choice:
    """A resolved configuration: what :func:`configure` applied."""

    json: bool
    level: int
    stream: TextIO | None
    """None: whatever ``sys.stdout`` is when a line is written."""


@dataclass
class _Installed:
    choice: Choice
    handler: logging.Handler
    root_level: int
    own_level: int
    self_handled: dict[str, tuple[bool, list[logging.Handler]]]


_installed: list[_Installed] = []


# --------------------------------------------------------------------------- redaction


@contextmanager
def masking(values: AbstractSet[str]) -> Iterator[None]:
    """Mask these exact values in every line logged inside the block.

    The engine passes the action call's redaction set (``ActionContext.secrets``): it is
    read at each line, so a value the action marks secret later is masked from then on.
    """
    token = _SECRETS.set(values)
    try:
        yield
    finally:
        _SECRETS.reset(token)


def redact(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """The redaction processor: every value in the event, at any depth, the ``event``
    message and rendered exceptions included, through :class:`Redactor`.

    Objects a renderer would turn into text later (exceptions, paths …) become text here,
    so nothing reaches the output without passing through the patterns.
    """
    extra = _SECRETS.get()
    redactor = _BASE.with_values(extra) if extra else _BASE
    return redactor({str(key): _plain(value) for key, value in event_dict.items()})


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# --------------------------------------------------------------------------- choice


def resolve(
    *,
    json: bool | None = None,
    level: str = "INFO",
    stream: TextIO | None = None,
    env: Mapping[str, str] | None = None,
) -> Choice:
    """The format and level to use: the environment first, then the arguments; a format
    left open is JSON unless the stream is a terminal."""
    env = os.environ if env is None else env
    fmt = env.get(FORMAT_ENV, "").strip().lower()
    if fmt:
        if fmt not in FORMATS:
            raise ConfigError(f"{FORMAT_ENV} must be json or console, got {fmt!r}")
        json = FORMATS[fmt]
    name = (env.get(LEVEL_ENV, "").strip() or level).upper()
    if name not in LEVELS:
        source = LEVEL_ENV if env.get(LEVEL_ENV, "").strip() else "the log level"
        raise ConfigError(f"{source} must be one of {', '.join(LEVELS)}, got {name.lower()!r}")
    if json is None:
        json = not _isatty(stream if stream is not None else sys.stdout)
    return Choice(json=json, level=LEVELS[name], stream=stream)


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


# --------------------------------------------------------------------------- configure


def configure(
    *,
    json: bool | None = None,
    level: str = "INFO",
    stream: TextIO | None = None,
    env: Mapping[str, str] | None = None,
) -> Choice | None:
    """Send structlog and stdlib logging, redacted, to ``stream`` (default: stdout).

    Idempotent: a second call replaces the first. Returns the configuration it replaced
    (None if there was none), for :func:`restore` — a component that logs to its own file
    for a while (the shell, the demo sandbox) puts the process's back when it is done.
    """
    return apply(resolve(json=json, level=level, stream=stream, env=env))


def apply(choice: Choice) -> Choice | None:
    """Install an already resolved :class:`Choice` (see :func:`configure`)."""
    import structlog

    previous = _uninstall()
    handler: logging.Handler = (
        _StdoutHandler() if choice.stream is None else logging.StreamHandler(choice.stream)
    )
    handler.setFormatter(_formatter(choice))
    handler.addFilter(_LibraryFloor(choice.level))
    root, own = logging.getLogger(), logging.getLogger(OWN_LOGGER)
    saved = _Installed(choice, handler, root.level, own.level, {})
    root.addHandler(handler)
    root.setLevel(max(choice.level, logging.WARNING))
    own.setLevel(choice.level)
    for name in SELF_HANDLED:
        lib = logging.getLogger(name)
        saved.self_handled[name] = (lib.propagate, list(lib.handlers))
        for old in list(lib.handlers):
            lib.removeHandler(old)
        lib.addHandler(handler)
        lib.propagate = False
    _installed.append(saved)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _exceptions(choice),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        # Tests and the shell reconfigure at run time; module-level loggers must follow.
        cache_logger_on_first_use=False,
    )
    return previous.choice if previous is not None else None


class _LibraryFloor(logging.Filter):
    """Libraries' lines below max(level, WARNING) are dropped at the handler too: a
    library that sets its own logger's level (boto's, ours in bot/actions/aws) would
    otherwise get its INFO past the root logger's level."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.floor = max(level, logging.WARNING)

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name == OWN_LOGGER or record.name.startswith(OWN_LOGGER + ".")
        return own or record.levelno >= self.floor


def restore(previous: Choice | None) -> None:
    """Put back what :func:`configure` returned; None means no configuration at all."""
    if previous is None:
        reset()
    else:
        apply(previous)


def reset() -> None:
    """Remove irbot's handler, put the loggers' levels back, and structlog's defaults."""
    import structlog

    _uninstall()
    structlog.reset_defaults()


def _uninstall() -> _Installed | None:
    if not _installed:
        return None
    saved = _installed.pop()
    root, own = logging.getLogger(), logging.getLogger(OWN_LOGGER)
    root.removeHandler(saved.handler)
    root.setLevel(saved.root_level)
    own.setLevel(saved.own_level)
    for name, (propagate, handlers) in saved.self_handled.items():
        lib = logging.getLogger(name)
        lib.removeHandler(saved.handler)
        for old in handlers:
            lib.addHandler(old)
        lib.propagate = propagate
    return saved


def _exceptions(choice: Choice) -> Processor:
    """Exceptions become data (JSON) or text (console) *before* redaction."""
    import structlog

    return _dict_tracebacks() if choice.json else structlog.processors.format_exc_info


@cache
def _dict_tracebacks() -> Processor:
    """dict_tracebacks without local variables: a frame's locals may hold a secret under
    a name no rule knows (``value``, ``body``), and they add nothing a reader needs."""
    import structlog
    from structlog.tracebacks import ExceptionDictTransformer

    return structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))


def _formatter(choice: Choice) -> structlog.stdlib.ProcessorFormatter:
    import structlog

    renderer: Processor
    if choice.json:
        renderer = structlog.processors.JSONRenderer()
    else:
        stream = choice.stream if choice.stream is not None else sys.stdout
        renderer = structlog.dev.ConsoleRenderer(colors=_isatty(stream))
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _exceptions(choice),  # a library's record with exc_info
            redact,
            renderer,
        ],
    )


class _StdoutHandler(logging.StreamHandler[TextIO]):
    """Writes to ``sys.stdout`` as it is at each line (pytest's capture, a redirect),
    not to the object that was stdout at configuration time."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass
