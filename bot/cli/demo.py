"""``irbot demo``: the main job on a fresh machine, in a sandbox, in well under a minute.

Thin: :mod:`bot.sandbox` builds the installation and plays the story; this module shows
it (live event lines as ``irbot run --wait`` prints them, the timeline as ``irbot
timeline`` does, the Markdown as ``irbot timeline --format md`` does) and checks the
outcome. Neither the leaked secret's old value nor its new one is ever printed.
"""

from __future__ import annotations

import io
import json
import re
import time
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bot.cli.output import console, emit_json, fail, json_option
from bot.core.errors import IrbotError

if TYPE_CHECKING:
    from rich.console import Console

    from bot.core.timeline import StoredEvent
    from bot.sandbox.environment import Sandbox
    from bot.sandbox.scenario import CastAction, Played

_MENTION = re.compile(r"<@([A-Za-z0-9._@-]+)>")


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Build the sandbox in DIR (empty or new; kept). Default: a temporary directory.",
)
@click.option("--keep", is_flag=True, help="Keep the temporary directory (databases, logs).")
@click.option(
    "--markdown",
    "markdown_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the Markdown timeline. Default: in the data dir when it is kept, "
    "else ./irbot-demo-INC-N.md.",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the timeline as one HTML file (the web page, offline) to PATH.",
)
# For tests only, so not in --help: writes the demo secret's old and new values to FILE
# (outside the data dir) so a test can prove they appear nowhere else.
# Test hook (hidden): writes the sandbox secret's old and new values to a file outside the
# data dir, so tests/test_demo.py can prove neither reaches any output. They are values
# moto made up inside this process; no real secret can reach this option.
@click.option("--reveal-secrets-to", "reveal_to", type=click.Path(path_type=Path), hidden=True)
@json_option
def demo(
    data_dir: Path | None,
    keep: bool,
    markdown_path: Path | None,
    *,
    html_path: Path | None,
    reveal_to: Path | None,
    as_json: bool,
) -> None:
    """Run leak-response end to end in a local sandbox (no cloud, no credentials).

    \b
    moto stands in for AWS, a local API emulator for Kubernetes, a local fake for
    Slack, SQLite for the database; three simulated people (alice, bob, carol) start
    the run, try a self-approval, approve it and do the manual tasks. At the end: the
    timeline, the audit-chain check and a Markdown export (and HTML with --html).
    """
    started = time.perf_counter()
    show = _Show(as_json)
    try:
        report = _run(data_dir, keep, markdown_path, show, html_path=html_path, reveal_to=reveal_to)
    except IrbotError as exc:
        if not as_json:
            console(stderr=True).print(
                "demo failed; nothing was left running.", style="bold red", markup=False
            )
        fail(exc, as_json=as_json)
    report["elapsed_seconds"] = round(time.perf_counter() - started, 2)
    if as_json:
        emit_json(report)
    else:
        show.finish(report)
    raise SystemExit(0 if report["ok"] else 1)


def _run(
    data_dir: Path | None,
    keep: bool,
    markdown_path: Path | None,
    show: _Show,
    *,
    html_path: Path | None,
    reveal_to: Path | None,
) -> dict[str, Any]:
    import asyncio

    from bot.sandbox import SandboxError
    from bot.sandbox.environment import Sandbox
    from bot.sandbox.scenario import play

    box = Sandbox.create(data_dir, keep=keep)
    if reveal_to is not None and reveal_to.resolve().is_relative_to(box.root):
        box.close()
        raise SandboxError("--reveal-secrets-to must be outside the data dir")
    with box:
        show.banner(box)
        version_before = box.current_version()
        played = asyncio.run(
            play(
                box.settings,
                on_event=show.event,
                on_cast=show.cast,
                on_tick=lambda: show.world(box.rollout_news()),
            )
        )
        report = _check(box, played, version_before)
        incident = played.run.incident_id
        show.timeline(incident)
        target = markdown_path or _default_markdown(box, incident)
        _write(target, _render_timeline(incident, "md"))
        report["markdown"] = str(target.resolve())
        if html_path is not None:
            _write(html_path, _render_timeline(incident, "html"))
            report["html"] = str(html_path.resolve())
        report["thread"] = [
            {"channel": t.channel, "root": t.root, "replies": t.replies} for t in box.threads()
        ]
        show.thread(box)
        if reveal_to is not None:
            old, new = box.secret_values()
            _write(reveal_to, json.dumps({"old": old, "new": new}))
        report["data_dir"] = str(box.root)
        report["kept"] = box.keep
    return report


def _check(box: Sandbox, played: Played, version_before: str) -> dict[str, Any]:
    """What the run changed in the sandbox, and whether the timeline's chain holds."""
    from bot.engine import runtime
    from bot.sandbox.environment import DEPLOYMENTS, SECRET_ID

    version_after = box.current_version()
    deployments = {
        name: {"restarted_at": box.restarted_at(name), "generation": box.generation(name)}
        for name in DEPLOYMENTS
    }
    store = runtime.open_store(box.settings)
    try:
        verified = store.verify()
    finally:
        store.close()
    run = played.run
    ok = (
        run.status == "succeeded"
        and version_after != version_before
        and all(d["restarted_at"] for d in deployments.values())
        and verified.ok
    )
    return {
        "ok": ok,
        "run_id": run.id,
        "incident_id": run.incident_id,
        "playbook": run.playbook,
        "status": run.status,
        "detail": run.detail,
        "cast": [
            {"person": a.person, "doing": a.doing, "outcome": a.outcome, "reason": a.reason}
            for a in played.actions
        ],
        "secret": {
            "id": SECRET_ID,
            "arn": box.secret_arn,
            "current_version_before": version_before,
            "current_version_after": version_after,
            "rotated": version_after != version_before,
        },
        "deployments": deployments,
        "audit": {
            "ok": verified.ok,
            "checked": verified.checked,
            "first_bad_seq": verified.first_bad_seq,
            "reason": verified.reason,
        },
        "events": [
            {
                "seq": e.seq,
                "at": e.at.isoformat(),
                "kind": e.kind,
                "step": e.step_id,
                "actor": e.actor,
            }
            for e in played.events
        ],
    }


