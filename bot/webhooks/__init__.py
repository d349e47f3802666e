"""Webhook triggers: alerts from PagerDuty, Alertmanager, GitHub and any scanner start runs.

Every request is verified before its body is parsed (a missing or bad signature is a
401 and nothing else happens), deduplicated (a redelivery answers 200 and starts
nothing), and answered at once: the run starts after the answer is sent. Bodies must be
``application/json`` and at most 1 MiB. A source whose secret is not set answers 503.
Which playbook an event starts is decided by ``triggers:`` in irbot.yaml, then by the
playbooks' own ``triggers:`` (first match wins; see :mod:`bot.core.webhooks`).

``POST /webhooks/pagerduty`` — PagerDuty webhooks v3. ``PAGERDUTY_WEBHOOK_SECRET``
  (several, comma-separated, while rotating); ``X-PagerDuty-Signature:
  v1=<hex>[,v1=<hex>…]`` is HMAC-SHA256 of the raw body, any one matching. Deduplicated
  on ``event.id`` and ``X-Webhook-Id``. ``incident.triggered`` starts a run (one per
  PagerDuty incident; ``ctx.trigger.incident_id`` is the PagerDuty incident, which
  ``pagerduty.note`` uses); ``incident.resolved`` adds a note to that run's incident.
``POST /webhooks/alertmanager`` — ``Authorization: Bearer $ALERTMANAGER_TOKEN``::

      receivers:
        - name: irbot
          webhook_configs:
            - url: https://irbot.example/webhooks/alertmanager
              send_resolved: true
              http_config: {authorization: {credentials: <ALERTMANAGER_TOKEN>}}

  One run per alert group (``groupKey``) while it fires, however many alerts and
  repeats arrive; the group's ``resolved`` adds a note to that run's incident, and a
  later firing of the group starts a new run. Templates see each firing alert's labels
  as ``event.labels.<name>``.
``POST /webhooks/github`` — a repository or organisation webhook with content type
  ``application/json``, secret ``GITHUB_WEBHOOK_SECRET`` and the "Secret scanning
  alerts" event; ``X-Hub-Signature-256: sha256=<hex>`` over the raw body, deduplicated
  on ``X-GitHub-Delivery``. Action ``created`` starts a run. The secret itself is never
  read from the payload.
``POST /webhooks/generic/<source>`` — for anything else (gitleaks or truffleHog in CI).
  ``IRBOT_WEBHOOK_SECRETS="gitleaks=<secret>,trufflehog=<secret2>"`` names the sources.
  Send the JSON object with three headers:

  - ``X-Irbot-Timestamp``: the current Unix time in seconds; refused if more than 300 s
    from irbot's clock, so a captured request cannot be replayed later;
  - ``X-Irbot-Signature: sha256=<hex>``: HMAC-SHA256, keyed with the source's secret, of
    the timestamp, a dot, and the exact body bytes (``"{timestamp}.{body}"``);
  - ``X-Irbot-Delivery``: a unique id per event (1-200 of ``A-Za-z0-9._:-``); a
    repeated id is a redelivery and starts nothing.

  For example, from a CI job::

      body='{"rule": "aws-access-key", "repository": "acme/api", "file": "config.py"}'
      ts=$(date +%s)
      hmac() { openssl dgst -sha256 -hmac "$IRBOT_SECRET" -r | cut -d' ' -f1; }
      sig=$(printf '%s.%s' "$ts" "$body" | hmac)
      curl -sS --fail-with-body https://irbot.example/webhooks/generic/gitleaks \\
        -H 'Content-Type: application/json' \\
        -H "X-Irbot-Timestamp: $ts" \\
        -H "X-Irbot-Signature: sha256=$sig" \\
        -H "X-Irbot-Delivery: gitleaks-$CI_PIPELINE_ID-$CI_JOB_ID" \\
        --data-binary "$body"

  The whole object is ``event`` in templates (``{{ event.rule }}``), with fields named
  like secrets (``secret``, ``token``, ``password`` …) masked: send where the leak is,
  not the leaked value.

Answers: 202 ``{"status": "accepted", "run": …}``, 200 ``{"status": "duplicate" |
"ignored", "reason": …}``, or ``{"error": …}`` with 400, 401, 413, 415 or 503.
"""

from __future__ import annotations

from starlette.routing import Route

from bot.service import Service
from bot.webhooks.endpoints import Clock, Endpoints, Observe
from bot.webhooks.secrets import WebhookSecrets

__all__ = ["Clock", "Observe", "WebhookSecrets", "webhook_routes"]


def webhook_routes(
    service: Service,
    secrets: WebhookSecrets,
    *,
    observe: Observe | None = None,
    clock: Clock | None = None,
) -> list[Route]:
    """The four ``POST /webhooks/…`` routes for the server's Starlette app.

    ``observe(source, result)`` is called once per delivery (source: ``pagerduty``,
    ``alertmanager``, ``github``, ``generic/<name>``; result: accepted, duplicate,
    unauthorized, invalid or ignored). ``clock`` (UTC now) is for tests.
    """
    endpoints = Endpoints(service, secrets, observe, clock)
    return [
        Route("/webhooks/pagerduty", endpoints.pagerduty, methods=["POST"]),
        Route("/webhooks/alertmanager", endpoints.alertmanager, methods=["POST"]),
        Route("/webhooks/github", endpoints.github, methods=["POST"]),
        Route("/webhooks/generic/{source}", endpoints.generic, methods=["POST"]),
    ]
