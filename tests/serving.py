"""Serving things to tests on loopback: free ports, waiting for readiness, and an ASGI
app under uvicorn in a thread with its own event loop (as in production)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(
    url: str,
    *,
    alive: Callable[[], bool] = lambda: True,
    timeout: float = 60,
    why: Callable[[], str] = lambda: "",
) -> None:
    """Poll ``url`` until it answers 200; fail early once ``alive()`` says the server
    is gone, with ``why()`` (a log, say) in the message."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if not alive():
            raise AssertionError(f"the server stopped before {url} answered\n{why()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer 200 in {timeout:g} s\n{why()}")
        time.sleep(0.05)


@contextmanager
def serve_app(app: Any, name: str = "uvicorn") -> Iterator[str]:
    """``app`` under uvicorn (lifespan on) in a thread; yields the base URL once
    ``/readyz`` answers, and stops the server afterwards."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/readyz", alive=thread.is_alive)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
