"""A small Kubernetes API server with a deployment controller: the sandbox's cluster.

No real API server can run here (nor on a laptop without one), and kmock runs no
controllers, so this emulator speaks just enough of the REST API for the official client
(37) and behaves like the deployment controller: a change to ``spec`` bumps
``metadata.generation``; after ``delay`` seconds the controller observes it, rolls
half-way (one updated replica, a surge replica), then converges and reports
``Progressing=True/NewReplicaSetAvailable``. A deployment can be told to stall half-way
forever or to report ``ProgressDeadlineExceeded``. ``irbot demo`` runs it with demo
deployments; the tests use it through ``tests/fake_kube.py`` (fixtures ``kube`` and
``kubeconfig``).

Served::

    GET|PATCH /apis/apps/v1/namespaces/{ns}/deployments/{name}
    GET|PATCH /api/v1/namespaces/{ns}/secrets/{name}

PATCH accepts ``application/strategic-merge-patch+json`` and ``merge-patch+json``; both
are applied as a JSON merge (maps merge, ``null`` deletes, lists are replaced — enough
for annotations and Secret data). ``metadata.resourceVersion`` in a patch is a
precondition (409 when stale), as on a real server. Errors are ``Status`` objects.
Requests need ``Authorization: Bearer <token>``; it is a ThreadingHTTPServer, so many
clients may call at once. It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import binascii
import copy
import itertools
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TOKEN = "fake-kube-token"  # noqa: S105 - what the emulator accepts; nothing else does
CONTEXT = "fake"
USER = "system:serviceaccount:irbot:irbot"
CREATED = "2025-01-01T00:00:00Z"
MERGE_TYPES = ("application/strategic-merge-patch+json", "application/merge-patch+json")

_ROUTES = (
    (re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)$"), "deployments"),
    (re.compile(r"^/api/v1/namespaces/([^/]+)/secrets/([^/]+)$"), "secrets"),
)
_KIND = {"deployments": "Deployment", "secrets": "Secret"}
_GROUP = {"deployments": "apps", "secrets": ""}


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge of ``patch`` into a copy of ``target``."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def status_body(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    """A ``Status`` object as the API server sends with every error."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


