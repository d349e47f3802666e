"""Webhook triggers, the pure part: signatures, payloads -> events, events -> runs.

Nothing here reads a request or a database: :mod:`bot.webhooks` reads the bytes, asks
these functions what they mean, and calls :class:`bot.service.Service`.

::

    raw body ──verify_*──> parse_json ──*_delivery / *_event──> TriggerEvent(s)
                                                                    │
        irbot.yaml ``triggers:`` + playbooks' ``triggers:`` ──route──> Match(playbook, inputs)

Routing: routes in irbot.yaml are tried first, in file order, then the playbooks' own
``triggers`` (playbooks by name, triggers in order); the first that matches starts the
one run of the delivery. A route's ``match`` maps dotted paths into ``event`` to the
exact value wanted; a key ending in ``_matches`` holds a regular expression searched in
the field named without the suffix (``title_matches: "(?i)leak"``). Inputs are
templates over ``event`` (:mod:`bot.core.expressions`); one rendering to nothing
(``None``) is left out, so the playbook's default applies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from bot.core import expressions
from bot.core.config import TriggerRoute
from bot.core.errors import ConfigError, ExpressionError, IrbotError, UsageError
from bot.core.playbook import (
    AlertmanagerTrigger,
    GenericTrigger,
    GithubSecretScanningTrigger,
    PagerDutyTrigger,
    Trigger,
)
from bot.core.redaction import Redactor

MAX_BODY = 1024 * 1024
"""Largest body accepted (1 MiB); PagerDuty, Alertmanager and GitHub stay far below."""

GENERIC_TOLERANCE = timedelta(seconds=300)
"""How far X-Irbot-Timestamp may be from irbot's clock, either way."""

MAX_SIGNATURES = 16
"""More ``v1=`` entries than any rotation needs are refused, not all hashed."""

DELIVERY_ID = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")
SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")

Source = Literal["pagerduty", "alertmanager", "github_secret_scanning", "generic"]

STARTING_KIND: dict[str, str | None] = {
    "pagerduty": "incident.triggered",
    "alertmanager": "firing",
    "github_secret_scanning": "created",
    "generic": None,
}
"""The event kind irbot.yaml routes start on (None: every event of the source)."""


# --------------------------------------------------------------------------- errors


class WebhookError(UsageError):
    """A delivery irbot refuses; ``status`` is the HTTP answer, ``result`` the metric."""

    status: ClassVar[int] = 400
    result: ClassVar[str] = "invalid"


class Unauthorized(WebhookError):
    """Missing, malformed, wrong or stale signature or token."""

    status = 401
    result = "unauthorized"


class PayloadTooLarge(WebhookError):
    status = 413


class UnsupportedMediaType(WebhookError):
    status = 415


class NotConfigured(WebhookError):
    """No secret is set for this source: refusing beats accepting unsigned requests."""

    status = 503
    result = "unauthorized"


class RouteError(IrbotError):
    """A route matched but is unusable (its inputs do not render, a bad regex): the
    sender is not at fault, the route in irbot.yaml or the playbook is."""


# --------------------------------------------------------------------------- signatures


def hmac_sha256(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _same(offered: str, expected: str) -> bool:
    """Constant-time comparison of two hex digests (anything not hex never matches)."""
    return bool(_HEX64.match(offered)) and hmac.compare_digest(offered.lower(), expected)


def verify_pagerduty(body: bytes, header: str | None, secrets: Sequence[str]) -> None:
    """PagerDuty v3: ``v1=<hex>[,v1=<hex>…]`` over the raw body; any pair of offered
    signature and configured secret may match (both sides rotate)."""
    if not header:
        raise Unauthorized("missing X-PagerDuty-Signature header")
    offered = [p.strip()[3:] for p in header.split(",") if p.strip().startswith("v1=")]
    if not offered:
        raise Unauthorized("X-PagerDuty-Signature holds no v1= signature")
    if len(offered) > MAX_SIGNATURES:
        raise Unauthorized(f"X-PagerDuty-Signature holds more than {MAX_SIGNATURES} signatures")
    expected = [hmac_sha256(secret, body) for secret in secrets]
    if not any(_same(o, e) for o in offered for e in expected):
        raise Unauthorized("X-PagerDuty-Signature does not match the body")


def verify_github(body: bytes, header: str | None, secret: str) -> None:
    """GitHub: ``X-Hub-Signature-256: sha256=<hex>`` over the raw body."""
    if not header:
        raise Unauthorized("missing X-Hub-Signature-256 header")
    scheme, _, offered = header.strip().partition("=")
    if scheme != "sha256" or not _same(offered, hmac_sha256(secret, body)):
        raise Unauthorized("X-Hub-Signature-256 does not match the body")


def verify_bearer(header: str | None, token: str) -> None:
    """Alertmanager: ``Authorization: Bearer <token>`` (its ``http_config.authorization``)."""
    if not header:
        raise Unauthorized("missing Authorization header (Bearer token)")
    scheme, _, offered = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        offered.strip().encode("utf-8", "replace"), token.encode("utf-8", "replace")
    ):
        raise Unauthorized("the Bearer token is wrong")


