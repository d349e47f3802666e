"""A local CloudTrail that answers LookupEvents (moto does not implement it).

It speaks CloudTrail's JSON 1.1 protocol over real HTTP, so boto3 reaches it through
``AWS_ENDPOINT_URL_CLOUDTRAIL`` and serialises, signs, retries and parses exactly as
against AWS. It filters on the lookup attribute and [StartTime, EndTime], returns the
newest events first in pages with an opaque ``NextToken``, records every request, and
can answer ``ThrottlingException`` a given number of times.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TARGET = "CloudTrail_20131101.LookupEvents"
"""The end of the X-Amz-Target header (botocore sends it with a namespace prefix)."""


def event(
    name: str,
    at: datetime,
    *,
    ip: str = "203.0.113.7",
    region: str = "us-east-1",
    access_key_id: str = "AKIAFAKEFAKEFAKE0001",
    user: str = "app",
) -> dict[str, Any]:
    """One CloudTrail event as LookupEvents returns it (the record is a JSON string)."""
    record = {
        "eventVersion": "1.09",
        "eventTime": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "s3.amazonaws.com",
        "eventName": name,
        "awsRegion": region,
        "sourceIPAddress": ip,
        "userIdentity": {"type": "IAMUser", "userName": user, "accessKeyId": access_key_id},
    }
    return {
        "EventId": str(uuid.uuid4()),
        "EventName": name,
        "ReadOnly": "true",
        "AccessKeyId": access_key_id,
        "EventTime": at.timestamp(),
        "EventSource": "s3.amazonaws.com",
        "Username": user,
        "Resources": [],
        "CloudTrailEvent": json.dumps(record),
    }


@dataclass
class FakeCloudTrail:
    """State of the fake: the events it holds, the requests it saw, throttles to serve."""

    events: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 50
    throttle: int = 0
    """Answer this many requests with ThrottlingException first (-1: always)."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.requests.append(body)
            if self.throttle:
                if self.throttle > 0:
                    self.throttle -= 1
                return 400, {"__type": "ThrottlingException", "message": "Rate exceeded"}
        matching = sorted(
            (e for e in self.events if _matches(e, body)),
            key=lambda e: e["EventTime"],
            reverse=True,
        )
        offset = int(body.get("NextToken", "page-0").removeprefix("page-"))
        size = min(int(body.get("MaxResults", 50)), self.page_size)
        page = matching[offset : offset + size]
        reply: dict[str, Any] = {"Events": page}
        if offset + size < len(matching):
            reply["NextToken"] = f"page-{offset + size}"
        return 200, reply


def _matches(record: dict[str, Any], body: dict[str, Any]) -> bool:
    for attribute in body.get("LookupAttributes", []):
        if record.get(attribute["AttributeKey"]) != attribute["AttributeValue"]:
            return False
    start = body.get("StartTime", float("-inf"))
    end = body.get("EndTime", float("inf"))
    return bool(start <= record["EventTime"] <= end)


def _handler(fake: FakeCloudTrail) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            if not self.headers.get("X-Amz-Target", "").endswith(TARGET):
                status, reply = 400, {"__type": "UnknownOperationException"}
            else:
                status, reply = fake.answer(body)
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            return

    return Handler


@contextmanager
def serve(fake: FakeCloudTrail) -> Iterator[FakeCloudTrail]:
    """Run ``fake`` on a free local port; ``fake.url`` is its endpoint."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