class ApiError(Exception):
    """Raised inside the fake to answer with a Status."""

    def __init__(self, code: int, reason: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.body = status_body(code, reason, message, **details)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _ref(resource: str, name: str) -> str:
    group = _GROUP[resource]
    return f'{resource}.{group} "{name}"' if group else f'{resource} "{name}"'


def _condition(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
    }


@dataclass
class _Rollout:
    """Controller bookkeeping for one deployment (not part of the object)."""

    rolled: str
    """The template (canonical JSON) of the last completed rollout."""
    mode: str = "normal"
    """normal | stall | deadline."""
    started: float | None = None


@dataclass
class Fault:
    """An error to answer instead of serving a request (``forbid`` / ``fail``)."""

    code: int
    verb: str | None
    resource: str | None
    namespace: str | None
    name: str | None
    times: int | None
    """How many requests it hits; None = every one."""

    def matches(self, verb: str, resource: str, namespace: str, name: str) -> bool:
        return all(
            want is None or want == got
            for want, got in (
                (self.verb, verb),
                (self.resource, resource),
                (self.namespace, namespace),
                (self.name, name),
            )
        )


@dataclass(eq=False)
class FakeKube:
    """The fake API server plus helpers to arrange and inspect its state."""

    token: str = TOKEN
    delay: float = 0.2
    """Seconds a rollout takes (half of it to be observed and half-rolled)."""
    requests: list[tuple[str, str]] = field(default_factory=list, repr=False)
    """(method, path) of every request served, in order."""
    patches: list[dict[str, Any]] = field(default_factory=list, repr=False)
    """Every accepted PATCH: resource, namespace, name, content_type, body."""
    _objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict, repr=False)
    _rollouts: dict[tuple[str, str], _Rollout] = field(default_factory=dict, repr=False)
    _faults: list[Fault] = field(default_factory=list, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _versions: Iterator[int] = field(default_factory=lambda: itertools.count(1000), repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def start(self) -> FakeKube:
        """Serve on a free local port and start the controller."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._threads = [
            threading.Thread(target=self._server.serve_forever, name="fake-kube", daemon=True),
            threading.Thread(target=self._control, name="fake-kube-controller", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def write_kubeconfig(self, path: Path, context: str = CONTEXT) -> Path:
        """A kubeconfig (JSON is YAML) whose current context points at this server."""
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": "irbot", "user": {"token": self.token}}],
            "contexts": [
                {"name": context, "context": {"cluster": context, "user": "irbot"}},
            ],
            "current-context": context,
        }
        path.write_text(json.dumps(document, indent=2))
        return path

    # ------------------------------------------------------------------ arrange

    def add_deployment(
        self, namespace: str, name: str, replicas: int = 2, paused: bool = False
    ) -> dict[str, Any]:
        """Create a converged Deployment (generation 1, all replicas available)."""
        labels = {"app": name}
        template = {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": name, "image": f"registry.local/{name}:1"}]},
        }
        metadata = {**self._metadata(namespace, name), "generation": 1}
        obj: dict[str, Any] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata,
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": template,
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                },
                "progressDeadlineSeconds": 600,
                "revisionHistoryLimit": 10,
                **({"paused": True} if paused else {}),
            },
            "status": {},
        }
        self._converge(obj)
        with self._lock:
            self._objects["deployments", namespace, name] = obj
            self._rollouts[namespace, name] = _Rollout(rolled=_canonical(template))
        return copy.deepcopy(obj)

    def add_secret(self, namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
        """Create an Opaque Secret; ``data`` values are plain text (stored base64)."""
        obj = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": self._metadata(namespace, name),
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        with self._lock:
            self._objects["secrets", namespace, name] = obj
        return copy.deepcopy(obj)

    def stall(self, namespace: str, name: str) -> None:
        """Rollouts of this deployment stop half-way and never converge."""
        self._set_mode(namespace, name, "stall")

    def deadline_exceeded(self, namespace: str, name: str) -> None:
        """Rollouts stop half-way, then report Progressing=False/ProgressDeadlineExceeded."""
        self._set_mode(namespace, name, "deadline")

    def set_delay(self, seconds: float) -> None:
        """How long future rollouts take to converge."""
        with self._lock:
            self.delay = seconds

    def forbid(
        self,
        verb: str | None = None,
        resource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
    ) -> None:
        """Answer matching requests with 403 as RBAC would (verb: get | patch)."""
        with self._lock:
            self._faults.append(Fault(403, verb, resource, namespace, name, None))

    def fail(
        self,
        code: int,
        times: int = 1,
        verb: str | None = None,
        resource: str | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``code`` (429, 500, 503 ...)."""
        with self._lock:
            self._faults.append(Fault(code, verb, resource, None, None, times))

    # ------------------------------------------------------------------ inspect

    def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        """A copy of the stored Deployment."""
        with self._lock:
            return copy.deepcopy(self._objects["deployments", namespace, name])

    def secret(self, namespace: str, name: str) -> dict[str, Any]:
        """A copy of the stored Secret (``data`` base64, as the API returns it)."""
        with self._lock:
            return copy.deepcopy(self._objects["secrets", namespace, name])

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret, decoded."""
        return base64.b64decode(self.secret(namespace, name)["data"][key]).decode()

    def patch_count(self, resource: str, namespace: str, name: str) -> int:
        """How many PATCHes of one object were accepted."""
        with self._lock:
            return sum(
                1
                for p in self.patches
                if (p["resource"], p["namespace"], p["name"]) == (resource, namespace, name)
            )

    # ------------------------------------------------------------------ serving

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        """Serve one request; returns (HTTP status, JSON body)."""
        with self._lock:
            self.requests.append((method, path))
        try:
            if headers.get("authorization") != f"Bearer {self.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            route = next(
                (
                    (resource, m.group(1), m.group(2))
                    for rx, resource in _ROUTES
                    if (m := rx.match(path))
                ),
                None,
            )
            if route is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            resource, namespace, name = route
            verb = {"GET": "get", "PATCH": "patch"}.get(method)
            if verb is None:
                raise ApiError(405, "MethodNotAllowed", f"{method} is not supported by the fake")
            self._check_faults(verb, resource, namespace, name)
            if verb == "get":
                return 200, self._get(resource, namespace, name)
            content_type = headers.get("content-type", "").split(";")[0].strip()
            return 200, self._patch(resource, namespace, name, content_type, body)
        except ApiError as exc:
            return exc.code, exc.body

    def _check_faults(self, verb: str, resource: str, namespace: str, name: str) -> None:
        with self._lock:
            for fault in self._faults:
                if not fault.matches(verb, resource, namespace, name):
                    continue
                if fault.times is not None:
                    if fault.times <= 0:
                        continue
                    fault.times -= 1
                if fault.code == 403:
                    group = _GROUP[resource]
                    raise ApiError(
                        403,
                        "Forbidden",
                        f'{_ref(resource, name)} is forbidden: User "{USER}" cannot {verb} '
                        f'resource "{resource}" in API group "{group}" in the namespace '
                        f'"{namespace}"',
                        name=name,
                        group=group,
                        kind=resource,
                    )
                reason = HTTPStatus(fault.code).phrase.replace(" ", "")
                raise ApiError(fault.code, reason, f"injected {fault.code} from the fake")

    def _get(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._find(resource, namespace, name))

    def _find(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        obj = self._objects.get((resource, namespace, name))
        if obj is None:
            raise ApiError(
                404,
                "NotFound",
                f"{_ref(resource, name)} not found",
                name=name,
                group=_GROUP[resource],
                kind=resource,
            )
        return obj

    def _patch(
        self, resource: str, namespace: str, name: str, content_type: str, body: bytes
    ) -> dict[str, Any]:
        if content_type not in MERGE_TYPES:
            raise ApiError(
                415, "UnsupportedMediaType", f"the fake does not support {content_type!r}"
            )
        try:
            patch = json.loads(body)
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"invalid JSON in the patch: {exc}") from exc
        if not isinstance(patch, dict):
            raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
        with self._lock:
            current = self._find(resource, namespace, name)
            wanted = (patch.get("metadata") or {}).get("resourceVersion")
            if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f"Operation cannot be fulfilled on {_ref(resource, name)}: the object has "
                    "been modified; please apply your changes to the latest version and try "
                    "again",
                    name=name,
                    group=_GROUP[resource],
                    kind=resource,
                )
            updated = merge(current, patch)
            for key in ("name", "namespace", "uid", "creationTimestamp", "generation"):
                if key in current["metadata"]:
                    updated["metadata"][key] = current["metadata"][key]
            updated["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            if resource == "deployments":
                updated["status"] = current["status"]  # status is a subresource
                self._validate_deployment(updated, name)
                if _canonical(updated["spec"]) != _canonical(current["spec"]):
                    updated["metadata"]["generation"] += 1
                    self._rollouts[namespace, name].started = None
            else:
                self._validate_secret(current, updated, name)
            self.patches.append(
                {
                    "resource": resource,
                    "namespace": namespace,
                    "name": name,
                    "content_type": content_type,
                    "body": patch,
                }
            )
            if _canonical(updated) != _canonical(current):  # no-op patches keep the version
                updated["metadata"]["resourceVersion"] = str(next(self._versions))
                self._objects[resource, namespace, name] = updated
            return copy.deepcopy(self._objects[resource, namespace, name])

    @staticmethod
    def _validate_deployment(obj: dict[str, Any], name: str) -> None:
        spec = obj.get("spec") or {}
        replicas = spec.get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(
                422,
                "Invalid",
                f'Deployment.apps "{name}" is invalid: spec.replicas: Invalid value',
            )
        if not spec.get("selector") or not spec.get("template"):
            raise ApiError(422, "Invalid", f'Deployment.apps "{name}" is invalid: spec')

    @staticmethod
    def _validate_secret(current: dict[str, Any], obj: dict[str, Any], name: str) -> None:
        data = obj.setdefault("data", {}) or {}
        for key, text in (obj.pop("stringData", None) or {}).items():
            data[key] = base64.b64encode(str(text).encode()).decode()
        for key, value in data.items():
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, TypeError) as exc:
                raise ApiError(400, "BadRequest", f"data[{key}]: illegal base64 data") from exc
        obj["data"] = data
        if current.get("immutable") and _canonical(data) != _canonical(current.get("data")):
            raise ApiError(
                422,
                "Invalid",
                f'Secret "{name}" is invalid: data: Forbidden: field is immutable when '
                "`immutable` is set",
            )

    def _metadata(self, namespace: str, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": namespace,
            "uid": f"00000000-0000-4000-8000-{next(self._versions):012d}",
            "resourceVersion": str(next(self._versions)),
            "creationTimestamp": CREATED,
            "annotations": {},
        }

    # ------------------------------------------------------------------ the controller

    def _set_mode(self, namespace: str, name: str, mode: str) -> None:
        with self._lock:
            self._rollouts[namespace, name].mode = mode

    def _control(self) -> None:
        while not self._stop.wait(0.01):
            with self._lock:
                for (resource, namespace, name), obj in self._objects.items():
                    if resource == "deployments":
                        self._reconcile(obj, self._rollouts[namespace, name])

    def _reconcile(self, obj: dict[str, Any], rollout: _Rollout) -> None:
        """One controller pass over one deployment (called under the lock)."""
        spec, status = obj["spec"], obj["status"]
        generation = obj["metadata"]["generation"]
        template = _canonical(spec["template"])
        if spec.get("paused"):
            if status.get("observedGeneration") != generation:
                status["observedGeneration"] = generation
                if template != rollout.rolled:
                    status["updatedReplicas"] = 0
                self._touch(obj)
            return
        if template == rollout.rolled and status.get("observedGeneration") == generation:
            return
        now = time.monotonic()
        if rollout.started is None:
            rollout.started = now
        elapsed = now - rollout.started
        if elapsed < self.delay / 2:
            return
        desired = spec["replicas"]
        if rollout.mode == "normal" and elapsed >= self.delay:
            self._converge(obj)
            rollout.rolled, rollout.started = template, None
            self._touch(obj)
            return
        if status.get("observedGeneration") != generation:  # half-way: one pod updated
            status.update(
                observedGeneration=generation,
                replicas=desired + 1,
                updatedReplicas=min(1, desired),
                readyReplicas=desired,
                availableReplicas=desired,
            )
            status["conditions"][-1] = _condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                f'ReplicaSet "{obj["metadata"]["name"]}-{generation}" is progressing.',
            )
            self._touch(obj)
        progressing = status["conditions"][-1]
        if (
            rollout.mode == "deadline"
            and elapsed >= self.delay
            and progressing["reason"] != "ProgressDeadlineExceeded"
        ):
            status["conditions"][-1] = _condition(
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{obj["metadata"]["name"]}-{generation}" has timed out progressing.',
            )
            self._touch(obj)

    @staticmethod
    def _converge(obj: dict[str, Any]) -> None:
        desired = obj["spec"]["replicas"]
        name = obj["metadata"]["name"]
        obj["status"] = {
            "observedGeneration": obj["metadata"]["generation"],
            "replicas": desired,
            "updatedReplicas": desired,
            "readyReplicas": desired,
            "availableReplicas": desired,
            "conditions": [
                _condition("Available", "True", "MinimumReplicasAvailable", "ok"),
                _condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    f'ReplicaSet "{name}-{obj["metadata"]["generation"]}" has successfully '
                    "progressed.",
                ),
            ],
        }

    def _touch(self, obj: dict[str, Any]) -> None:
        obj["metadata"]["resourceVersion"] = str(next(self._versions))


def _handler(fake: FakeKube) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as urllib3 expects
        timeout = 30

        def _serve(self) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0:
                self.close_connection = True
                code, payload = 400, status_body(400, "BadRequest", "bad Content-Length")
            else:
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                code, payload = fake.handle(self.command, urlsplit(self.path).path, headers, body)
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if code == 429:
                self.send_header("Retry-After", "1")
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PATCH = do_PUT = do_POST = do_DELETE = _serve

        def log_message(
            self, format: str, *args: Any
        ) -> None:  # quiet: the demo and tests print their own
            pass

    return Handler