def generic_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` + HMAC-SHA256 of ``"{timestamp}.{body}"``: what a generic sender sends."""
    return "sha256=" + hmac_sha256(secret, timestamp.encode() + b"." + body)


def verify_generic(
    body: bytes, signature: str | None, timestamp: str | None, secret: str, now: datetime
) -> None:
    """The generic scheme: the signed timestamp binds the body to a moment, so a
    captured request cannot be replayed after :data:`GENERIC_TOLERANCE`."""
    if not signature:
        raise Unauthorized("missing X-Irbot-Signature header")
    if not timestamp:
        raise Unauthorized("missing X-Irbot-Timestamp header (Unix seconds)")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise Unauthorized("X-Irbot-Timestamp must be Unix seconds, e.g. $(date +%s)")
    scheme, _, offered = signature.strip().partition("=")
    expected = generic_signature(secret, timestamp, body).removeprefix("sha256=")
    if scheme != "sha256" or not _same(offered, expected):
        raise Unauthorized("X-Irbot-Signature does not match the timestamp and body")
    skew = abs(now.timestamp() - int(timestamp))
    if skew > GENERIC_TOLERANCE.total_seconds():
        raise Unauthorized(
            f"X-Irbot-Timestamp is {int(skew)} s from irbot's clock (at most "
            f"{int(GENERIC_TOLERANCE.total_seconds())} s): a replay, or a wrong clock"
        )


# --------------------------------------------------------------------------- bodies


def check_content_type(value: str | None) -> None:
    media = (value or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        got = media or "none"
        raise UnsupportedMediaType(f"expected Content-Type application/json, got {got}")


def parse_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a WebhookError saying what is wrong with it."""
    if not body.strip():
        raise WebhookError("the body is empty; expected a JSON object")
    try:
        data = json.loads(body)
    except RecursionError:
        raise WebhookError("the JSON body nests too deeply") from None
    except UnicodeDecodeError:
        raise WebhookError("the body is not UTF-8 text") from None
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        raise WebhookError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WebhookError(f"expected a JSON object, got {_kind(data)}")
    return data


def check_delivery_id(value: str | None, header: str) -> str:
    if not value:
        raise WebhookError(f"missing {header} header (a unique id per delivery)")
    if not DELIVERY_ID.match(value):
        raise WebhookError(f"{header} must be 1-200 characters of A-Z a-z 0-9 . _ : -")
    return value


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def _at(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _text(data: Any, *path: str, what: str) -> str:
    value = _at(data, *path)
    if not isinstance(value, str) or not value:
        raise WebhookError(f"{what}: {'.'.join(path)} must be a non-empty string")
    return value


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise WebhookError(f"{what} must be an object of strings")
    return {str(k): v for k, v in value.items()}


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class TriggerEvent:
    """One event a route can match: ``fields`` is ``event`` in templates; ``trigger``
    is what the run keeps (``ctx.trigger``, the timeline) — identifiers, never secrets."""

    source: Source
    kind: str
    fields: Mapping[str, Any]
    trigger: Mapping[str, Any]
    name: str | None = None
    """The generic source's name (``/webhooks/generic/<name>``)."""


@dataclass(frozen=True)
class PagerDutyDelivery:
    event_id: str
    event_type: str
    incident_id: str | None
    """The PagerDuty incident (``data.id``) of ``incident.*`` events."""
    event: TriggerEvent
    summary: str


def pagerduty_delivery(data: Mapping[str, Any]) -> PagerDutyDelivery:
    """A v3 webhook (``{"event": {...}}``). ``event`` exposes: type, id, occurred_at,
    incident_id, number, title, status, urgency, incident_key, html_url, priority,
    service.id, service.name, escalation_policy.id, escalation_policy.name."""
    what = "PagerDuty payload"
    if not isinstance(data.get("event"), Mapping):
        raise WebhookError(f"{what}: expected an 'event' object (webhooks v3)")
    event_id = _text(data, "event", "id", what=what)
    event_type = _text(data, "event", "event_type", what=what)
    incident = _at(data, "event", "data")
    incident_id = None
    if event_type.startswith("incident."):
        incident_id = _text(data, "event", "data", "id", what=what)
    fields: dict[str, Any] = {
        "type": event_type,
        "id": event_id,
        "occurred_at": _opt_str(_at(data, "event", "occurred_at")),
        "incident_id": incident_id,
        "number": _opt_int(_at(incident, "number")),
        "title": _opt_str(_at(incident, "title")),
        "status": _opt_str(_at(incident, "status")),
        "urgency": _opt_str(_at(incident, "urgency")),
        "incident_key": _opt_str(_at(incident, "incident_key")),
        "html_url": _opt_str(_at(incident, "html_url")),
        "priority": _opt_str(_at(incident, "priority", "summary")),
        "service": {
            "id": _opt_str(_at(incident, "service", "id")),
            "name": _opt_str(_at(incident, "service", "summary")),
        },
        "escalation_policy": {
            "id": _opt_str(_at(incident, "escalation_policy", "id")),
            "name": _opt_str(_at(incident, "escalation_policy", "summary")),
        },
    }
    trigger = {
        "source": "pagerduty",
        "event_id": event_id,
        "event_type": event_type,
        "incident_id": incident_id,
        "incident_number": fields["number"],
        "service_id": fields["service"]["id"],
        "html_url": fields["html_url"],
    }
    number = f"#{fields['number']}" if fields["number"] is not None else incident_id
    title = f" ({fields['title']})" if fields["title"] else ""
    return PagerDutyDelivery(
        event_id=event_id,
        event_type=event_type,
        incident_id=incident_id,
        event=TriggerEvent("pagerduty", event_type, fields, _compact(trigger)),
        summary=f"PagerDuty incident {number}{title}",
    )


@dataclass(frozen=True)
class AlertGroup:
    group_key: str
    status: str
    """``firing`` or ``resolved`` (the group's, not each alert's)."""
    alerts: tuple[TriggerEvent, ...]
    """One event per firing alert, in the order Alertmanager sent them."""
    summary: str


def alertmanager_group(data: Mapping[str, Any]) -> AlertGroup:
    """An Alertmanager webhook (version 4). Each firing alert is an event exposing:
    labels (the group's common labels, overlaid by the alert's own), annotations,
    alertname, status, fingerprint, starts_at, generator_url, group_key, group_labels,
    receiver, external_url."""
    what = "Alertmanager payload"
    group_key = _text(data, "groupKey", what=what)
    status = _text(data, "status", what=what)
    if status not in ("firing", "resolved"):
        raise WebhookError(f"{what}: status must be firing or resolved, got {status!r}")
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise WebhookError(f"{what}: alerts must be an array")
    common = _str_map(data.get("commonLabels"), f"{what}: commonLabels")
    common_notes = _str_map(data.get("commonAnnotations"), f"{what}: commonAnnotations")
    group_labels = _str_map(data.get("groupLabels"), f"{what}: groupLabels")
    receiver = _opt_str(data.get("receiver"))
    external = _opt_str(data.get("externalURL"))
    events = []
    for index, alert in enumerate(alerts):
        if not isinstance(alert, Mapping):
            raise WebhookError(f"{what}: alerts[{index}] must be an object")
        labels = {**common, **_str_map(alert.get("labels"), f"{what}: alerts[{index}].labels")}
        notes = _str_map(alert.get("annotations"), f"{what}: alerts[{index}].annotations")
        alert_status = _opt_str(alert.get("status")) or status
        if alert_status != "firing":
            continue
        fields = {
            "labels": labels,
            "annotations": {**common_notes, **notes},
            "alertname": labels.get("alertname"),
            "status": alert_status,
            "fingerprint": _opt_str(alert.get("fingerprint")),
            "starts_at": _opt_str(alert.get("startsAt")),
            "generator_url": _opt_str(alert.get("generatorURL")),
            "group_key": group_key,
            "group_labels": group_labels,
            "receiver": receiver,
            "external_url": external,
        }
        trigger = {
            "source": "alertmanager",
            "group_key": group_key,
            "alertname": fields["alertname"],
            "fingerprint": fields["fingerprint"],
            "receiver": receiver,
            "external_url": external,
        }
        events.append(TriggerEvent("alertmanager", "firing", fields, _compact(trigger)))
    shown = ", ".join(f"{k}={v}" for k, v in sorted(group_labels.items())) or group_key
    return AlertGroup(group_key, status, tuple(events), f"Alertmanager alert group {shown}")


def github_event(event_name: str | None, data: Mapping[str, Any]) -> TriggerEvent | None:
    """A ``secret_scanning_alert`` delivery, or None for any other event (``ping`` …).

    ``event`` exposes: action, alert_number, secret_type, secret_type_display_name,
    state, validity, html_url, url, created_at, repository (full name), repository_url,
    organization, sender. Never the secret: the payload's ``alert.secret`` is not read.
    """
    if event_name != "secret_scanning_alert":
        return None
    what = "GitHub secret_scanning_alert payload"
    action = _text(data, "action", what=what)
    if not isinstance(data.get("alert"), Mapping):
        raise WebhookError(f"{what}: expected an 'alert' object")
    number = _opt_int(_at(data, "alert", "number"))
    if number is None:
        raise WebhookError(f"{what}: alert.number must be a number")
    secret_type = _text(data, "alert", "secret_type", what=what)
    repository = _text(data, "repository", "full_name", what=what)
    fields = {
        "action": action,
        "alert_number": number,
        "secret_type": secret_type,
        "secret_type_display_name": _opt_str(_at(data, "alert", "secret_type_display_name")),
        "state": _opt_str(_at(data, "alert", "state")),
        "validity": _opt_str(_at(data, "alert", "validity")),
        "html_url": _opt_str(_at(data, "alert", "html_url")),
        "url": _opt_str(_at(data, "alert", "url")),
        "created_at": _opt_str(_at(data, "alert", "created_at")),
        "repository": repository,
        "repository_url": _opt_str(_at(data, "repository", "html_url")),
        "organization": _opt_str(_at(data, "organization", "login")),
        "sender": _opt_str(_at(data, "sender", "login")),
    }
    trigger = {
        "source": "github_secret_scanning",
        "repository": repository,
        "alert_number": number,
        "secret_type": secret_type,
        "html_url": fields["html_url"],
    }
    return TriggerEvent("github_secret_scanning", action, fields, _compact(trigger))


def generic_event(name: str, data: Mapping[str, Any]) -> TriggerEvent:
    """The whole JSON object is ``event``, with fields named like secrets (``secret``,
    ``token``, ``password`` …) and well-known credential formats masked first."""
    fields = Redactor()(dict(data))
    trigger = {"source": "generic", "generic_source": name}
    return TriggerEvent("generic", "event", fields, trigger, name=name)


def _compact(trigger: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in trigger.items() if v is not None}


# --------------------------------------------------------------------------- routing


@dataclass(frozen=True)
class Match:
    """What one delivery starts."""

    playbook: str
    inputs: dict[str, Any] = field(hash=False)
    route: str
    """Which route matched, for the log and the answer."""
    event: TriggerEvent


def route(
    events: Iterable[TriggerEvent],
    routes: Sequence[TriggerRoute],
    triggers: Mapping[str, Sequence[Trigger]],
) -> Match | None:
    """The first route (irbot.yaml, then playbooks' own triggers) matching an event.

    Raises RouteError when the route that matches cannot be used.
    """
    for event in events:
        for index, config_route in enumerate(routes):
            where = f"irbot.yaml triggers[{index}] ({config_route.source} -> "
            where += f"{config_route.playbook})"
            if _route_applies(config_route, event, where):
                inputs = _render(config_route.inputs, event, where)
                return Match(config_route.playbook, inputs, where, event)
        for playbook in sorted(triggers):
            for index, trigger in enumerate(triggers[playbook]):
                where = f"playbook {playbook} triggers[{index}] ({trigger.kind})"
                if _trigger_applies(trigger, event, where):
                    return Match(playbook, _render(trigger.inputs, event, where), where, event)
    return None


def _route_applies(config_route: TriggerRoute, event: TriggerEvent, where: str) -> bool:
    if config_route.source != event.source:
        return False
    if event.source == "generic" and config_route.generic_source != event.name:
        return False
    starting = STARTING_KIND[event.source]
    if starting is not None and event.kind != starting:
        return False
    return matches(event.fields, config_route.match, where)


def _trigger_applies(trigger: Trigger, event: TriggerEvent, where: str) -> bool:
    fields = event.fields
    if isinstance(trigger, PagerDutyTrigger):
        if event.source != "pagerduty" or event.kind != trigger.event:
            return False
        service = fields.get("service") or {}
        if trigger.service is not None and trigger.service not in (
            service.get("id"),
            service.get("name"),
        ):
            return False
        return trigger.title_matches is None or _search(
            trigger.title_matches, fields.get("title"), f"{where} title_matches"
        )
    if isinstance(trigger, AlertmanagerTrigger):
        if event.source != "alertmanager" or event.kind != "firing":
            return False
        labels = fields.get("labels") or {}
        if trigger.alertname is not None and labels.get("alertname") != trigger.alertname:
            return False
        return all(labels.get(k) == v for k, v in trigger.labels.items())
    if isinstance(trigger, GithubSecretScanningTrigger):
        if event.source != "github_secret_scanning" or event.kind != "created":
            return False
        return not trigger.secret_types or fields.get("secret_type") in trigger.secret_types
    if isinstance(trigger, GenericTrigger):
        if event.source != "generic" or event.name != trigger.source:
            return False
        return matches(fields, trigger.match, where)
    raise AssertionError(trigger)  # pragma: no cover - the union is closed


def lookup(fields: Mapping[str, Any], path: str) -> Any:
    """``labels.alertname`` -> ``fields["labels"]["alertname"]``; None when absent."""
    value: Any = fields
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def matches(fields: Mapping[str, Any], match: Mapping[str, str], where: str) -> bool:
    """Every ``path: value`` equals (``path_matches: regex``: is found in) the event."""
    for key, wanted in match.items():
        if key.endswith("_matches"):
            path = key.removesuffix("_matches")
            if not _search(wanted, lookup(fields, path), f"{where} match.{key}"):
                return False
            continue
        value = lookup(fields, key)
        if value is None or isinstance(value, Mapping | list):
            return False
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        if shown != wanted:
            return False
    return True


def _search(pattern: str, value: Any, where: str) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return re.search(pattern, value) is not None
    except re.error as exc:
        raise RouteError(f"{where}: not a valid regular expression: {exc}") from exc


def _render(templates: Mapping[str, str], event: TriggerEvent, where: str) -> dict[str, Any]:
    context = {"event": event.fields}
    inputs: dict[str, Any] = {}
    for name, template in templates.items():
        try:
            value = expressions.render(template, context)
        except ExpressionError as exc:
            raise RouteError(f"{where}: input {name!r}: {exc.message}") from exc
        if value is not None:
            inputs[name] = value
    return inputs


# --------------------------------------------------------------------------- keys


def run_key(prefix: str, *parts: str) -> str:
    """A start key (``[a-z0-9-]``, run id ``run-<key>``) unique to ``parts``: readable
    slug plus a digest, since ids that differ only in case or punctuation must not meet."""
    raw = "\x00".join(parts)
    slug = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")[:60].strip("-")
    digest = hashlib.sha256(f"{prefix}\x00{raw}".encode()).hexdigest()[:12]
    return "-".join(p for p in (prefix, slug, digest) if p)


# --------------------------------------------------------------------------- settings


def secret_list(value: str | None) -> tuple[str, ...]:
    """``"new,old"`` -> ``("new", "old")``: several secrets during a rotation."""
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def source_secrets(value: str | None, variable: str) -> dict[str, str]:
    """``"gitleaks=s1,trufflehog=s2"`` -> a mapping; ConfigError names the bad entry
    by position and source, never by its secret."""
    found: dict[str, str] = {}
    for position, entry in enumerate(secret_list(value), start=1):
        name, sep, secret = entry.partition("=")
        name = name.strip()
        if not sep or not secret.strip():
            raise ConfigError(f"{variable}: entry {position} is not source=secret")
        if not SOURCE_NAME.match(name):
            raise ConfigError(
                f"{variable}: entry {position}: the source name must be lower-case letters, "
                "digits, - and _ (it is the last part of /webhooks/generic/<source>)"
            )
        if name in found:
            raise ConfigError(f"{variable}: source {name!r} is given twice")
        found[name] = secret.strip()
    return found
