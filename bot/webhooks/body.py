"""Reading a request body without trusting its sender about its size."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

from bot.core.webhooks import MAX_BODY, PayloadTooLarge, WebhookError

TOO_LARGE = f"the body is larger than 1 MiB ({MAX_BODY} bytes)"


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The raw bytes, at most ``limit`` of them: a Content-Length over the limit is
    refused at once, and a stream that lies about (or omits) it is cut at the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(TOO_LARGE)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise PayloadTooLarge(TOO_LARGE)
    except ClientDisconnect as exc:
        raise WebhookError("the sender disconnected before the body was complete") from exc
    return bytes(body)
