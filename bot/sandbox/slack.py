"""A local fake of the Slack Web API (after bolt-python's mock_web_api_server).

A real HTTP server on 127.0.0.1 (a free port, its own thread) that answers
``POST|GET /api/<method>`` as Slack does: JSON, form or query parameters in, ``{"ok": ...}``
out. Point ``AsyncWebClient(base_url=fake.url)`` (or ``SLACK_API_URL``) at it. ``irbot
demo`` posts the incident thread here and prints it; the tests use it through
``tests/fake_slack.py`` (fixtures ``fake_slack`` and ``slack_env``).

What it knows:

- ``chat.postMessage`` (ts generated; messages kept per channel and thread, with metadata),
  ``chat.update``, ``conversations.replies`` and ``conversations.history`` (metadata only
  with ``include_all_metadata``, cursor pagination), ``conversations.create`` (by the bot
  user; ``name_taken`` for a name in use) and ``conversations.list``, ``auth.test``; any
  other method answers ``unknown_method`` unless you add it with :meth:`FakeSlack.handle`.
- Channel names (``#incidents``) map to stable IDs (:meth:`FakeSlack.channel_id`); the
  read methods take IDs only, as Slack's do. ``conversations.list`` lists the channels
  created, made with :meth:`FakeSlack.add_channel` or posted to by name.
- Tokens: any non-empty bearer token is accepted unless :attr:`FakeSlack.tokens` says
  which; none at all -> ``not_authed``, another -> ``invalid_auth``.

Scripting failures: ``rate_limit(method, times)`` answers 429 with ``Retry-After`` for the
next ``times`` calls; ``fail(method, error, times)`` answers ``{"ok": false, "error": ...}``.
Every call, answered or not, is recorded: :meth:`FakeSlack.calls`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

TEAM_ID = "T0IRBOT01"
BOT_USER_ID = "U0IRBOT01"
BOT_ID = "B0IRBOT01"
ADMIN_USER_ID = "U0ADMIN01"
"""Who made the channels a test adds (not irbot)."""

_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")
_JSON_FIELDS = ("metadata", "blocks", "attachments")
"""Form-encoded parameters whose value is JSON text (as slack_sdk sends them)."""

Answer = dict[str, Any]
Handler = Callable[["Call"], Answer]


@dataclass(frozen=True)
class Call:
    """One request the fake received."""

    method: str
    params: dict[str, Any]
    """Query, form or JSON parameters, merged; JSON text in metadata/blocks is decoded."""
    authorization: str | None
    http_verb: str

    @property
    def token(self) -> str | None:
        """The bearer token (or ``token`` parameter) the caller sent."""
        if self.authorization and self.authorization.startswith("Bearer "):
            return self.authorization.removeprefix("Bearer ")
        value = self.params.get("token")
        return str(value) if value else None

    def flag(self, name: str) -> bool:
        """A boolean parameter as Slack reads it (``true``, ``1``)."""
        return str(self.params.get(name, "")).lower() in ("1", "true")


@dataclass
class Message:
    """A message in the fake workspace."""

    channel: str
    ts: str
    text: str
    thread_ts: str | None = None
    metadata: dict[str, Any] | None = None
    blocks: list[Any] | None = None
    edited: bool = False
    replies: list[Message] = field(default_factory=list)

    def to_api(self, *, include_metadata: bool) -> Answer:
        """The message as the Web API shows it."""
        data: Answer = {
            "type": "message",
            "ts": self.ts,
            "text": self.text,
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "team": TEAM_ID,
        }
        if self.thread_ts is not None:
            data["thread_ts"] = self.thread_ts
        elif self.replies:
            data["thread_ts"] = self.ts
            data["reply_count"] = len(self.replies)
        if self.blocks is not None:
            data["blocks"] = self.blocks
        if self.edited:
            data["edited"] = {"user": BOT_USER_ID, "ts": self.ts}
        if include_metadata and self.metadata is not None:
            data["metadata"] = self.metadata
        return data


class FakeSlack:
    """The fake Web API server; use as a context manager or :meth:`start` / :meth:`stop`."""

    def __init__(self, *, tokens: Iterable[str] | None = None) -> None:
        self.tokens: set[str] | None = None if tokens is None else set(tokens)
        """Accepted tokens; None accepts any non-empty one."""
        self._lock = threading.RLock()
        self._handlers: dict[str, Handler] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "chat.postEphemeral": self._ephemeral,
            "views.open": self._ok,
            "views.update": self._ok,
            "views.publish": self._ok,
            "conversations.replies": self._replies,
            "conversations.history": self._history,
            "conversations.list": self._list,
            "conversations.create": self._create,
        }
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeSlack:
        fake = self

        class RequestHandler(_RequestHandler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-slack", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The Web API base URL, e.g. ``http://127.0.0.1:PORT/api/``."""
        if self._server is None:
            raise RuntimeError("the fake Slack server is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/api/"

    def reset(self) -> None:
        """Forget calls, messages and scripted failures (handlers added stay)."""
        with self._lock:
            self._calls: list[Call] = []
            self._channels: dict[str, list[Message]] = {}
            self._listed: dict[str, dict[str, Any]] = {}  # channel ID -> conversations.list
            self._scripted: dict[str, list[tuple[int, Answer, dict[str, str]]]] = {}
            self._ts = itertools.count(1)
            self._epoch = int(time.time())

    # ------------------------------------------------------------------ test API

    def calls(self, method: str | None = None) -> list[Call]:
        """Every call received (of ``method``, if given), oldest first."""
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def messages(self, channel: str) -> list[Message]:
        """Top-level messages of a channel (name or ID), oldest first."""
        with self._lock:
            return list(self._channels.get(self.channel_id(channel), []))

    def replies(self, channel: str, thread_ts: str) -> list[Message]:
        """Replies in a thread, oldest first (without the parent)."""
        with self._lock:
            parent = self._find(self.channel_id(channel), thread_ts)
            return list(parent.replies) if parent is not None else []

    def add_channel(
        self,
        name: str,
        *,
        creator: str = ADMIN_USER_ID,
        created: float | None = None,
        members: int = 1,
    ) -> str:
        """Make a channel that ``conversations.list`` lists (made by ``creator`` at
        ``created``, epoch seconds, default now, with ``members`` in it); its ID."""
        with self._lock:
            channel = self.channel_id(name)
            self._listed[channel] = {
                "id": channel,
                "name": name.removeprefix("#"),
                "creator": creator,
                "created": int(time.time() if created is None else created),
                "num_members": members,
                "is_archived": False,
            }
            return channel

    @staticmethod
    def channel_id(channel: str) -> str:
        """The ID of a channel given by ID or by name (``#incidents`` / ``incidents``)."""
        if _CHANNEL_ID.match(channel):
            return channel
        digest = hashlib.sha256(channel.lstrip("#").encode()).hexdigest()[:10].upper()
        return f"C{digest}"

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with 429 and ``Retry-After``."""
        answer = {"ok": False, "error": "ratelimited"}
        self._script(method, times, 429, answer, {"Retry-After": str(retry_after)})

    def fail(
        self, method: str, error: str, times: int = 1, status: int = 200, **extra: Any
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with ``{"ok": false, "error": error}``."""
        self._script(method, times, status, {"ok": False, "error": error, **extra}, {})

    def handle(self, method: str, handler: Handler) -> Handler | None:
        """Answer ``method`` with ``handler(call)``; returns the handler it replaces (a
        built-in answer, which a test's handler may call)."""
        with self._lock:
            replaced = self._handlers.get(method)
            self._handlers[method] = handler
            return replaced

    def _script(
        self, method: str, times: int, status: int, answer: Answer, headers: dict[str, str]
    ) -> None:
        with self._lock:
            self._scripted.setdefault(method, []).extend([(status, answer, headers)] * times)

    # ------------------------------------------------------------------ dispatch

    def answer(self, call: Call) -> tuple[int, Answer, dict[str, str]]:
        """Record ``call`` and decide the (status, body, headers) to send back."""
        with self._lock:  # reentrant: a handler may look at calls() or messages()
            self._calls.append(call)
            scripted = self._scripted.get(call.method)
            if scripted:
                return scripted.pop(0)
            if call.token is None:
                return 200, {"ok": False, "error": "not_authed"}, {}
            if self.tokens is not None and call.token not in self.tokens:
                return 200, {"ok": False, "error": "invalid_auth"}, {}
            handler = self._handlers.get(call.method)
            if handler is None:
                return 200, {"ok": False, "error": "unknown_method"}, {}
            return 200, handler(call), {}

    def _next_ts(self) -> str:
        return f"{self._epoch}.{next(self._ts):06d}"

    def _find(self, channel: str, ts: str) -> Message | None:
        for message in self._channels.get(channel, []):
            if message.ts == ts:
                return message
            for reply in message.replies:
                if reply.ts == ts:
                    return reply
        return None

    # ------------------------------------------------------------------ built-in methods

    def _auth_test(self, call: Call) -> Answer:
        return {
            "ok": True,
            "url": "https://irbot-test.slack.com/",
            "team": "irbot test",
            "user": "irbot",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
        }

    def _post_message(self, call: Call) -> Answer:
        channel = str(call.params.get("channel") or "")
        text = str(call.params.get("text") or "")
        blocks = call.params.get("blocks")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not text and not blocks:
            return {"ok": False, "error": "no_text"}
        if not _CHANNEL_ID.match(channel) and self.channel_id(channel) not in self._listed:
            self.add_channel(channel)
        channel = self.channel_id(channel)
        thread_ts = call.params.get("thread_ts") or None
        message = Message(
            channel=channel,
            ts=self._next_ts(),
            text=text,
            thread_ts=str(thread_ts) if thread_ts else None,
            metadata=call.params.get("metadata"),
            blocks=blocks,
        )
        if message.thread_ts is None:
            self._channels.setdefault(channel, []).append(message)
        else:
            parent = next(
                (m for m in self._channels.get(channel, []) if m.ts == message.thread_ts), None
            )
            if parent is None:
                return {"ok": False, "error": "thread_not_found"}
            parent.replies.append(message)
        return {
            "ok": True,
            "channel": channel,
            "ts": message.ts,
            "message": message.to_api(include_metadata=True),
        }

    def _update(self, call: Call) -> Answer:
        channel = str(call.params.get("channel") or "")
        if not _CHANNEL_ID.match(channel):
            return {"ok": False, "error": "channel_not_found"}
        message = self._find(channel, str(call.params.get("ts") or ""))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if "text" in call.params:
            message.text = str(call.params["text"])
        if "blocks" in call.params:
            message.blocks = call.params["blocks"]
        if "metadata" in call.params:
            message.metadata = call.params["metadata"]
        message.edited = True
        return {
            "ok": True,
            "channel": channel,
            "ts": message.ts,
            "text": message.text,
            "message": message.to_api(include_metadata=True),
        }

    def _delete(self, call: Call) -> Answer:
        channel, ts = str(call.params.get("channel") or ""), str(call.params.get("ts") or "")
        for messages in [self._channels.get(channel, [])] + [
            m.replies for m in self._channels.get(channel, [])
        ]:
            for message in messages:
                if message.ts == ts:
                    messages.remove(message)
                    return {"ok": True, "channel": channel, "ts": ts}
        return {"ok": False, "error": "message_not_found"}

    def _ephemeral(self, call: Call) -> Answer:
        """Ephemeral messages are seen by one user and not kept: the call is the record."""
        if not call.params.get("user"):
            return {"ok": False, "error": "user_not_in_channel"}
        return {"ok": True, "message_ts": self._next_ts()}

    def _ok(self, call: Call) -> Answer:
        """Views: recorded calls are what tests look at."""
        return {"ok": True, "view": {"id": f"V{self._next_ts().replace('.', '')}"}}

    def _replies(self, call: Call) -> Answer:
        channel = str(call.params.get("channel") or "")
        if not _CHANNEL_ID.match(channel):
            return {"ok": False, "error": "channel_not_found"}
        parent = next(
            (m for m in self._channels.get(channel, []) if m.ts == call.params.get("ts")), None
        )
        if parent is None:
            return {"ok": False, "error": "thread_not_found"}
        return _page([parent, *parent.replies], call)

    def _history(self, call: Call) -> Answer:
        channel = str(call.params.get("channel") or "")
        if not _CHANNEL_ID.match(channel):
            return {"ok": False, "error": "channel_not_found"}
        return _page(list(reversed(self._channels.get(channel, []))), call)

    def _list(self, call: Call) -> Answer:
        return _page(list(self._listed.values()), call, key="channels")

    def _create(self, call: Call) -> Answer:
        name = str(call.params.get("name") or "")
        if not name:
            return {"ok": False, "error": "invalid_name_required"}
        if self.channel_id(name) in self._listed:
            return {"ok": False, "error": "name_taken"}
        return {"ok": True, "channel": self._listed[self.add_channel(name, creator=BOT_USER_ID)]}


def _page(items: list[Message] | list[dict[str, Any]], call: Call, key: str = "messages") -> Answer:
    """One page of ``items`` with Slack's cursor pagination (the cursor is an offset)."""
    limit = int(call.params.get("limit") or 100)
    start = int(call.params.get("cursor") or 0)
    chunk = items[start : start + limit]
    more = start + limit < len(items)
    include = call.flag("include_all_metadata")
    return {
        "ok": True,
        key: [m.to_api(include_metadata=include) if isinstance(m, Message) else m for m in chunk],
        "has_more": more,
        "response_metadata": {"next_cursor": str(start + limit) if more else ""},
    }


class _RequestHandler(BaseHTTPRequestHandler):
    server_fake: FakeSlack

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        if not parts.path.startswith("/api/"):
            self._send(404, {"ok": False, "error": "not_found"}, {})
            return
        params: dict[str, Any] = dict(parse_qsl(parts.query))
        try:
            params.update(self._body_params())
        except ValueError:  # also UnicodeDecodeError and json.JSONDecodeError
            self._send(400, {"ok": False, "error": "invalid_arguments"}, {})
            return
        call = Call(
            method=parts.path.removeprefix("/api/"),
            params=params,
            authorization=self.headers.get("Authorization"),
            http_verb=self.command,
        )
        self._send(*self.server_fake.answer(call))

    def _body_params(self) -> dict[str, Any]:
        """JSON or form parameters of the body; ValueError when they do not parse."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if not body:
            return {}
        if self.headers.get("Content-Type", "").startswith("application/json"):
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("a JSON body must be an object")
            return data
        form: dict[str, Any] = dict(parse_qsl(body.decode()))
        for name in _JSON_FIELDS:
            if isinstance(form.get(name), str):
                form[name] = json.loads(form[name])
        return form

    def _send(self, status: int, answer: Answer, headers: dict[str, str]) -> None:
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
