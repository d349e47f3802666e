"""Helpers for the Secrets Manager tests: a private Redis server and a moto rotation Lambda.

The shared Redis server must keep its ``requirepass``; the default-user rotation runs
against a private ``redis-server`` started from a config file (so ``CONFIG REWRITE``
has somewhere to save). moto runs a rotation Lambda only without Docker when its
``lambda.use_docker`` setting is off; :func:`lambda_without_docker` turns it off for one
test and back on after.
"""

from __future__ import annotations

import io
import json
import subprocess
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from tests.serving import free_port

REDIS_SERVER = "/usr/bin/redis-server"


@dataclass(frozen=True)
class PrivateRedis:
    port: int
    config: Path


@contextmanager
def private_redis(directory: Path, password: str) -> Iterator[PrivateRedis]:
    """A redis-server on a free port with ``requirepass``, stopped afterwards."""
    port = free_port()
    config = directory / "redis.conf"
    config.write_text(
        f'port {port}\nbind 127.0.0.1\nrequirepass "{password}"\nsave ""\n'
        f'appendonly no\ndir "{directory}"\n'
    )
    process = subprocess.Popen(
        [REDIS_SERVER, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port, password=password)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        client.close()
        yield PrivateRedis(port=port, config=config)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _moto_config(endpoint: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/config", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


@contextmanager
def lambda_without_docker(endpoint: str) -> Iterator[str]:
    """A Lambda function in moto that "runs" without Docker; yields its ARN."""
    import boto3

    _moto_config(endpoint, {"lambda": {"use_docker": False}})
    try:
        iam = boto3.client("iam")
        role = iam.create_role(RoleName="irbot-rotation-test", AssumeRolePolicyDocument="{}")
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("rotate.py", "def handler(event, context):\n    return None\n")
        function = boto3.client("lambda").create_function(
            FunctionName="irbot-rotation-test",
            Runtime="python3.12",
            Role=role["Role"]["Arn"],
            Handler="rotate.handler",
            Code={"ZipFile": code.getvalue()},
        )
        yield function["FunctionArn"]
    finally:
        _moto_config(endpoint, {"lambda": {"use_docker": True}})
