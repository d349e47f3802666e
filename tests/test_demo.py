"""``irbot demo``: the real command, as a process, in a clean environment.

Each test runs the installed ``irbot`` in its own temporary directory with only PATH and
HOME set (no AWS, Slack or Kubernetes variables), so the sandbox has to bring everything
itself: moto, the Kubernetes emulator, the fake Slack and SQLite.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

IRBOT = str(Path(sys.executable).parent / "irbot")

pytestmark = pytest.mark.slow


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """PATH, a fresh HOME and TMPDIR under ``tmp_path``; nothing else from this process."""
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TMPDIR": str(tmp)}
    return env | extra


def irbot(tmp_path: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [IRBOT, *args],
        cwd=tmp_path,
        env=clean_env(tmp_path, **extra_env),
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


def markdown_kinds(text: str) -> list[str]:
    """The event column of the Markdown timeline's table, top to bottom."""
    return re.findall(r"^\| \d+ \| \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \| ([a-z_.]+) \|", text, re.M)


@pytest.fixture(scope="module")
def json_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, str, dict[str, str]]:
    """One `irbot demo --json --data-dir DIR --html F` for the module: (root, report,
    stderr, secrets). The HTML goes into the data dir, so the leak check reads it too."""
    root = tmp_path_factory.mktemp("demo-json")
    done = irbot(
        root,
        "demo",
        "--json",
        "--data-dir",
        "sandbox",
        "--html",
        "sandbox/timeline.html",
        "--reveal-secrets-to",
        "revealed.json",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    revealed = json.loads((root / "revealed.json").read_text())
    return root, report, done.stdout + done.stderr, revealed


def test_demo_refuses_self_approval_and_counts_two_others(
    json_run: tuple[Path, Any, str, dict[str, str]],
) -> None:
    """alice's own approval is refused with the reason; bob's counts and carol's grants,
    and the manual tasks are done by the cast; the run succeeds."""
    _, report, _, _ = json_run
    assert report["ok"] is True
    assert report["status"] == "succeeded"
    votes = [(a["person"], a["outcome"]) for a in report["cast"] if "Approve" in a["doing"]]
    assert votes == [("alice", "refused"), ("bob", "counted"), ("carol", "granted")]
    assert "requested this run and cannot approve it" in report["cast"][0]["reason"]
    tasks = [a for a in report["cast"] if "manual task" in a["doing"]]
    assert [t["outcome"] for t in tasks] == ["accepted", "accepted"]
    kinds = [e["kind"] for e in report["events"]]
    assert kinds.index("approval.refused") < kinds.index("approval.counted")
    assert kinds.index("approval.counted") < kinds.index("approval.granted")
    assert kinds.count("manual.completed") == 2
    assert kinds[-1] == "run.finished"
    assert report["elapsed_seconds"] < 60


def test_demo_rotates_the_secret_and_restarts_the_deployments(
    json_run: tuple[Path, Any, str, dict[str, str]],
) -> None:
    """AWSCURRENT moved to a new version (ids reported, not values); both deployments
    carry a restartedAt and a new generation; the thread reports the rotation."""
    _, report, _, _ = json_run
    secret = report["secret"]
    uuid = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    assert uuid.match(secret["current_version_before"])
    assert uuid.match(secret["current_version_after"])
    assert secret["current_version_after"] != secret["current_version_before"]
    assert set(report["deployments"]) == {"orders-api", "orders-worker"}
    for state in report["deployments"].values():
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", state["restarted_at"])
        assert state["generation"] == 2
    (thread,) = report["thread"]
    assert "Leak response" in thread["root"]
    assert any(secret["current_version_after"] in reply for reply in thread["replies"])


def test_demo_verifies_the_audit_chain_and_exports_markdown(
    json_run: tuple[Path, Any, str, dict[str, str]],
) -> None:
    """The audit chain verified over every event, and the Markdown and HTML files hold
    the same events in the same order."""
    root, report, _, _ = json_run
    assert report["audit"]["ok"] is True
    assert report["audit"]["checked"] == len(report["events"])
    markdown = Path(report["markdown"])
    assert markdown.is_file()
    assert markdown.is_relative_to(root / "sandbox")
    text = markdown.read_text()
    assert text.startswith(f"# {report['incident_id']}: leak-response")
    assert markdown_kinds(text) == [e["kind"] for e in report["events"]]
    page = Path(report["html"])
    assert page == root / "sandbox" / "timeline.html"
    rows = re.findall(r'<tr id="ev-\d+" data-seq="\d+" data-kind="([a-z_.]+)"', page.read_text())
    assert rows == [e["kind"] for e in report["events"]]


def test_demo_leaks_no_secret_value(json_run: tuple[Path, Any, str, dict[str, str]]) -> None:
    """Neither the leaked value nor the rotated one is in the output or any file of the
    data dir (databases, log, kubeconfig, Markdown)."""
    root, _, output, revealed = json_run
    canaries = [revealed["old"], revealed["new"]]
    canaries += [json.loads(value)["password"] for value in canaries]
    assert len(set(canaries)) == 4
    files = [p for p in (root / "sandbox").rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"irbot.sqlite", "dbos.sqlite", "irbot.log"}
    for canary in canaries:
        assert canary not in output
        for path in files:
            assert canary.encode() not in path.read_bytes(), f"a secret value is in {path}"


def test_demo_for_people_ignores_real_settings_and_cleans_up(tmp_path: Path) -> None:
    """Plain output tells the story live (banner, refusal with its reason, approvals,
    rollouts, tasks, timeline, audit, thread, time); the caller's AWS, Slack and
    Kubernetes settings are ignored; the temporary directory is gone afterwards."""
    done = irbot(
        tmp_path,
        "demo",
        AWS_ENDPOINT_URL="http://127.0.0.1:9",
        AWS_PROFILE="production-admin",
        SLACK_BOT_TOKEN="xoxb-not-a-real-token-0000",
        SLACK_API_URL="http://127.0.0.1:9/api/",
        KUBECONFIG=str(tmp_path / "no-such-kubeconfig"),
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert out.startswith("SANDBOX: nothing here touches a real cloud")
    refused = out.index("REFUSED: alice requested this run and cannot approve it")
    assert refused < out.index("approval.counted approve (user:bob)")
    assert out.index("approval.granted approve (user:carol)") < out.index("step.succeeded rotate")
    assert "rolled out, 3 of 3 pods" in out
    assert "alice does the manual task revoke_at_source by hand and clicks Done" in out
    assert "Timeline of INC-1" in out
    assert "audit chain verified" in out
    assert "Slack thread in #incidents" in out
    assert "xoxb-" not in out + done.stderr
    elapsed = re.search(r"^demo succeeded in ([\d.]+) s", out, re.M)
    assert elapsed is not None
    assert float(elapsed.group(1)) < 60
    written = re.search(r"Markdown timeline written to (\S+)", out)
    assert written is not None
    assert Path(written.group(1)) == tmp_path / "irbot-demo-INC-1.md"
    assert "approval.refused" in Path(written.group(1)).read_text()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_demo_refuses_a_used_data_dir(tmp_path: Path) -> None:
    """A non-empty --data-dir is refused with a clear message before anything starts."""
    used = tmp_path / "used"
    used.mkdir()
    (used / "irbot.sqlite").write_text("someone's data")
    done = irbot(tmp_path, "demo", "--data-dir", "used")
    assert done.returncode != 0
    assert "is not an empty directory" in done.stderr
    assert "Traceback" not in done.stderr
    assert [p.name for p in used.iterdir()] == ["irbot.sqlite"]
