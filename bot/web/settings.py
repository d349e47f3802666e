"""The server's settings from the environment (pydantic-settings), checked once at start.

``irbot serve`` reads these on top of :mod:`bot.settings` (data dir, database, config,
playbooks). A missing or malformed value stops the server with one message naming the
variable, before anything listens; secrets are ``SecretStr`` so they never print.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.core.errors import ConfigError

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_SLACK_WORKSPACE_URL = "https://slack.com"
WEB_TOKEN_MIN_LENGTH = 16


class ServerSettings(BaseSettings):
    """Slack, webhook and PagerDuty settings (names as in the README's table)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    slack_bot_token: SecretStr | None = Field(None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(None, alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(DEFAULT_SLACK_API_URL, alias="SLACK_API_URL")
    pagerduty_webhook_secret: SecretStr | None = Field(None, alias="PAGERDUTY_WEBHOOK_SECRET")
    github_webhook_secret: SecretStr | None = Field(None, alias="GITHUB_WEBHOOK_SECRET")
    alertmanager_token: SecretStr | None = Field(None, alias="ALERTMANAGER_TOKEN")
    webhook_secrets: SecretStr | None = Field(
        None, validation_alias=AliasChoices("IRBOT_WEBHOOK_SECRETS", "webhook_secrets")
    )
    web_token: SecretStr | None = Field(None, alias="IRBOT_WEB_TOKEN")
    """The timeline pages' access token; unset, the pages answer 503 (never open)."""
    slack_workspace_url: str = Field(DEFAULT_SLACK_WORKSPACE_URL, alias="IRBOT_SLACK_WORKSPACE_URL")
    """Base of Slack thread permalinks on the pages (``https://acme.slack.com``)."""

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a bot token (xoxb-…), from OAuth & Permissions")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("must be an app-level token (xapp-…) with connections:write")
        return value

    @field_validator("web_token")
    @classmethod
    def _web_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < WEB_TOKEN_MIN_LENGTH:
            raise ValueError(
                f"must be at least {WEB_TOKEN_MIN_LENGTH} characters (e.g. `openssl rand -hex 32`)"
            )
        return value

    @field_validator("slack_workspace_url")
    @classmethod
    def _workspace_url(cls, value: str) -> str:
        return workspace_url(value)

    @field_validator("slack_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s):// URL")
        return value if value.endswith("/") else value + "/"

    def require_slack(self, *, socket_mode: bool) -> None:
        """The variables Slack needs in this mode, or a ConfigError naming the first missing."""
        needed = ["SLACK_BOT_TOKEN"]
        needed.append("SLACK_APP_TOKEN" if socket_mode else "SLACK_SIGNING_SECRET")
        values = {
            "SLACK_BOT_TOKEN": self.slack_bot_token,
            "SLACK_APP_TOKEN": self.slack_app_token,
            "SLACK_SIGNING_SECRET": self.slack_signing_secret,
        }
        for name in needed:
            if values[name] is None:
                mode = "Socket Mode" if socket_mode else "HTTP mode"
                raise ConfigError(
                    f"{name} is not set: irbot serve in {mode} needs it (see the README's "
                    "Slack app setup)"
                )


def workspace_url(value: str) -> str:
    """``IRBOT_SLACK_WORKSPACE_URL`` checked: an http(s) URL, no trailing slash."""
    if not value.startswith(("https://", "http://")):
        raise ValueError("must be an http(s):// URL such as https://acme.slack.com")
    return value.rstrip("/")


def workspace_url_from_env(env: Mapping[str, str] | None = None) -> str:
    """Only the permalink base, for commands that render a timeline offline (``irbot
    timeline``) and must not fail on the server's other variables."""
    env = os.environ if env is None else env
    try:
        return workspace_url(env.get("IRBOT_SLACK_WORKSPACE_URL") or DEFAULT_SLACK_WORKSPACE_URL)
    except ValueError as exc:
        raise ConfigError(f"IRBOT_SLACK_WORKSPACE_URL: {exc}") from None


def load_server_settings(env: Mapping[str, str] | None = None) -> ServerSettings:
    """Read and check the environment; ConfigError names the bad variable."""
    try:
        if env is None:
            return ServerSettings()
        return ServerSettings.model_validate({k: v for k, v in env.items() if v != ""})
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "?"
        raise ConfigError(f"{name}: {first['msg']}") from None
