"""Kubernetes actions: rollout restart and status, Secret updates."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from bot.core.catalog import ActionInput, ActionSpec
from bot.core.playbook import Duration

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"


class _Deployment(ActionInput):
    name: str = Field(pattern=DNS_SUBDOMAIN)
    namespace: str = Field("default", pattern=DNS_LABEL)
    context: str | None = None
    """A kubeconfig context; default: the current one (or in-cluster)."""


class RolloutRestart(_Deployment):
    wait: bool = True
    timeout: Duration = timedelta(minutes=10)


class RolloutStatus(_Deployment):
    timeout: Duration = timedelta(minutes=10)


class UpdateSecret(ActionInput):
    name: str = Field(pattern=DNS_SUBDOMAIN)
    namespace: str = Field("default", pattern=DNS_LABEL)
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]{1,253}$")
    value_ref: str = Field(min_length=1)
    context: str | None = None


SPECS = (
    ActionSpec(
        "k8s.rollout_restart",
        "Restart a Deployment (kubectl rollout restart) and optionally wait for it.",
        RolloutRestart,
        ("name", "namespace", "restarted_at", "generation", "status"),
        destructive=True,
        integration="kubernetes",
    ),
    ActionSpec(
        "k8s.rollout_status",
        "Wait until a Deployment's rollout is complete (kubectl rollout status).",
        RolloutStatus,
        ("name", "namespace", "status", "replicas", "updated_replicas", "available_replicas"),
        integration="kubernetes",
    ),
    ActionSpec(
        "k8s.update_secret",
        "Write one key of a Kubernetes Secret from a reference.",
        UpdateSecret,
        ("name", "namespace", "key", "resource_version"),
        destructive=True,
        integration="kubernetes",
    ),
)