def _default_markdown(box: Sandbox, incident: str) -> Path:
    if box.keep:
        return box.root / f"{incident}-timeline.md"
    return Path.cwd() / f"irbot-demo-{incident}.md"


def _write(path: Path, text: str) -> None:
    from bot.sandbox import SandboxError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise SandboxError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _render_timeline(incident: str, fmt: str) -> str:
    """What ``irbot timeline INC --format FMT`` prints (the same code)."""
    from bot.cli.runs import timeline

    assert timeline.callback is not None
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        timeline.callback(incident_id=incident, fmt=fmt)
    return buffer.getvalue()


@dataclass
class _Show:
    """How the story is told: lines for people, or nothing until the JSON at the end."""

    quiet: bool

    def __post_init__(self) -> None:
        self.out: Console = console()

    def say(self, text: str = "", style: str | None = None) -> None:
        if not self.quiet:
            self.out.print(text, style=style, markup=False)

    def banner(self, box: Sandbox) -> None:
        from bot.sandbox import cast
        from bot.sandbox.environment import DEPLOYMENTS, NAMESPACE, PLAYBOOK, SECRET_ID

        where = "kept" if box.keep else "removed at the end; --keep keeps it"
        deployments = ", ".join(f"{NAMESPACE}/{d}" for d in DEPLOYMENTS)
        people = ", ".join(f"{p.id} ({'/'.join(p.groups)}; {p.role})" for p in cast.CAST)
        self.say(
            "SANDBOX: nothing here touches a real cloud, cluster or Slack workspace.",
            style="bold black on yellow",
        )
        self.say(f"  AWS         moto on {box.moto.endpoint} (dummy credentials, in memory)")
        self.say(f"  Kubernetes  local API emulator at {box.kube.url}: {deployments}")
        self.say("  Slack       local fake Web API; the thread is shown at the end")
        self.say("  PagerDuty   not configured: the optional page steps are skipped")
        self.say(f"  Data        SQLite in {box.root} ({where})")
        self.say(f"  Cast        {people}")
        self.say()
        self.say(
            f"Leaked: {SECRET_ID} (Secrets Manager), read by {', '.join(DEPLOYMENTS)}. "
            f"alice starts {PLAYBOOK}:"
        )
        self.say(
            f"  irbot run {PLAYBOOK} -i secret_id={SECRET_ID} "
            f"-i deployments={','.join(DEPLOYMENTS)} --as alice",
            style="bold",
        )
        self.say()

    def event(self, event: StoredEvent) -> None:
        from bot.cli.runs import _line

        self.say(_line(event))

    def cast(self, action: CastAction) -> None:
        style = "bold red" if action.outcome == "refused" else "bold green"
        self.say(
            f"  >> {action.person} {action.doing}: {action.outcome.upper()}: {action.reason}",
            style=style,
        )

    def world(self, lines: list[str]) -> None:
        for line in lines:
            self.say(f"  .. k8s {line}", style="cyan")

    def timeline(self, incident: str) -> None:
        if self.quiet:
            return
        self.say()
        self.say(f"Timeline of {incident} (irbot timeline {incident})", style="bold underline")
        self.out.print(_render_timeline(incident, "text"), end="", markup=False)

    def thread(self, box: Sandbox) -> None:
        for thread in box.threads():
            self.say()
            self.say(f"Slack thread in {thread.channel}, as it would look", style="bold underline")
            self.say(f"irbot: {_plain(thread.root)}")
            for reply in thread.replies:
                self.say(f"  | irbot: {_plain(reply)}")

    def finish(self, report: dict[str, Any]) -> None:
        secret = report["secret"]
        self.say()
        self.say("Checks", style="bold underline")
        self.say(
            f"  {secret['id']}: AWSCURRENT moved from version {secret['current_version_before']} "
            f"to {secret['current_version_after']} (values are never shown)"
        )
        for name, state in report["deployments"].items():
            self.say(
                f"  {name}: restartedAt {state['restarted_at']}, generation {state['generation']}"
            )
        audit = report["audit"]
        if audit["ok"]:
            self.say(f"  audit chain verified: {audit['checked']} events", style="green")
        else:
            self.say(
                f"  audit chain BROKEN at seq {audit['first_bad_seq']}: {audit['reason']}",
                style="bold red",
            )
        self.say(f"  Markdown timeline written to {report['markdown']}")
        if report.get("html"):
            self.say(f"  HTML timeline written to {report['html']}")
        if report["kept"]:
            self.say(f"  sandbox kept in {report['data_dir']}")
        verdict = "succeeded" if report["ok"] else f"FAILED ({report['detail'] or 'see above'})"
        self.say(
            f"demo {verdict} in {report['elapsed_seconds']:.1f} s: run {report['run_id']} "
            f"of {report['playbook']} for {report['incident_id']} is {report['status']}",
            style="bold green" if report["ok"] else "bold red",
        )


def _plain(text: str) -> str:
    """Slack mrkdwn as a person reads it: mentions by name."""
    return _MENTION.sub(r"@\1", text)
