"""bot.core.webhooks: signatures (against the shared vectors), payloads -> events, routing."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from bot.core import webhooks as core
from bot.core.config import TriggerRoute
from bot.core.errors import ConfigError
from bot.core.playbook import Trigger

ROOT = Path(__file__).resolve().parents[1]
VECTORS = next(
    (p for p in (ROOT / "tests" / "vectors", Path("/work/shared/vectors")) if p.is_dir()),
    None,
)
needs_vectors = pytest.mark.skipif(VECTORS is None, reason="the shared request vectors")

TRIGGER = TypeAdapter(Trigger)
NOW = datetime(2026, 11, 20, 9, 15, tzinfo=UTC)


def vector(name: str) -> tuple[bytes, dict[str, Any]]:
    """The exact body bytes of a vector, and its meta (secret, headers) if it has one."""
    assert VECTORS is not None
    body = (VECTORS / f"{name}.json").read_bytes()
    meta_file = VECTORS / f"{name}.meta.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    return body, meta


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- signatures


@needs_vectors
def test_pagerduty_vector_verifies_and_its_stale_second_signature_is_ignored() -> None:
    """The vector's header holds the good signature and a stale one: it passes; the
    stale one alone, or a different secret, is refused."""
    body, meta = vector("pagerduty_incident_triggered")
    header = meta["headers"]["X-PagerDuty-Signature"]
    good, stale = header.split(",")
    core.verify_pagerduty(body, header, [meta["secret"]])
    core.verify_pagerduty(body, f"{stale},{good}", [meta["secret"]])
    with pytest.raises(core.Unauthorized, match="does not match"):
        core.verify_pagerduty(body, stale, [meta["secret"]])
    with pytest.raises(core.Unauthorized, match="does not match"):
        core.verify_pagerduty(body, header, ["another-secret"])
    with pytest.raises(core.Unauthorized, match="does not match"):
        core.verify_pagerduty(body + b" ", header, [meta["secret"]])


@needs_vectors
def test_pagerduty_secret_rotation_accepts_either_configured_secret() -> None:
    """PAGERDUTY_WEBHOOK_SECRET=new,old: a body signed with either secret passes."""
    body, meta = vector("pagerduty_incident_triggered")
    header = meta["headers"]["X-PagerDuty-Signature"]
    core.verify_pagerduty(body, header, ["whsec-new-one", meta["secret"]])
    core.verify_pagerduty(
        body, f"v1={sign('whsec-new-one', body)}", core.secret_list("a, whsec-new-one")
    )


def test_pagerduty_header_shapes_are_refused_with_reasons() -> None:
    """Missing header, no v1= entry, non-hex junk and too many entries: all 401."""
    body = b"{}"
    good = f"v1={sign('s', body)}"
    cases = {
        None: "missing",
        "": "missing",
        "v0=abc": "no v1=",
        "v1=ü" + "0" * 63: "does not match",
        ",".join(["v1=" + "0" * 64] * 17 + [good]): "more than 16",
    }
    for header, reason in cases.items():
        with pytest.raises(core.Unauthorized, match=reason):
            core.verify_pagerduty(body, header, ["s"])
    core.verify_pagerduty(body, good.upper().replace("V1=", "v1="), ["s"])


@needs_vectors
def test_github_vector_verifies_and_forgeries_do_not() -> None:
    """X-Hub-Signature-256 of the vector passes; a changed body, a sha1= scheme or a
    missing header are 401."""
    body, meta = vector("github_secret_scanning_alert")
    header = meta["headers"]["X-Hub-Signature-256"]
    core.verify_github(body, header, meta["secret"])
    with pytest.raises(core.Unauthorized, match="does not match"):
        core.verify_github(body.replace(b"42", b"43"), header, meta["secret"])
    with pytest.raises(core.Unauthorized, match="does not match"):
        core.verify_github(body, header.replace("sha256=", "sha1="), meta["secret"])
    with pytest.raises(core.Unauthorized, match="missing"):
        core.verify_github(body, None, meta["secret"])


def test_bearer_token_is_compared_exactly() -> None:
    """Alertmanager's Bearer token: the right one passes (any case of 'Bearer'); a wrong,
    a prefix, another scheme or none is 401."""
    core.verify_bearer("Bearer am-token-123", "am-token-123")
    core.verify_bearer("bearer am-token-123", "am-token-123")
    for header in ("Bearer am-token-12", "Bearer am-token-1234", "Basic am-token-123", "", None):
        with pytest.raises(core.Unauthorized):
            core.verify_bearer(header, "am-token-123")


def test_generic_signature_binds_timestamp_and_body_and_expires() -> None:
    """sha256=HMAC(secret, "{ts}.{body}") passes within 300 s either way; a changed body,
    a changed timestamp, or the same request 301 s later is refused."""
    body = b'{"rule": "aws-access-key"}'
    ts = str(int(NOW.timestamp()))
    signature = core.generic_signature("gl-secret", ts, body)
    assert signature == "sha256=" + sign("gl-secret", f"{ts}.".encode() + body)
    core.verify_generic(body, signature, ts, "gl-secret", NOW)
    core.verify_generic(body, signature, ts, "gl-secret", NOW + timedelta(seconds=300))
    core.verify_generic(body, signature, ts, "gl-secret", NOW - timedelta(seconds=300))
    with pytest.raises(core.Unauthorized, match="301 s from irbot's clock"):
        core.verify_generic(body, signature, ts, "gl-secret", NOW + timedelta(seconds=301))
    with pytest.raises(core.Unauthorized, match="does not match"):
        core.verify_generic(body + b" ", signature, ts, "gl-secret", NOW)
    with pytest.raises(core.Unauthorized, match="does not match"):
        core.verify_generic(body, signature, str(int(ts) + 1), "gl-secret", NOW)
    with pytest.raises(core.Unauthorized, match="Unix seconds"):
        core.verify_generic(body, signature, "2026-11-20T09:15:00Z", "gl-secret", NOW)
    with pytest.raises(core.Unauthorized, match="missing X-Irbot-Timestamp"):
        core.verify_generic(body, signature, None, "gl-secret", NOW)


# --------------------------------------------------------------------------- bodies


def test_bodies_that_are_not_a_json_object_get_clear_messages() -> None:
    """Empty, broken, non-UTF-8, too deeply nested, an array, a huge integer: each a
    WebhookError (400) saying what is wrong, never another exception."""
    cases = {
        b"": "empty",
        b"{not json": "not valid JSON",
        b"\xff\xfe{": "not",
        b"[" * 100_000 + b"]" * 100_000: "nests too deeply",
        b"[1, 2]": "got an array",
        b'"text"': "got a string",
        b"1" * 5000: "not valid JSON",
    }
    for body, reason in cases.items():
        with pytest.raises(core.WebhookError, match=reason) as caught:
            core.parse_json(body)
        assert caught.value.status == 400
    assert core.parse_json(b' {"a": 1} ') == {"a": 1}


def test_content_type_must_be_json() -> None:
    """application/json (any case, with a charset) passes; form posts and none are 415."""
    core.check_content_type("application/json")
    core.check_content_type("Application/JSON; charset=utf-8")
    for value in ("application/x-www-form-urlencoded", "text/plain", None):
        with pytest.raises(core.UnsupportedMediaType) as caught:
            core.check_content_type(value)
        assert caught.value.status == 415


# --------------------------------------------------------------------------- events


@needs_vectors
def test_pagerduty_vector_becomes_an_event_with_the_incident_id() -> None:
    """The triggered vector exposes the PagerDuty incident, service and title; the
    trigger carries source and incident_id (what pagerduty.note reads)."""
    body, _ = vector("pagerduty_incident_triggered")
    delivery = core.pagerduty_delivery(core.parse_json(body))
    assert delivery.event_id == "01DEN4HPBQAAAG05V5QQYBRZMF"
    assert delivery.incident_id == "Q2X5C7QWER9ABC"
    fields = delivery.event.fields
    assert fields["service"] == {"id": "PSVC123", "name": "cs-mcp production"}
    assert fields["title"].startswith("GuardDuty: anomalous API calls")
    assert fields["number"] == 4213
    assert delivery.event.trigger["source"] == "pagerduty"
    assert delivery.event.trigger["incident_id"] == "Q2X5C7QWER9ABC"
    assert delivery.summary.startswith("PagerDuty incident #4213 (GuardDuty")


def test_pagerduty_payload_without_the_v3_shape_is_refused() -> None:
    """A v2-style or truncated payload names the missing field."""
    with pytest.raises(core.WebhookError, match="'event' object"):
        core.pagerduty_delivery({"messages": []})
    with pytest.raises(core.WebhookError, match=re.escape("event.data.id")):
        core.pagerduty_delivery({"event": {"id": "E1", "event_type": "incident.triggered"}})


@needs_vectors
def test_alertmanager_vector_gives_one_event_per_firing_alert() -> None:
    """Labels (common overlaid by the alert's own) and the group key reach the event;
    resolved alerts inside a firing group are left out."""
    body, _ = vector("alertmanager_firing")
    data = core.parse_json(body)
    data["alerts"].append({**data["alerts"][0], "status": "resolved", "fingerprint": "old"})
    data["alerts"].append({"status": "firing", "labels": {"secret_id": "other/secret"}})
    group = core.alertmanager_group(data)
    assert group.status == "firing"
    assert group.group_key == '{}:{alertname="SecretLeakDetected"}'
    assert [e.fields["labels"]["secret_id"] for e in group.alerts] == [
        "cs-mcp/production/database",
        "other/secret",
    ]
    assert group.alerts[1].fields["alertname"] == "SecretLeakDetected"  # from commonLabels
    assert group.summary == "Alertmanager alert group alertname=SecretLeakDetected"


def test_alertmanager_payload_errors_name_the_field() -> None:
    """Wrong status, alerts not a list, labels not strings: 400 with the path."""
    base = {"groupKey": "g", "status": "firing", "alerts": []}
    with pytest.raises(core.WebhookError, match="firing or resolved"):
        core.alertmanager_group({**base, "status": "pending"})
    with pytest.raises(core.WebhookError, match="alerts must be an array"):
        core.alertmanager_group({**base, "alerts": {}})
    with pytest.raises(core.WebhookError, match=re.escape("alerts[0].labels")):
        core.alertmanager_group({**base, "alerts": [{"labels": {"a": 1}}]})


@needs_vectors
def test_github_event_never_carries_the_secret() -> None:
    """A payload that includes ``alert.secret`` (as the REST API does) yields an event
    and a trigger without that value anywhere."""
    body, _ = vector("github_secret_scanning_alert")
    data = core.parse_json(body)
    canary = "AKIACANARY0000000001/secretvalue-canary"
    data["alert"]["secret"] = canary
    event = core.github_event("secret_scanning_alert", data)
    assert event is not None
    assert canary not in json.dumps([event.fields, event.trigger])
    assert event.kind == "created"
    assert event.fields["secret_type"] == "aws_access_key_id"
    assert event.fields["alert_number"] == 42
    assert event.fields["repository"] == "acme/cs-mcp"
    assert event.trigger["html_url"] == "https://github.com/acme/cs-mcp/security/secret-scanning/42"
    assert core.github_event("ping", data) is None


def test_generic_event_masks_fields_named_like_secrets() -> None:
    """A scanner report's ``Secret`` and ``token`` fields are masked before any template
    can see them; the rest is the event."""
    event = core.generic_event(
        "gitleaks", {"Secret": "hunter2-leaked", "token": "t0k3n-abc", "rule": "r"}
    )
    assert event.fields == {"Secret": "[REDACTED]", "token": "[REDACTED]", "rule": "r"}
    assert event.trigger == {"source": "generic", "generic_source": "gitleaks"}


# --------------------------------------------------------------------------- routing


def am_event(**labels: str) -> core.TriggerEvent:
    data = {"groupKey": "g", "status": "firing", "alerts": [{"labels": labels}]}
    return core.alertmanager_group(data).alerts[0]


def routes(*items: dict[str, Any]) -> list[TriggerRoute]:
    return [TriggerRoute.model_validate(item) for item in items]


def test_irbot_yaml_routes_come_first_then_playbook_triggers() -> None:
    """A route in irbot.yaml beats a playbook's own trigger; without it the playbook's
    trigger starts its playbook; inputs render from event.labels."""
    triggers = {
        "contain": [
            TRIGGER.validate_python(
                {"alertmanager": {"alertname": "Leak", "inputs": {"s": "{{ event.labels.s }}"}}}
            )
        ]
    }
    config = routes(
        {
            "source": "alertmanager",
            "playbook": "from-config",
            "match": {"labels.team": "sre"},
            "inputs": {"s": "cfg-{{ event.labels.s }}"},
        }
    )
    hit = core.route([am_event(alertname="Leak", team="sre", s="x")], config, triggers)
    assert hit is not None
    assert (hit.playbook, hit.inputs) == ("from-config", {"s": "cfg-x"})
    assert hit.route == "irbot.yaml triggers[0] (alertmanager -> from-config)"
    hit = core.route([am_event(alertname="Leak", team="db", s="y")], config, triggers)
    assert hit is not None
    assert (hit.playbook, hit.inputs) == ("contain", {"s": "y"})
    assert core.route([am_event(alertname="Other", team="db")], config, triggers) is None


def test_first_matching_alert_of_a_group_decides() -> None:
    """Routing walks the group's alerts in order; the first that matches wins."""
    config = routes(
        {
            "source": "alertmanager",
            "playbook": "p",
            "match": {"alertname": "B"},
            "inputs": {"n": "{{ event.labels.n }}"},
        }
    )
    hit = core.route([am_event(alertname="A", n="1"), am_event(alertname="B", n="2")], config, {})
    assert hit is not None
    assert hit.inputs == {"n": "2"}


@needs_vectors
def test_pagerduty_routes_match_service_and_title_regex() -> None:
    """A route matches on service.id and title_matches (a regex); the playbook trigger
    matches service by id or name; resolved events start nothing."""
    body, _ = vector("pagerduty_incident_triggered")
    delivery = core.pagerduty_delivery(core.parse_json(body))
    config = routes(
        {
            "source": "pagerduty",
            "playbook": "compromise",
            "match": {"service.id": "PSVC123", "title_matches": r"access key (AKIA\w+)"},
            "inputs": {"incident": "{{ event.incident_id }}", "title": "{{ event.title }}"},
        }
    )
    hit = core.route([delivery.event], config, {})
    assert hit is not None
    assert hit.inputs["incident"] == "Q2X5C7QWER9ABC"
    other = routes(
        {"source": "pagerduty", "playbook": "x", "match": {"title_matches": "(?i)ransom"}}
    )
    assert core.route([delivery.event], other, {}) is None
    by_name = TRIGGER.validate_python(
        {"pagerduty": {"service": "cs-mcp production", "title_matches": "GuardDuty"}}
    )
    hit = core.route([delivery.event], [], {"compromise": [by_name]})
    assert hit is not None
    assert hit.playbook == "compromise"
    resolved = core.TriggerEvent("pagerduty", "incident.resolved", delivery.event.fields, {})
    assert core.route([resolved], config, {"compromise": [by_name]}) is None


def test_github_secret_types_filter_and_only_created_starts() -> None:
    """secret_types narrows the playbook trigger; a 'resolved' alert starts nothing."""
    data = {
        "action": "created",
        "alert": {"number": 1, "secret_type": "slack_api_token"},
        "repository": {"full_name": "acme/x"},
    }
    event = core.github_event("secret_scanning_alert", data)
    assert event is not None
    aws_only = TRIGGER.validate_python(
        {"github_secret_scanning": {"secret_types": ["aws_access_key_id"]}}
    )
    anything = TRIGGER.validate_python(
        {"github_secret_scanning": {"inputs": {"repo": "{{ event.repository }}"}}}
    )
    assert core.route([event], [], {"a": [aws_only]}) is None
    hit = core.route([event], [], {"a": [aws_only], "b": [anything]})
    assert hit is not None
    assert (hit.playbook, hit.inputs) == ("b", {"repo": "acme/x"})
    resolved = core.github_event("secret_scanning_alert", {**data, "action": "resolved"})
    assert resolved is not None
    assert core.route([resolved], [], {"b": [anything]}) is None


def test_generic_routes_are_per_source_name() -> None:
    """A generic route applies only to its generic_source; match compares strings."""
    event = core.generic_event("gitleaks", {"rule": "aws", "count": 3, "ok": True})
    config = routes(
        {"source": "generic", "generic_source": "trufflehog", "playbook": "t"},
        {
            "source": "generic",
            "generic_source": "gitleaks",
            "playbook": "g",
            "match": {"count": "3", "ok": "true"},
        },
    )
    hit = core.route([event], config, {})
    assert hit is not None
    assert hit.playbook == "g"
    own = TRIGGER.validate_python({"generic": {"source": "gitleaks", "match": {"rule": "aws"}}})
    assert core.route([event], [], {"p": [own]}) is not None
    assert core.route([core.generic_event("other", {"rule": "aws"})], config, {"p": [own]}) is None


def test_unusable_route_raises_route_error_naming_it() -> None:
    """An input template over a missing field, or a bad regex in irbot.yaml, is a
    RouteError naming the route and the input, not a crash."""
    config = routes(
        {"source": "alertmanager", "playbook": "p", "inputs": {"s": "{{ event.labels.missing }}"}}
    )
    with pytest.raises(core.RouteError, match=r"irbot.yaml triggers\[0\].*input 's'.*undefined"):
        core.route([am_event(alertname="A")], config, {})
    bad = routes({"source": "alertmanager", "playbook": "p", "match": {"alertname_matches": "("}})
    with pytest.raises(core.RouteError, match="not a valid regular expression"):
        core.route([am_event(alertname="A")], bad, {})


def test_templates_rendering_nothing_leave_the_input_out() -> None:
    """An input rendering to None is omitted so the playbook default applies; defaults
    in templates work."""
    config = routes(
        {
            "source": "alertmanager",
            "playbook": "p",
            "inputs": {
                "ns": "{{ event.labels.namespace | default('production') }}",
                "fp": "{{ event.fingerprint }}",
            },
        }
    )
    hit = core.route([am_event(alertname="A")], config, {})
    assert hit is not None
    assert hit.inputs == {"ns": "production"}


# --------------------------------------------------------------------------- keys and settings


def test_run_keys_are_safe_deterministic_and_distinct() -> None:
    """Keys use [a-z0-9-] only, repeat for the same parts, and differ for ids that only
    differ in case or punctuation."""
    a = core.run_key("gen", "gitleaks", "Build-42")
    assert re.fullmatch(r"[a-z0-9-]+", a)
    assert a == core.run_key("gen", "gitleaks", "Build-42")
    assert a != core.run_key("gen", "gitleaks", "build-42")
    assert a != core.run_key("gen", "gitleaks", "Build.42")
    long = core.run_key("am", '{}:{alertname="' + "X" * 500 + '"}', "1")
    assert len(long) < 100


def test_generic_secrets_parse_and_errors_never_show_the_secret() -> None:
    """IRBOT_WEBHOOK_SECRETS pairs parse; a malformed entry names its position, never
    the value."""
    assert core.source_secrets("gitleaks=s1, trufflehog = s=2 ", "V") == {
        "gitleaks": "s1",
        "trufflehog": "s=2",
    }
    assert core.source_secrets(None, "V") == {}
    for value, reason in (
        ("gitleaks", "entry 1 is not source=secret"),
        ("a=b,Bad Name=topsecret-value", "entry 2: the source name"),
        ("a=x,a=y", "given twice"),
    ):
        with pytest.raises(ConfigError, match=reason) as caught:
            core.source_secrets(value, "IRBOT_WEBHOOK_SECRETS")
        assert "topsecret" not in caught.value.message
        assert caught.value.message.startswith("IRBOT_WEBHOOK_SECRETS")


def test_webhook_secrets_from_env_and_from_the_server_settings() -> None:
    """WebhookSecrets reads the four variables (PagerDuty's as a rotation list), the
    server's validated settings give the same, and its repr names sources only."""
    from bot.web.settings import load_server_settings
    from bot.webhooks import WebhookSecrets

    env = {
        "PAGERDUTY_WEBHOOK_SECRET": "pd-new, pd-old",
        "GITHUB_WEBHOOK_SECRET": "gh-secret-value",
        "ALERTMANAGER_TOKEN": "am-token-value",
        "IRBOT_WEBHOOK_SECRETS": "gitleaks=gl-secret-value",
    }
    secrets = WebhookSecrets.from_env(env)
    assert secrets.pagerduty == ("pd-new", "pd-old")
    assert (secrets.github, secrets.alertmanager) == ("gh-secret-value", "am-token-value")
    assert dict(secrets.generic) == {"gitleaks": "gl-secret-value"}
    assert WebhookSecrets.from_server_settings(load_server_settings(env)) == secrets
    shown = repr(secrets)
    assert shown == (
        "WebhookSecrets(configured=['pagerduty', 'github', 'alertmanager', 'generic/gitleaks'])"
    )
    assert WebhookSecrets.from_env({"GITHUB_WEBHOOK_SECRET": "  "}).configured() == []
    with pytest.raises(ConfigError, match="IRBOT_WEBHOOK_SECRETS: entry 1"):
        WebhookSecrets.from_env({"IRBOT_WEBHOOK_SECRETS": "gl-secret-value"})
