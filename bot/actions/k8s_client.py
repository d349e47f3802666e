"""Kubernetes API clients, configured as kubectl would be, and the mapping of client
errors to :class:`ActionError`.

The one place that knows the kubernetes package's configuration loaders and exception
types. Configuration: ``KUBECONFIG`` (or ``~/.kube/config``) with the requested context,
else the in-cluster service account. Each action call builds its own ``ApiClient``
(no global ``Configuration``), so concurrent calls against different contexts are safe.

Errors::

    ApiException 404        -> not_found     (names namespace/name and the context)
    ApiException 403        -> denied        (names the verb and resource for RBAC)
    ApiException 401        -> unauthorized
    ApiException 409/429/5xx, urllib3 HTTPError -> retryable
    ApiException 400/422    -> input (the API server's message)
    ConfigException, bad kubeconfig, unknown context -> config
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from bot.engine.actions import ActionError

T = TypeVar("T")

REQUEST_TIMEOUT = (5.0, 30.0)
"""(connect, read) seconds for every API request."""

DEFAULT_KUBECONFIG = "~/.kube/config"
TOKEN_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")

# kubernetes.config carries no annotations; typed names keep strict mypy at the calls.
_new_client_from_config: Callable[..., Any] = config.new_client_from_config
_load_incluster_config: Callable[..., Any] = config.load_incluster_config


@dataclass(frozen=True)
class Cluster:
    """An API client and where it points, for error messages."""

    api: Any
    where: str
    """``context prod`` or ``in-cluster``."""

    def apps(self) -> Any:
        return client.AppsV1Api(self.api)

    def core(self) -> Any:
        return client.CoreV1Api(self.api)

    def close(self) -> None:
        self.api.close()


@dataclass(frozen=True)
class Target:
    """What a request acts on: enough to say what failed and which permission is missing."""

    verb: str
    """The RBAC verb: get, patch."""
    resource: str
    """The RBAC resource: ``deployments.apps``, ``secrets``."""
    namespace: str
    name: str

    @property
    def kind(self) -> str:
        return self.resource.split(".")[0].rstrip("s")

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def kubeconfig_paths() -> list[Path]:
    """The kubeconfig files kubectl would read (KUBECONFIG's list, or the default)."""
    listed = os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
    paths = [Path(p).expanduser() for p in listed.split(os.pathsep) if p]
    return [p for p in paths if p.is_file()]


def in_cluster() -> bool:
    """Running in a pod with a service account token."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and TOKEN_FILE.is_file()


def not_configured() -> str | None:
    """Why Kubernetes actions cannot run in this process, or None."""
    if kubeconfig_paths() or in_cluster():
        return None
    if os.environ.get("KUBECONFIG"):
        return "KUBECONFIG names no existing file, and this is not a pod with a service account"
    return (
        "no Kubernetes configuration found: set KUBECONFIG (or create ~/.kube/config), "
        "or run irbot in a pod with a service account"
    )


def _contexts(paths: list[Path]) -> tuple[list[str], str | None]:
    """Context names and the current context, merged the kubectl way (first file wins)."""
    names: list[str] = []
    current: str | None = None
    for path in paths:
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ActionError(f"cannot read kubeconfig {path}: {exc}", code="config") from exc
        if not isinstance(document, dict):
            raise ActionError(f"kubeconfig {path} is not a mapping", code="config")
        for entry in document.get("contexts") or []:
            if isinstance(entry, dict) and entry.get("name") not in names:
                names.append(str(entry.get("name")))
        current = current or document.get("current-context") or None
    return names, current


def connect(context: str | None) -> Cluster:
    """A fresh client for ``context`` (None: the current one, or in-cluster). Blocking."""
    configuration = client.Configuration()
    paths = kubeconfig_paths()
    try:
        if paths:
            names, current = _contexts(paths)
            chosen = context or current
            if chosen is None:
                raise ActionError(
                    "the kubeconfig has no current-context: set one or pass `context`",
                    code="config",
                )
            if chosen not in names:
                shown = ", ".join(names) or "none"
                raise ActionError(
                    f"context {chosen!r} is not in the kubeconfig "
                    f"({os.pathsep.join(map(str, paths))}); contexts there: {shown}",
                    code="config",
                )
            api = _new_client_from_config(
                config_file=os.pathsep.join(map(str, paths)),
                context=chosen,
                persist_config=False,
                client_configuration=configuration,
            )
            return Cluster(api, f"context {chosen}")
        if in_cluster():
            if context is not None:
                raise ActionError(
                    f"context {context!r} was requested but there is no kubeconfig "
                    "(only the in-cluster service account): drop `context` or set KUBECONFIG",
                    code="config",
                )
            _load_incluster_config(client_configuration=configuration)
            return Cluster(client.ApiClient(configuration), "in-cluster")
    except (ConfigException, OSError, yaml.YAMLError) as exc:
        raise ActionError(f"invalid Kubernetes configuration: {exc}", code="config") from exc
    raise ActionError(not_configured() or "no Kubernetes configuration", code="config")


def _server_message(exc: ApiException) -> str:
    """The ``message`` of the Status the API server sent, else the HTTP reason."""
    try:
        status = json.loads(exc.body or "")
    except ValueError:
        status = None
    message = status.get("message") if isinstance(status, dict) else None
    text = str(message or exc.reason or "no message")
    return text if len(text) <= 300 else text[:297] + "..."


def api_error(exc: ApiException, target: Target, where: str) -> ActionError:
    """An ActionError for a failed API request on ``target``."""
    code = int(exc.status or 0)
    said = _server_message(exc)
    if code == 404:
        return ActionError(
            f"{target} not found ({where}): check the name and namespace", code="not_found"
        )
    if code == 403:
        return ActionError(
            f"RBAC denies irbot '{target.verb}' on {target.resource} in namespace "
            f"{target.namespace} ({where}): grant it with a Role and RoleBinding "
            f"(API server: {said})",
            code="denied",
        )
    if code == 401:
        return ActionError(
            f"the Kubernetes API rejected irbot's credentials ({where}): "
            "refresh the token in the kubeconfig or the service account",
            code="unauthorized",
        )
    if code == 409:
        return ActionError(
            f"{target} changed while irbot was updating it ({where}): try again",
            retryable=True,
            code="conflict",
        )
    if code == 429:
        return ActionError(
            f"the Kubernetes API is throttling irbot ({where}) on {target}",
            retryable=True,
            code="throttled",
        )
    if code >= 500:
        return ActionError(
            f"the Kubernetes API failed ({code}, {where}) on {target}: {said}",
            retryable=True,
            code="k8s_5xx",
        )
    if code in (400, 422):
        return ActionError(
            f"the Kubernetes API refused to {target.verb} {target} ({where}): {said}",
            code="input",
        )
    return ActionError(f"{target.verb} {target} failed ({where}): HTTP {code} {said}", code="k8s")


def call(cluster: Cluster, target: Target, fn: Callable[..., T], /, **kwargs: Any) -> T:
    """``fn(**kwargs)`` with the request timeout; client errors become ActionErrors."""
    try:
        return fn(**kwargs, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as exc:
        raise api_error(exc, target, cluster.where) from exc
    except urllib3.exceptions.HTTPError as exc:
        raise ActionError(
            f"cannot reach the Kubernetes API at {cluster.api.configuration.host} "
            f"({cluster.where}) to {target.verb} {target}: {type(exc).__name__}",
            retryable=True,
            code="network",
        ) from exc


async def acall(cluster: Cluster, target: Target, fn: Callable[..., T], /, **kwargs: Any) -> T:
    """:func:`call` in a worker thread (the client is synchronous)."""
    return await asyncio.to_thread(call, cluster, target, fn, **kwargs)
