"""Make irbot's boto3 clients meet AWS errors: throttling bursts and 5xx answers.

A ``before-send`` handler on irbot's shared boto3 session answers chosen operations
with an error response before the request leaves, so botocore parses, classifies and
retries it exactly as an answer from AWS would be (botocore's Stubber bypasses retries).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.awsrequest import AWSResponse

from bot.actions.aws import client


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


class Fault:
    """Counts the requests it answered."""

    def __init__(self, times: int | None) -> None:
        self.left = times
        self.answered = 0
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.left is not None:
                if self.left <= 0:
                    return False
                self.left -= 1
            self.answered += 1
            return True


@contextmanager
def json_error(
    event: str, status: int, error_type: str, *, times: int | None = None
) -> Iterator[Fault]:
    """Answer ``event`` (``before-send.secrets-manager.PutSecretValue``) with a JSON-protocol
    error ``status``/``error_type``, the first ``times`` requests (None: all of them)."""
    fault = Fault(times)
    body = json.dumps({"__type": error_type, "message": "injected by the test"}).encode()

    def reply(request: Any, **_: Any) -> AWSResponse | None:
        if not fault.take():
            return None
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        return AWSResponse(request.url, status, headers, _Body(body))  # type: ignore[arg-type]

    events = client._session().events
    events.register(event, reply)
    client.forget_clients()
    try:
        yield fault
    finally:
        events.unregister(event, reply)
        client.forget_clients()
