"""The shared secrets each webhook sender signs with, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from bot.core.webhooks import secret_list, source_secrets

PAGERDUTY = "PAGERDUTY_WEBHOOK_SECRET"
GITHUB = "GITHUB_WEBHOOK_SECRET"
ALERTMANAGER = "ALERTMANAGER_TOKEN"
GENERIC = "IRBOT_WEBHOOK_SECRETS"


class _Secret(Protocol):
    def get_secret_value(self) -> str: ...


class ServerSecrets(Protocol):
    """The fields of :class:`bot.web.settings.ServerSettings` read here."""

    @property
    def pagerduty_webhook_secret(self) -> _Secret | None: ...
    @property
    def github_webhook_secret(self) -> _Secret | None: ...
    @property
    def alertmanager_token(self) -> _Secret | None: ...
    @property
    def webhook_secrets(self) -> _Secret | None: ...


@dataclass(frozen=True, repr=False)
class WebhookSecrets:
    """Secrets per source; a source without one answers 503 instead of trusting anyone."""

    pagerduty: tuple[str, ...] = ()
    """Several during a rotation (``PAGERDUTY_WEBHOOK_SECRET=new,old``)."""
    github: str | None = None
    alertmanager: str | None = None
    """The Bearer token Alertmanager sends (``http_config.authorization.credentials``)."""
    generic: Mapping[str, str] = field(default_factory=dict, hash=False)
    """``/webhooks/generic/<source>`` -> its secret."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WebhookSecrets:
        """Read the four variables; ConfigError names a malformed one (never its value)."""
        return cls(
            pagerduty=secret_list(env.get(PAGERDUTY)),
            github=(env.get(GITHUB) or "").strip() or None,
            alertmanager=(env.get(ALERTMANAGER) or "").strip() or None,
            generic=source_secrets(env.get(GENERIC), GENERIC),
        )

    @classmethod
    def from_server_settings(cls, settings: ServerSecrets) -> WebhookSecrets:
        """The same, from the server's already-validated settings."""
        values = {
            PAGERDUTY: settings.pagerduty_webhook_secret,
            GITHUB: settings.github_webhook_secret,
            ALERTMANAGER: settings.alertmanager_token,
            GENERIC: settings.webhook_secrets,
        }
        return cls.from_env({k: v.get_secret_value() for k, v in values.items() if v is not None})

    def configured(self) -> list[str]:
        """Which sources accept deliveries (for start-up logs; no values)."""
        names = [
            name
            for name, value in (
                ("pagerduty", self.pagerduty),
                ("github", self.github),
                ("alertmanager", self.alertmanager),
            )
            if value
        ]
        return names + [f"generic/{name}" for name in sorted(self.generic)]

    def __repr__(self) -> str:
        return f"WebhookSecrets(configured={self.configured()!r})"
