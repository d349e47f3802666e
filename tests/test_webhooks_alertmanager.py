"""Alertmanager through the webhook route: one run per firing group, storms included,
resolution noted, a new firing after resolution starting a new run."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from bot.core.timeline import NOTE
from tests.test_webhooks import AM_TOKEN, Client, Irbot, client_fixture, irbot_fixture  # noqa: F401
from tests.test_webhooks_core import needs_vectors, vector

HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {AM_TOKEN}"}


def group(key: str, alerts: list[dict[str, Any]], status: str = "firing") -> bytes:
    """An Alertmanager v4 body for group ``key``."""
    return json.dumps(
        {
            "version": "4",
            "groupKey": key,
            "status": status,
            "receiver": "irbot",
            "groupLabels": {"alertname": "SecretLeakDetected"},
            "commonLabels": {"alertname": "SecretLeakDetected"},
            "alerts": alerts,
        }
    ).encode()


def leak(n: int, status: str = "firing") -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"secret_id": f"prod/db-{n}", "instance": f"i-{n}"},
        "fingerprint": f"fp{n:06d}",
    }


@needs_vectors
def test_vector_starts_the_playbook_with_inputs_from_the_labels(
    irbot: Irbot, client: Client
) -> None:
    """The shared firing vector starts the playbook whose trigger names the alertname,
    with secret_id and severity from the alert's labels, requested by
    webhook:alertmanager; the trigger keeps the group key."""
    body, _ = vector("alertmanager_firing")
    response = client.post("/webhooks/alertmanager", content=body, headers=HEADERS)
    assert response.status_code == 202, response.text
    [run] = irbot.runs()
    assert (run.playbook, run.requester) == ("contain", "webhook:alertmanager")
    assert run.inputs == {"secret_id": "cs-mcp/production/database", "severity": "critical"}
    opened = irbot.store.events(run_id=run.id)[0]
    assert opened.payload["trigger"]["group_key"] == '{}:{alertname="SecretLeakDetected"}'
    assert opened.payload["trigger"]["source"] == "alertmanager"


def test_storm_of_2000_alerts_in_one_group_starts_exactly_one_run(
    irbot: Irbot, client: Client
) -> None:
    """2,000 alerts of one group arrive as 100 concurrent deliveries of 20 (Alertmanager
    re-sending the growing group): one run, 99 duplicates. A second group's 100
    concurrent deliveries then start exactly a second run."""

    async def storm(key: str) -> list[httpx.Response]:
        bodies = [group(key, [leak(i * 20 + j) for j in range(20)]) for i in range(100)]
        return await asyncio.gather(
            *(client.apost("/webhooks/alertmanager", content=b, headers=HEADERS) for b in bodies)
        )

    first = asyncio.run(storm('{}:{alertname="SecretLeakDetected"}'))
    assert sorted(r.status_code for r in first) == [200] * 99 + [202]
    assert len(irbot.runs()) == 1
    assert sorted(r for _, r in irbot.observed) == ["accepted"] + ["duplicate"] * 99
    second = asyncio.run(storm('{}:{alertname="SecretLeakDetected", cluster="eu"}'))
    assert sorted(r.status_code for r in second) == [200] * 99 + [202]
    runs = irbot.runs()
    assert len(runs) == 2
    assert {r.playbook for r in runs} == {"contain"}
    assert len({r.incident_id for r in runs}) == 2


def test_resolved_is_noted_and_a_later_firing_starts_a_new_run(
    irbot: Irbot, client: Client
) -> None:
    """While firing, repeats start nothing; 'resolved' adds a note by 'alertmanager' to
    the run's incident (once); the group firing again afterwards starts a second run."""
    key = '{}:{alertname="SecretLeakDetected"}'
    client.post("/webhooks/alertmanager", content=group(key, [leak(1)]), headers=HEADERS)
    repeat = client.post(
        "/webhooks/alertmanager", content=group(key, [leak(1), leak(2)]), headers=HEADERS
    )
    assert repeat.json() == {
        "status": "duplicate",
        "reason": "this alert group already has a run while it fires",
    }
    [run] = irbot.runs()
    resolved = group(key, [leak(1, "resolved"), leak(2, "resolved")], status="resolved")
    response = client.post("/webhooks/alertmanager", content=resolved, headers=HEADERS)
    assert response.status_code == 202
    assert response.json()["run"] == run.id
    notes = [e for e in irbot.store.events(incident_id=run.incident_id) if e.kind == NOTE]
    assert [(n.actor, n.payload["text"]) for n in notes] == [
        (
            "user:alertmanager",
            "Alertmanager alert group alertname=SecretLeakDetected was resolved in Alertmanager.",
        )
    ]
    again = client.post("/webhooks/alertmanager", content=resolved, headers=HEADERS)
    assert again.json()["status"] == "ignored"
    refire = client.post("/webhooks/alertmanager", content=group(key, [leak(3)]), headers=HEADERS)
    assert refire.status_code == 202
    runs = irbot.runs()
    assert len(runs) == 2
    newest = next(r for r in runs if r.id != run.id)
    assert newest.inputs["secret_id"] == "prod/db-3"
    assert newest.incident_id != run.incident_id


def test_a_run_that_cannot_start_frees_the_group_for_the_next_firing(
    irbot: Irbot, client: Client
) -> None:
    """Labels that fail the playbook's input pattern: the delivery was accepted, the start
    fails in the background (logged, no run) and the group is released, so the next
    delivery with good labels starts the run."""
    key = '{}:{alertname="SecretLeakDetected"}'
    bad = {"status": "firing", "labels": {"secret_id": "not a valid id!"}}
    response = client.post("/webhooks/alertmanager", content=group(key, [bad]), headers=HEADERS)
    assert response.status_code == 202
    assert irbot.runs() == []
    assert irbot.store.alert_group_state("alertmanager", key) == ("failed", 1)
    response = client.post("/webhooks/alertmanager", content=group(key, [leak(7)]), headers=HEADERS)
    assert response.status_code == 202
    [run] = irbot.runs()
    assert run.inputs["secret_id"] == "prod/db-7"


def test_groups_no_route_wants_start_nothing_and_claim_nothing(
    irbot: Irbot, client: Client
) -> None:
    """A firing group whose alerts match no route is ignored and not claimed; a resolved
    group irbot never ran for is ignored."""
    other = json.dumps(
        {"groupKey": "other", "status": "firing", "alerts": [{"labels": {"alertname": "DiskFull"}}]}
    ).encode()
    response = client.post("/webhooks/alertmanager", content=other, headers=HEADERS)
    assert response.json() == {
        "status": "ignored",
        "reason": "no route matches a firing alert of this group",
    }
    assert irbot.store.alert_group_state("alertmanager", "other") is None
    resolved = group("never-seen", [], status="resolved")
    response = client.post("/webhooks/alertmanager", content=resolved, headers=HEADERS)
    assert response.json() == {
        "status": "ignored",
        "reason": "no irbot run is open for this alert group",
    }
    assert irbot.runs() == []
