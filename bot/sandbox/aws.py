"""AWS for the sandbox: moto's server in this process, on a free local port.

boto3 finds it through ``AWS_ENDPOINT_URL``; the credentials are moto's documented
dummies, so a mistake can never reach a real account. moto keeps its state in memory:
stopping the server forgets everything.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.sandbox import SandboxError

REGION = "us-east-1"
DUMMY_KEY_ID = "testing"
DUMMY_SECRET_KEY = "testing"  # noqa: S105 - moto's documented dummy credentials


class MotoServer:
    """moto's ThreadedMotoServer, started and stopped once."""

    def __init__(self) -> None:
        self._server: Any = None
        self.endpoint = ""

    def start(self) -> str:
        """Serve on 127.0.0.1 (a free port); returns the endpoint URL."""
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request on stderr even with verbose=False.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        try:
            server.start()
        except OSError as exc:
            raise SandboxError(f"cannot start moto on 127.0.0.1: {exc}") from exc
        self._server = server
        host, port = server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self.endpoint

    def env(self) -> dict[str, str]:
        """The variables that point boto3 (in this process and children) at moto."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": DUMMY_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
