"""The messages irbot posts by itself: a background task that follows the timeline.

For each new event (in chain order) the notifier posts or edits Slack messages:

- ``incident.opened``: the root message in irbot.yaml's ``slack.channel`` (or, with
  ``slack: {incident_channels: true}``, a new channel ``inc-<n>-<playbook>`` with the
  requester invited, a topic that follows the state, the root posted there, and a pointer
  left in ``slack.channel``);
- ``approval.requested`` / ``manual.requested``: the plan with Approve/Reject, the task
  with Done/Failed, in the thread; later approval and task events edit those in place;
- ``step.failed``, ``run.*`` endings and notes: a short thread line; state changes also
  edit the root's status line (and the channel topic).

Exactly once, across restarts: every message has a record in ``slack_messages``, written
*before* the post (no ts: "maybe posted") and completed after; a record without a ts is
resolved by searching Slack for the message's metadata (``irbot_notice`` with the event
id) before posting again. The cursor (last event whose effects are done) is saved after
each event, held back by edits still waiting in the coalescing window, so a restart
redoes those edits and finds everything else already posted.

Slack limits: posts are paced per channel (``post_interval``, Slack allows ~1/s), edits of
one message within ``coalesce_seconds`` become one ``chat.update``. 429s are ridden out
(the client's rate-limit retry handler, then our own backoff honouring Retry-After);
other transient errors are retried a few times; a message that still fails is logged and
skipped. An auth error pauses the notifier instead (skipping would lose every message).

The root may also be created by the ``slack.post`` action (bot/actions/slack.py) when a
playbook posts before the notifier did: both use the incident's thread in the store, and
the notifier claims the thread only if it is still free (otherwise its root is deleted).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import ParamSpec, TypeVar

import aiohttp
import structlog
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.config import Config
from bot.core.errors import IrbotError, NotFoundError
from bot.core.redaction import Redactor
from bot.core.timeline import (
    APPROVAL_BREAKGLASS,
    APPROVAL_COUNTED,
    APPROVAL_EXPIRED,
    APPROVAL_GRANTED,
    APPROVAL_REJECTED,
    APPROVAL_REQUESTED,
    INCIDENT_OPENED,
    MANUAL_COMPLETED,
    MANUAL_REQUESTED,
    NOTE,
    RUN_CANCELLED,
    RUN_EXPIRED,
    RUN_FAILED,
    RUN_FINISHED,
    RUN_STARTED,
    STEP_FAILED,
    StoredEvent,
)
from bot.slack import blocks, channels
from bot.slack.blocks import Rendered
from bot.slack.channels import channel_ids, is_id
from bot.store import Incident, TimelineStore

P = ParamSpec("P")
T = TypeVar("T")

log = structlog.get_logger("irbot.slack.notifier")

CURSOR = "slack"
"""The notifier's row in ``notifier_cursors``."""
EVENT_TYPE = "irbot_notice"
"""Message metadata ``event_type``; the payload is ``{"event": <timeline event id>}``."""
CHANNEL_MAX = 80
NAME_TRIES = 5
CLOCK_SKEW = 60.0
"""Seconds Slack's clock and ours may disagree by when dating a channel."""
LOOKUP_PAGES = 5
CACHE_INCIDENTS = 500
MAX_PAUSE = 60.0

ROOT, CHANNEL, ANNOUNCE = "root", "channel", "announce"
"""Keys in ``slack_messages`` (with ``approval:<event>``, ``task:<event>``, ``event:<id>``)."""

_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_AUTH_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)
_TRANSIENT = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
_APPROVAL_ANSWERS = frozenset(
    {APPROVAL_COUNTED, APPROVAL_GRANTED, APPROVAL_REJECTED, APPROVAL_EXPIRED, APPROVAL_BREAKGLASS}
)
_THREAD_LINES = frozenset({STEP_FAILED, RUN_FINISHED, RUN_FAILED, RUN_CANCELLED, RUN_EXPIRED, NOTE})
_INVITE_OK = frozenset({"already_in_channel", "cant_invite_self"})
_HANDLED = (
    frozenset({INCIDENT_OPENED, RUN_STARTED, APPROVAL_REQUESTED, MANUAL_REQUESTED})
    | _APPROVAL_ANSWERS
    | {MANUAL_COMPLETED}
    | _THREAD_LINES
)


