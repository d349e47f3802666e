"""The engine end to end in-process: a gated playbook runs after two approvals."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.actions.testing import read_records
from tests.engine_support import Harness

GATED = """
name: gated
version: 1
inputs:
  targets: {type: list, default: [a, b, c]}
steps:
  - id: hello
    action: test.noop
    with: {msg: "hi {{ run.requester }}"}
  - id: gate
    approval: {from: [group:sre], ttl: 10m}
  - id: boom
    action: test.destructive
    with: {target: x}
  - id: fan
    action: test.destructive
    for_each: "{{ inputs.targets }}"
    concurrency: 2
    with: {target: "{{ item }}"}
"""


def test_gated_run_finishes_after_two_approvals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """Two distinct allowed people approve; then every destructive call happens once."""
    h = Harness(tmp_path, database_url, monkeypatch)
    h.add_playbook(GATED)

    async def scenario() -> None:
        await h.start()
        try:
            run_id = h.submit("gated", "U01")
            await h.wait_for(run_id, {"waiting"})
            assert read_records("destructive") == []
            first = await h.vote(run_id, "U02")
            assert first is not None and first["outcome"] == "counted"
            second = await h.vote(run_id, "U03")
            assert second is not None and second["outcome"] == "granted"
            run = await h.wait_for(run_id)
            assert run.status == "succeeded"
            keys = sorted(r["key"] for r in read_records("destructive"))
            assert keys == sorted(
                [f"{run_id}:boom", f"{run_id}:fan:0", f"{run_id}:fan:1", f"{run_id}:fan:2"]
            )
            assert h.store.verify().ok
        finally:
            h.stop()

    asyncio.run(scenario())
