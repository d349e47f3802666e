"""leak-response at scale: rotate 200 generic secrets (moto) and restart 20 deployments.

Three figures for the work after the gate (approval granted -> run finished):
  * irbot: one run, rotations fanned out under the Secrets Manager write limit
    (15 rotations/s = 45 writes/s) and restarts at concurrency 5;
  * one by one: the same action code called in a plain loop, the shape of a hand-run
    shell script (no engine, no timeline);
  * the write-quota floor: 200 rotations x 3 writes / 50 writes per second, plus the
    restarts' own floor (ceil(20 / 5) rollouts of the fake controller's delay).

AWS is moto's server in a process of its own, Kubernetes the fake API server from
tests/ in this one; both share this 2-core machine with irbot, so absolute times
include their CPU cost.

Usage: cd bench && ../.venv/bin/python leak_bulk.py [--secrets 200] [--deployments 20]
       [--rollout-seconds 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _support import install, submit

PLAYBOOK = """
name: leak-bulk
version: 1
inputs:
  secret_ids: {type: list, default: []}
  deployments: {type: list, default: []}
steps:
  - id: approve
    approval: {min: 2, from: [group:sre], ttl: 15m}
  - id: rotate
    action: aws.secretsmanager.rotate
    for_each: "{{ inputs.secret_ids }}"
    concurrency: 20
    with: {secret_id: "{{ item }}"}
  - id: restart
    action: k8s.rollout_restart
    for_each: "{{ inputs.deployments }}"
    concurrency: 5
    with: {name: "{{ item }}", namespace: production, wait: true}
"""

WRITES_PER_ROTATION = 3
QUOTA_TPS = 50


def start_moto() -> subprocess.Popen[bytes]:
    """moto's server in its own process, as AWS is another machine: its CPU is not ours."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": url,
        }
    )
    return server


def arrange(kube: Any, prefix: str, secrets: int, deployments: int) -> tuple[list[str], list[str]]:
    import boto3

    sm = boto3.client("secretsmanager")
    ids = [f"{prefix}/app-{n:03d}" for n in range(secrets)]
    for sid in ids:
        sm.create_secret(Name=sid, SecretString=json.dumps({"api_key": os.urandom(16).hex()}))
    names = [f"{prefix}-dep-{n:02d}" for n in range(deployments)]
    for name in names:
        kube.add_deployment("production", name)
    return ids, names


async def with_irbot(ids: list[str], names: list[str]) -> tuple[float, float, float]:
    from bot.engine import client, runtime
    from bot.settings import load_settings

    settings = load_settings()
    rt = await runtime.launch(settings, concurrency_values=(5, 20))
    try:
        run_id = submit("leak-bulk", secret_ids=ids, deployments=names)
        while rt.store.get_run(run_id).status != "waiting":
            await asyncio.sleep(0.05)
        for user in ("U02", "U03"):
            await asyncio.to_thread(
                client.vote, settings, rt.store, run_id, user=user, decision="approve"
            )
        while rt.store.get_run(run_id).status not in ("succeeded", "failed"):
            await asyncio.sleep(0.1)
        run = rt.store.get_run(run_id)
        assert run.status == "succeeded", run.detail
        events = rt.store.events(run_id=run_id)
    finally:
        runtime.shutdown()
    granted = next(e.at for e in events if e.kind == "approval.granted")
    finished = next(e.at for e in events if e.kind == "run.finished")
    rotations = [e for e in events if e.step_id == "rotate" and e.kind == "step.succeeded"]
    assert len(rotations) == len(ids), len(rotations)
    rot_start = min(e.at.timestamp() - e.payload["duration_ms"] / 1000 for e in rotations)
    rot_end = max(e.at.timestamp() for e in rotations)
    restarts = [e for e in events if e.step_id == "restart" and e.kind == "step.succeeded"]
    res_start = min(e.at.timestamp() - e.payload["duration_ms"] / 1000 for e in restarts)
    res_end = max(e.at.timestamp() for e in restarts)
    durations = sorted(e.payload["duration_ms"] for e in rotations)
    print(
        f"  (rotation call p50 {durations[len(durations) // 2]:.0f} ms, "
        f"p90 {durations[int(len(durations) * 0.9)]:.0f} ms inside the engine)"
    )
    return (finished - granted).total_seconds(), rot_end - rot_start, res_end - res_start


async def one_by_one(ids: list[str], names: list[str]) -> tuple[float, float]:
    from bot.core.catalog import default_catalog
    from bot.core.redaction import Redactor
    from bot.engine.actions import ActionContext, default_registry

    registry, catalog = default_registry(), default_catalog()

    async def call(action: str, step: str, n: int, args: dict[str, Any]) -> None:
        ctx = ActionContext(
            run_id="serial",
            step_id=step,
            item_index=n,
            attempt=1,
            incident_id="INC-0",
            redactor=Redactor(),
        )
        spec = catalog[action]
        assert spec.inputs is not None
        await registry.get(action).run(spec.inputs.model_validate(args), ctx)

    began = time.perf_counter()
    for n, sid in enumerate(ids):
        await call("aws.secretsmanager.rotate", "rotate", n, {"secret_id": sid})
    rotated = time.perf_counter()
    for n, name in enumerate(names):
        await call(
            "k8s.rollout_restart",
            "restart",
            n,
            {"name": name, "namespace": "production", "wait": True},
        )
    return rotated - began, time.perf_counter() - rotated


def main(secrets: int, deployments: int, rollout_seconds: float) -> None:
    from tests.fake_kube import FakeKube

    install({"leak-bulk": PLAYBOOK})
    moto = start_moto()
    kube = FakeKube().start()
    kube.set_delay(rollout_seconds)
    kubeconfig = Path(tempfile.mkdtemp(prefix="irbot-bench-kube-")) / "config"
    os.environ["KUBECONFIG"] = str(kube.write_kubeconfig(kubeconfig))
    try:
        ids, names = arrange(kube, "engine", secrets, deployments)
        total, rot, res = asyncio.run(with_irbot(ids, names))
        ids, names = arrange(kube, "serial", secrets, deployments)
        serial_rot, serial_res = asyncio.run(one_by_one(ids, names))
    finally:
        kube.stop()
        moto.terminate()
        moto.wait(timeout=10)
    rot_floor = secrets * WRITES_PER_ROTATION / QUOTA_TPS
    res_floor = math.ceil(deployments / 5) * rollout_seconds
    floor = rot_floor + res_floor
    serial = serial_rot + serial_res
    print(f"{secrets} secrets, {deployments} deployments (rollout {rollout_seconds:g} s):")
    print(f"  irbot, gate granted -> run finished: {total:.2f} s")
    print(f"    rotations {rot:.2f} s, restarts {res:.2f} s")
    print(
        f"  one by one: {serial:.2f} s (rotations {serial_rot:.2f} s, restarts {serial_res:.2f} s)"
    )
    print(
        f"  write-quota floor: {floor:.2f} s (rotations {rot_floor:.2f} s = {secrets} x "
        f"{WRITES_PER_ROTATION} writes / {QUOTA_TPS} TPS, restarts {res_floor:.2f} s)"
    )
    print(f"  ratio irbot / one by one: {total / serial:.2f}x (speed-up {serial / total:.1f}x)")
    print(f"  ratio irbot / quota floor: {total / floor:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--secrets", type=int, default=200)
    parser.add_argument("--deployments", type=int, default=20)
    parser.add_argument("--rollout-seconds", type=float, default=0.5)
    args = parser.parse_args()
    main(args.secrets, args.deployments, args.rollout_seconds)