class DeliveryError(IrbotError):
    """A Slack call failed for good. ``fatal``: no call can succeed (bad token), so the
    notifier pauses rather than skipping messages."""

    def __init__(
        self,
        message: str,
        *,
        error: str = "",
        retryable: bool = False,
        ambiguous: bool = False,
        fatal: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, error=error)
        self.error = error
        self.retryable = retryable
        self.ambiguous = ambiguous
        """The request may have taken effect (timeout, 5xx): look before posting again."""
        self.fatal = fatal
        self.retry_after = retry_after


def _classify(exc: SlackApiError, doing: str) -> DeliveryError:
    response = exc.response
    data = getattr(response, "data", None)
    error = str(data.get("error") or "") if isinstance(data, dict) else ""
    status = int(getattr(response, "status_code", 0) or 0)
    if status == 429 or error == "ratelimited":
        headers = getattr(response, "headers", None) or {}
        after = headers.get("Retry-After") or headers.get("retry-after")
        retry_after = float(after) if after and str(after).isdigit() else None
        return DeliveryError(
            f"{doing}: rate limited", error="ratelimited", retryable=True, retry_after=retry_after
        )
    if error in _AUTH_ERRORS:
        return DeliveryError(
            f"{doing}: Slack rejected the token ({error}): check SLACK_BOT_TOKEN",
            error=error,
            fatal=True,
        )
    if error in _TRANSIENT or status >= 500:
        return DeliveryError(
            f"{doing}: Slack error {error or status}",
            error=error or str(status),
            retryable=True,
            ambiguous=True,
        )
    if error in ("channel_not_found", "not_in_channel", "is_archived"):
        return DeliveryError(
            f"{doing}: {error}: check slack.channel in irbot.yaml and invite the bot (/invite)",
            error=error,
        )
    if error == "missing_scope":
        needed = data.get("needed", "?") if isinstance(data, dict) else "?"
        return DeliveryError(
            f"{doing}: the Slack app lacks the scope {needed}", error=error, fatal=False
        )
    return DeliveryError(f"{doing}: Slack answered {error or status}", error=error)


def channel_name(number: int, playbook: str | None, attempt: int = 1) -> str:
    """``inc-42-leak-response`` (``-2``, ``-3`` … when taken): lowercase letters, digits,
    hyphens and underscores, at most 80 characters, as Slack requires."""
    base = f"inc-{number}" + (f"-{playbook}" if playbook else "")
    base = re.sub(r"[^a-z0-9_-]+", "-", base.lower()).strip("-")
    suffix = "" if attempt <= 1 else f"-{attempt}"
    return base[: CHANNEL_MAX - len(suffix)].rstrip("-") + suffix


def _user_of(principal: object) -> str | None:
    """The Slack user id in ``user:U01`` / ``U01``, if it is one."""
    text = str(principal or "")
    text = text.removeprefix("user:")
    return text if _SLACK_USER.match(text) else None


@dataclass
class _Pending:
    """An edit waiting out the coalescing window; the newest content wins."""

    channel: str
    ts: str | None
    """The message to edit; None for a channel topic."""
    content: Rendered | str
    first_seq: int
    due: float


@dataclass
class _Thread:
    """What the notifier knows about one incident in Slack."""

    incident: Incident
    channel: str
    ts: str
    own_root: bool
    """Whether the root is the notifier's (the slack.post action may have made it)."""
    incident_channel: bool
    opened: StoredEvent | None
    breakglass: bool = False
    invited: set[str] = field(default_factory=set)


class Notifier:
    """Follows the timeline and keeps Slack in step with it.

    ``config_loader`` returns irbot.yaml as it is now (read once per batch of events).
    Keyword knobs exist for tests; the defaults follow Slack's limits.
    """

    def __init__(
        self,
        store: TimelineStore,
        client: AsyncWebClient,
        config_loader: Callable[[], Config],
        *,
        poll_seconds: float = 0.5,
        coalesce_seconds: float = 1.0,
        post_interval: float = 1.0,
        attempts: int = 4,
        backoff_seconds: float = 1.0,
        batch: int = 100,
        name: str = CURSOR,
    ) -> None:
        self.store = store
        self.client = client
        self.config_loader = config_loader
        self.poll_seconds = poll_seconds
        self.coalesce_seconds = coalesce_seconds
        self.post_interval = post_interval
        self.attempts = max(1, attempts)
        self.backoff_seconds = backoff_seconds
        self.batch = batch
        self.name = name
        self.redactor = Redactor()
        self._cursor: int | None = None
        self._saved: int | None = None
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._threads: OrderedDict[str, _Thread] = OrderedDict()
        self._last_post: dict[str, float] = {}
        self._waker: asyncio.Future[None] | None = None
        self._poked = False
        self._me: str | None = None
        """irbot's bot user id (auth.test), once asked."""
        if not any(isinstance(h, AsyncRateLimitErrorRetryHandler) for h in client.retry_handlers):
            # A 429 is never ambiguous (nothing was posted), so the client may retry it.
            client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))

    # ------------------------------------------------------------------ the loop

    async def run_forever(self) -> None:
        """Tick until cancelled. Expected failures (database, irbot.yaml, a revoked
        token) pause with a growing delay and are retried; nothing is skipped for them."""
        loop = asyncio.get_running_loop()

        def appended(_seq: int) -> None:
            # Called from whichever thread appended; hand the wake-up to our loop.
            with contextlib.suppress(RuntimeError):  # the loop closed under us
                loop.call_soon_threadsafe(self._poke)

        unsubscribe = self.store.on_append(appended)
        try:
            await self._follow()
        finally:
            unsubscribe()

    async def _follow(self) -> None:
        failures = 0
        while True:
            try:
                handled = await self.tick()
                failures = 0
                delay = 0.0 if handled >= self.batch else self.poll_seconds  # a backlog
            except IrbotError as exc:
                failures += 1
                delay = min(self.poll_seconds * 2**failures, MAX_PAUSE)
                log.error(
                    "slack.notifier_paused",
                    error=self.redactor.text(exc.message),
                    retry_in=round(delay, 2),
                )
            if self._pending:
                soonest = min(p.due for p in self._pending.values()) - time.monotonic()
                delay = min(delay, max(soonest, 0.0))
            if failures:
                await asyncio.sleep(delay)  # back off; an append must not cut the pause short
            else:
                await self._sleep(delay)

    def _poke(self) -> None:
        """An event was appended in this process: end the current sleep, or the next."""
        self._poked = True
        if self._waker is not None:
            _wake(self._waker)

    async def _sleep(self, delay: float) -> None:
        """Sleep up to ``delay``, or not at all if an event was appended meanwhile. (A
        plain future and a timer, not asyncio.wait_for on an Event: on Python 3.11 that
        combination was seen to lose a wake-up and then hang on cancellation.)"""
        if self._poked or delay <= 0:
            self._poked = False
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        waker: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(delay, _wake, waker)
        self._waker = waker
        try:
            await waker
        finally:
            timer.cancel()
            self._waker = None
            self._poked = False

    async def tick(self) -> int:
        """Handle the events appended since the last tick and send the edits that are
        due; returns how many events were handled. A first run on a database starts at
        the current end of the timeline (it does not replay history into Slack)."""
        if self._cursor is None:
            stored = await _db(self.store.notifier_cursor, self.name)
            if stored is None:
                stored = await _db(self.store.head_seq)
                await _db(self.store.set_notifier_cursor, self.name, stored)
            self._cursor = self._saved = stored
        events = await _db(self.store.events_after, self._cursor, self.batch)
        config = await _db(self.config_loader) if events else None
        for event in events:
            assert config is not None
            try:
                await self._handle(event, config)
            except DeliveryError as exc:
                if exc.fatal:
                    raise
                log.warning(
                    "slack.notice_skipped",
                    event_id=event.id,
                    kind=event.kind,
                    incident=event.incident_id,
                    error=self.redactor.text(exc.message),
                )
            except NotFoundError as exc:
                log.warning("slack.notice_skipped", event_id=event.id, error=exc.message)
            self._cursor = event.seq
            await self._save_cursor()
        await self.flush()
        return len(events)

    async def flush(self, *, force: bool = False) -> None:
        """Send the edits whose coalescing window has passed (all of them with ``force``)."""
        now = time.monotonic()
        for key, pending in list(self._pending.items()):
            if not force and pending.due > now:
                continue
            del self._pending[key]
            try:
                await self._send_edit(pending)
            except DeliveryError as exc:
                if exc.fatal:
                    self._pending[key] = pending
                    raise
                log.warning(
                    "slack.edit_skipped",
                    channel=pending.channel,
                    ts=pending.ts,
                    error=self.redactor.text(exc.message),
                )
        await self._save_cursor()

    async def _save_cursor(self) -> None:
        """Persist the cursor, but never past an edit that is still waiting to be sent."""
        if self._cursor is None:
            return
        safe = self._cursor
        if self._pending:
            safe = min(safe, min(p.first_seq for p in self._pending.values()) - 1)
        if safe != self._saved:
            await _db(self.store.set_notifier_cursor, self.name, safe)
            self._saved = safe

    # ------------------------------------------------------------------ events

    async def _handle(self, event: StoredEvent, config: Config) -> None:
        kind = event.kind
        if kind not in _HANDLED:
            return
        thread = await self._thread(event, config)
        if thread is None or kind == INCIDENT_OPENED:
            return
        if kind == APPROVAL_REQUESTED:
            await self._post(
                thread, f"approval:{event.id}", blocks.approval_request(event), event.id
            )
        elif kind in _APPROVAL_ANSWERS:
            await self._approval_update(thread, event)
        elif kind == MANUAL_REQUESTED:
            await self._post(thread, f"task:{event.id}", blocks.task_request(event), event.id)
        elif kind == MANUAL_COMPLETED:
            requested = await self._requested(event, MANUAL_REQUESTED)
            if requested is not None:
                rendered = blocks.task_state(requested, event)
                await self._edit(thread, f"task:{requested.id}", rendered, event.seq)
        elif kind in _THREAD_LINES:
            line = blocks.run_line(event)
            if line is not None:
                await self._post(thread, f"event:{event.id}", line, event.id)
        await self._status(thread, event)

    async def _approval_update(self, thread: _Thread, event: StoredEvent) -> None:
        requested = await self._requested(event, APPROVAL_REQUESTED)
        if requested is not None:
            rendered = blocks.approval_state(requested, event)
            await self._edit(thread, f"approval:{requested.id}", rendered, event.seq)
        if event.kind == APPROVAL_BREAKGLASS:
            thread.breakglass = True
        user = _user_of(event.payload.get("user"))
        if thread.incident_channel and user is not None:
            await self._invite(thread, user)

    async def _requested(self, event: StoredEvent, kind: str) -> StoredEvent | None:
        """The request an answer belongs to: the newest ``kind`` event of the same run and
        gate (or task step) before ``event``."""
        gate = event.payload.get("gate")
        found = None
        for earlier in await _db(self.store.events, run_id=event.run_id):
            if earlier.seq >= event.seq:
                break
            if earlier.kind != kind:
                continue
            same = (
                earlier.payload.get("gate") == gate
                if kind == APPROVAL_REQUESTED
                else earlier.step_id == event.step_id
            )
            if same:
                found = earlier
        return found

    async def _status(self, thread: _Thread, event: StoredEvent) -> None:
        """Edit the root's status line (and the channel topic) after ``event``."""
        top = thread.opened is None or event.run_id in (None, thread.opened.run_id)
        status = blocks.status_text(event, top_level=top)
        if status is None:
            return
        if thread.own_root:
            rendered = blocks.root_message(
                thread.incident,
                status=status,
                run_id=thread.opened.run_id if thread.opened else None,
                requester=thread.opened.actor if thread.opened else None,
                breakglass=thread.breakglass,
            )
            self._schedule(thread.channel, thread.ts, rendered, event.seq)
        if thread.incident_channel:
            topic = blocks.channel_topic(thread.incident, status)
            self._schedule(thread.channel, None, topic, event.seq)

    # ------------------------------------------------------------------ the incident's place

    async def _thread(self, event: StoredEvent, config: Config) -> _Thread | None:
        """Where the event's incident lives in Slack; posts the root first if it has none
        yet (normally at ``incident.opened``; later if that post failed)."""
        incident_id = event.incident_id
        cached = self._threads.get(incident_id)
        if cached is not None:
            self._threads.move_to_end(incident_id)
            return cached
        incident = await _db(self.store.get_incident, incident_id)
        if event.kind == INCIDENT_OPENED:
            opened: StoredEvent | None = event  # the usual case: no need to read it back
        else:
            opened = next(
                (e for e in await _db(self.store.events, incident_id) if e.kind == INCIDENT_OPENED),
                None,
            )
        if not (incident.slack_channel and incident.slack_thread_ts):
            incident = await self._post_root(incident, opened, config, event.seq)
        if not (incident.slack_channel and incident.slack_thread_ts):
            return None
        root = await _db(self.store.slack_message, incident_id, ROOT)
        channel_ref = await _db(self.store.slack_message, incident_id, CHANNEL)
        thread = _Thread(
            incident=incident,
            channel=incident.slack_channel,
            ts=incident.slack_thread_ts,
            own_root=root is not None and root.ts == incident.slack_thread_ts,
            incident_channel=channel_ref is not None
            and channel_ref.channel == incident.slack_channel,
            opened=opened,
            breakglass=await self._breakglass_used(opened),
        )
        if thread.incident_channel and opened is not None:
            requester = _user_of(opened.actor)
            if requester is not None:
                thread.invited.add(requester)  # invited when the channel was made
        self._threads[incident_id] = thread
        while len(self._threads) > CACHE_INCIDENTS:
            self._threads.popitem(last=False)
        return thread

    async def _breakglass_used(self, opened: StoredEvent | None) -> bool:
        """Whether the incident's run passed a gate by break-glass (after a restart the
        event may be behind the cursor; the run record remembers)."""
        if opened is None or opened.run_id is None:
            return False
        try:
            run = await _db(self.store.get_run, opened.run_id)
        except NotFoundError:
            return False
        return run.breakglass

    async def _post_root(
        self, incident: Incident, opened: StoredEvent | None, config: Config, seq: int
    ) -> Incident:
        channel = await self._channel(config.slack.channel)
        own_channel = None
        if config.slack.incident_channels:
            own_channel = await self._incident_channel(incident, opened)
            channel = own_channel or channel
        status = (blocks.status_text(opened) if opened is not None else None) or "opened"
        rendered = blocks.root_message(
            incident,
            status=status,
            run_id=opened.run_id if opened else None,
            requester=opened.actor if opened else None,
        )
        marker = opened.id if opened is not None else f"root:{incident.id}"
        posted_channel, ts = await self._post_message(
            incident.id, ROOT, channel=channel, thread_ts=None, rendered=rendered, marker=marker
        )
        claimed = await _db(self.store.claim_incident_slack, incident.id, posted_channel, ts)
        if (claimed.slack_channel, claimed.slack_thread_ts) != (posted_channel, ts):
            # The slack.post action made the root meanwhile: ours would be a second one.
            await self._delete(posted_channel, ts)
            return claimed
        if own_channel is not None:
            self._schedule(own_channel, None, blocks.channel_topic(claimed, status), seq)
            announce = blocks.channel_announcement(claimed, own_channel)
            try:
                await self._post_message(
                    incident.id,
                    ANNOUNCE,
                    channel=await self._channel(config.slack.channel),
                    thread_ts=None,
                    rendered=announce,
                    marker=marker,
                )
            except DeliveryError as exc:
                if exc.fatal:
                    raise
                # Only a pointer: the incident's own channel works without it.
                log.warning("slack.announce_skipped", incident=incident.id, error=exc.message)
        return claimed

    async def _channel(self, channel: str) -> str:
        """The ID of a channel irbot.yaml may give by name (:mod:`bot.slack.channels`)."""
        return await self._request(
            f"looking up channel {channel}", partial(channel_ids.resolve, self.client, channel)
        )

    async def _incident_channel(self, incident: Incident, opened: StoredEvent | None) -> str | None:
        """The incident's own channel, created (and the requester invited) if needed;
        None if Slack refuses (the incident then lives in the notification channel)."""
        ref = await _db(self.store.slack_message, incident.id, CHANNEL)
        if ref is not None:
            return ref.channel
        for attempt in range(1, NAME_TRIES + 1):
            name = channel_name(incident.number, incident.playbook, attempt)
            try:
                response = await self._request(
                    f"creating channel #{name}",
                    partial(self.client.conversations_create, name=name),
                )
                channel = str(response["channel"]["id"])
            except DeliveryError as exc:
                if exc.fatal:
                    raise
                if exc.error != "name_taken":
                    log.warning("slack.channel_refused", incident=incident.id, error=exc.message)
                    return None
                made = await self._made_before_a_crash(name, incident)
                if made is None:
                    continue
                channel = made
            # ts holds the channel's name here: a channel record is complete once made.
            await _db(self.store.set_slack_message, incident.id, CHANNEL, channel, name)
            requester = _user_of(opened.actor) if opened is not None else None
            if requester is not None:
                await self._invite_user(channel, requester)
            return channel
        log.warning("slack.channel_names_taken", incident=incident.id, tried=NAME_TRIES)
        return None

    async def _made_before_a_crash(self, name: str, incident: Incident) -> str | None:
        """The taken channel ``name`` if it is this incident's own, made by irbot before
        a crash kept the notifier from recording it (else a second channel, ``-2``,
        would be made): created by irbot's bot user after the incident opened, and
        nobody invited yet (which also leaves alone another irbot deployment's channel
        on the same Slack app: it invites its requester right after making one)."""
        try:
            found = await self._request(
                f"looking up channel #{name}", partial(channels.find, self.client, name)
            )
            me = await self._bot_user()
        except DeliveryError as exc:
            if exc.fatal:
                raise
            log.info("slack.channel_not_checked", channel=name, error=exc.message)
            return None
        if found is None or me is None or found.get("creator") != me:
            return None
        if int(found.get("num_members") or 0) > 1:
            return None
        if float(found.get("created") or 0) < incident.opened_at.timestamp() - CLOCK_SKEW:
            return None  # an older incident's, from before the numbers started again
        log.info("slack.channel_adopted", incident=incident.id, channel=found["id"])
        return str(found["id"])

    async def _bot_user(self) -> str | None:
        if self._me is None:
            response = await self._request("asking Slack who irbot is", self.client.auth_test)
            self._me = str(response.get("user_id") or "") or None
        return self._me

    async def _invite(self, thread: _Thread, user: str) -> None:
        if user in thread.invited:
            return
        thread.invited.add(user)
        await self._invite_user(thread.channel, user)

    async def _invite_user(self, channel: str, user: str) -> None:
        try:
            await self._request(
                f"inviting {user} to {channel}",
                lambda: self.client.conversations_invite(channel=channel, users=user),
            )
        except DeliveryError as exc:
            if exc.fatal:
                raise
            if exc.error not in _INVITE_OK:
                log.warning("slack.invite_failed", channel=channel, user=user, error=exc.message)

    # ------------------------------------------------------------------ posting and editing

    async def _post(self, thread: _Thread, key: str, rendered: Rendered, marker: str) -> None:
        incident = thread.incident.id
        await self._post_message(
            incident,
            key,
            channel=thread.channel,
            thread_ts=thread.ts,
            rendered=rendered,
            marker=marker,
        )

    async def _post_message(
        self,
        incident_id: str,
        key: str,
        *,
        channel: str,
        thread_ts: str | None,
        rendered: Rendered,
        marker: str,
    ) -> tuple[str, str]:
        """Post once per (incident, key); returns (channel id, ts) of the message."""
        ref = await _db(self.store.slack_message, incident_id, key)
        if ref is not None and ref.ts is not None:
            return ref.channel, ref.ts
        searchable = is_id(channel)
        if ref is not None and searchable:
            found = await self._find(channel, thread_ts, marker)
            if found is not None:
                await _db(self.store.set_slack_message, incident_id, key, channel, found)
                return channel, found
        if ref is None:
            await _db(self.store.set_slack_message, incident_id, key, channel, None)
        safe = self._redacted(rendered)

        async def send() -> tuple[str, str]:
            await self._pace(channel)
            response = await self.client.chat_postMessage(
                channel=channel,
                thread_ts=thread_ts,
                text=safe.text,
                blocks=safe.blocks,
                metadata={"event_type": EVENT_TYPE, "event_payload": {"event": marker}},
                unfurl_links=False,
                unfurl_media=False,
            )
            return str(response["channel"]), str(response["ts"])

        async def already() -> tuple[str, str] | None:
            if not searchable:
                return None
            found = await self._find(channel, thread_ts, marker)
            return None if found is None else (channel, found)

        posted_channel, ts = await self._request(f"posting {key}", send, recheck=already)
        await _db(self.store.set_slack_message, incident_id, key, posted_channel, ts)
        return posted_channel, ts

    async def _find(self, channel: str, thread_ts: str | None, marker: str) -> str | None:
        """The ts of the message posted earlier for ``marker`` (by its metadata)."""
        cursor: str | None = None
        for _ in range(LOOKUP_PAGES):
            if thread_ts is not None:
                lookup = partial(self.client.conversations_replies, ts=thread_ts)
            else:
                lookup = partial(self.client.conversations_history)
            page = await self._request(
                f"searching {channel} for an earlier post",
                partial(
                    lookup, channel=channel, include_all_metadata=True, limit=200, cursor=cursor
                ),
            )
            for message in page.get("messages") or []:
                metadata = message.get("metadata") or {}
                payload = metadata.get("event_payload") or {}
                if metadata.get("event_type") == EVENT_TYPE and payload.get("event") == marker:
                    return str(message["ts"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if cursor is None:
                break
        return None

    async def _edit(self, thread: _Thread, key: str, rendered: Rendered, seq: int) -> None:
        ref = await _db(self.store.slack_message, thread.incident.id, key)
        if ref is None or ref.ts is None:
            log.info("slack.edit_without_message", incident=thread.incident.id, key=key)
            return
        self._schedule(ref.channel, ref.ts, rendered, seq)

    def _schedule(self, channel: str, ts: str | None, content: Rendered | str, seq: int) -> None:
        key = (channel, ts or "topic")
        pending = self._pending.get(key)
        if pending is not None:
            pending.content = content
            return
        due = time.monotonic() + self.coalesce_seconds
        self._pending[key] = _Pending(channel, ts, content, seq, due)

    async def _send_edit(self, pending: _Pending) -> None:
        channel, ts, content = pending.channel, pending.ts, pending.content
        if isinstance(content, str):
            topic = self.redactor.text(content)
            await self._request(
                f"setting the topic of {channel}",
                lambda: self.client.conversations_setTopic(channel=channel, topic=topic),
            )
            return
        safe = self._redacted(content)
        await self._request(
            f"updating message {ts} in {channel}",
            lambda: self.client.chat_update(
                channel=channel, ts=str(ts), text=safe.text, blocks=safe.blocks
            ),
        )

    async def _delete(self, channel: str, ts: str) -> None:
        try:
            await self._request(
                f"deleting duplicate root {ts}",
                lambda: self.client.chat_delete(channel=channel, ts=ts),
            )
        except DeliveryError as exc:
            if exc.fatal:
                raise
            log.warning("slack.duplicate_root_left", channel=channel, ts=ts, error=exc.message)

    def _redacted(self, rendered: Rendered) -> Rendered:
        """Timeline payloads are redacted already; this is the second net."""
        return Rendered(self.redactor.text(rendered.text), self.redactor(rendered.blocks))

    async def _pace(self, channel: str) -> None:
        """At most one post per ``post_interval`` per channel (Slack: about 1/s)."""
        last = self._last_post.get(channel)
        if last is not None:
            wait = last + self.post_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        self._last_post[channel] = time.monotonic()

    async def _request(
        self,
        doing: str,
        call: Callable[[], Awaitable[T]],
        *,
        recheck: Callable[[], Awaitable[T | None]] | None = None,
    ) -> T:
        """Call Slack, retrying transient failures a few times with backoff (Retry-After
        when Slack gives one). After an ambiguous failure ``recheck`` looks for the effect
        before trying again, so a post that went through is not made twice."""
        for attempt in range(1, self.attempts + 1):
            try:
                return await call()
            except SlackApiError as exc:
                failure = _classify(exc, doing)
            except (aiohttp.ClientError, TimeoutError) as exc:
                failure = DeliveryError(
                    f"{doing}: cannot reach Slack ({type(exc).__name__})",
                    error="network",
                    retryable=True,
                    ambiguous=True,
                )
            except SlackClientError as exc:
                failure = DeliveryError(f"{doing}: {type(exc).__name__}", error="client")
            if not failure.retryable or attempt == self.attempts:
                raise failure
            pause = failure.retry_after or self.backoff_seconds * 2 ** (attempt - 1)
            log.info("slack.retrying", doing=doing, error=failure.error, attempt=attempt)
            await asyncio.sleep(pause)
            if failure.ambiguous and recheck is not None:
                found = await recheck()
                if found is not None:
                    return found
        raise AssertionError("unreachable: the last attempt raises")


_STORE_THREADS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="irbot-notifier")
"""The notifier's own threads: in `irbot serve` the default pool (6 threads on 2 cores)
also carries the engine's and the handlers' store calls, and a root message waited in
its queue behind a new run's work."""


def _wake(waker: asyncio.Future[None]) -> None:
    if not waker.done():
        waker.set_result(None)


async def _db(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """The store is synchronous: keep its calls off the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_STORE_THREADS, partial(fn, *args, **kwargs))
