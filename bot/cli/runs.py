"""``irbot run | worker | approve | task | runs | cancel | timeline | audit``.

Thin: each command reads settings, calls :mod:`bot.engine.client` or the store, and
shows the result. Engine and store modules are imported inside the commands, so
``irbot playbook validate`` never pays for them.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

import click

from bot.cli.output import console, emit_json, fail, input_option, json_option
from bot.core.errors import IrbotError, UsageError

if TYPE_CHECKING:
    from bot.settings import Settings
    from bot.store import TimelineStore

as_option = click.option(
    "--as", "user", required=True, metavar="USER", help="Who you are (a Slack user id)."
)


@contextmanager
def _store(as_json: bool) -> Iterator[tuple[Settings, TimelineStore]]:
    from bot.engine.runtime import open_store
    from bot.settings import load_settings

    try:
        settings = load_settings()
        store = open_store(settings)
    except IrbotError as exc:
        fail(exc, as_json=as_json)
    try:
        yield settings, store
    except IrbotError as exc:
        fail(exc, as_json=as_json)
    finally:
        store.close()


@click.command()
@click.argument("playbook_name", metavar="PLAYBOOK")
@input_option
@as_option
@click.option("--wait", is_flag=True, help="Work the run in this process and follow it live.")
@json_option
def run(playbook_name: str, pairs: tuple[str, ...], user: str, wait: bool, as_json: bool) -> None:
    """Start PLAYBOOK as USER; prints the run id and the incident id.

    Without --wait the run is queued for `irbot worker`; with --wait this command
    works it and shows progress until it finishes or stops at a gate.
    """
    from bot.core import inputs, library
    from bot.core.config import load_config
    from bot.engine import client

    with _store(as_json) as (settings, store):
        lib = library.read([settings.playbooks_dir])
        loaded = lib.get(playbook_name)
        values = inputs.parse_pairs(pairs, loaded.playbook)
        config = load_config(settings.config_path)
        valid = {n: lib.get(n) for n in lib.names() if _valid(lib, n)}
        submitted = client.submit(
            settings, store, loaded, values, requester=user, library=valid, config=config
        )
        if as_json and not wait:
            emit_json({"run_id": submitted.run_id, "incident_id": submitted.incident_id})
            return
        if not as_json:
            console().print(
                f"run [bold]{submitted.run_id}[/] started for incident "
                f"[bold]{submitted.incident_id}[/] ({playbook_name})",
                markup=True,
            )
    if wait:
        status = asyncio.run(_work_and_follow(settings, submitted.run_id, as_json=as_json))
        if as_json:
            emit_json(
                {"run_id": submitted.run_id, "incident_id": submitted.incident_id, "status": status}
            )
        raise SystemExit(0 if status in ("succeeded", "waiting") else 1)


def _valid(lib: Any, name: str) -> bool:
    try:
        lib.get(name)
    except IrbotError:
        return False
    return True


async def _work_and_follow(settings: Settings, run_id: str, *, as_json: bool) -> str:
    """Be a worker until the run finishes or parks at a gate or task; print its events."""
    from bot.engine import runtime

    rt = await runtime.launch(settings)
    seen = 0
    out = console()
    try:
        while True:
            events = rt.store.events(run_id=None)
            mine = [
                e
                for e in events
                if e.run_id and (e.run_id == run_id or e.run_id.startswith(f"{run_id}."))
            ]
            for event in mine[seen:]:
                if not as_json:
                    out.print(_line(event), markup=False)
            seen = len(mine)
            run = rt.store.get_run(run_id)
            if run.status in ("succeeded", "failed", "rejected", "expired", "cancelled"):
                return run.status
            if run.status == "waiting":
                if not as_json:
                    out.print(f"run {run_id} is waiting: {_waiting_hint(mine)}", style="yellow")
                return run.status
            await asyncio.sleep(0.1)
    finally:
        runtime.shutdown()


def _waiting_hint(events: list[Any]) -> str:
    for event in reversed(events):
        if event.kind == "approval.requested":
            return (
                f"approval gate {event.payload['gate']} needs {event.payload['min']} "
                f"approvals (digest {str(event.payload['digest'])[:12]}); "
                "start `irbot worker` to carry on after they arrive"
            )
        if event.kind == "manual.requested":
            return f"manual task {event.step_id}: {event.payload.get('instructions', '')}"
        if event.kind == "wait.started":
            return f"durable wait until {event.payload.get('until')}"
    return "see `irbot timeline`"


def _line(event: Any) -> str:
    from bot.core import report

    return _entry_line(report.entry(event))


@click.command()
def worker() -> None:
    """Execute and resume runs until stopped (Ctrl-C or SIGTERM)."""
    from bot.settings import load_settings

    try:
        settings = load_settings()
    except IrbotError as exc:
        fail(exc, as_json=False)
    asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    from bot.engine import runtime

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runtime.launch(settings)
    console(stderr=True).print(f"irbot worker ready (data: {settings.store_url()})")
    try:
        await stop.wait()
    finally:
        runtime.shutdown()


@click.command()
@click.argument("run_id", metavar="RUN")
@as_option
@click.option("--reject", is_flag=True, help="Reject instead of approve (needs --reason).")
@click.option("--reason", help="Why (required to reject and for break-glass).")
@click.option("--breakglass", is_flag=True, help="Pass the gate alone (break-glass group only).")
@click.option("--digest", help="The plan digest you reviewed (default: the gate's current one).")
@json_option
def approve(
    run_id: str,
    *,
    user: str,
    reject: bool,
    reason: str | None,
    breakglass: bool,
    digest: str | None,
    as_json: bool,
) -> None:
    """Approve (or --reject) the gate RUN waits at, as USER.

    Only with IRBOT_LOCAL_APPROVALS=1 (local use and tests): in production approvals
    come from signed Slack requests.
    """
    from bot.engine import client

    with _store(as_json) as (settings, store):
        if not settings.local_approvals:
            raise UsageError(
                "local approvals are off: set IRBOT_LOCAL_APPROVALS=1 (local use and tests "
                "only; in production approve in Slack)"
            )
        client.get_run(store, run_id)
        result = client.vote(
            settings,
            store,
            run_id,
            user=user,
            decision="reject" if reject else "approve",
            reason=reason,
            breakglass=breakglass,
            digest=digest,
        )
    answer = result.answer
    if as_json:
        emit_json({"run_id": result.run_id, "gate": result.gate, "answer": answer})
    elif answer is None:
        console().print(
            f"vote delivered to {result.run_id} gate {result.gate}; no worker has "
            "decided on it yet (is `irbot worker` running?)",
            style="yellow",
        )
    else:
        style = "red" if answer["outcome"] == "refused" else "green"
        text = f"{answer['outcome']}: {answer['reason']}"
        if answer["summary"] not in text:
            text += f" ({answer['summary']})"
        console().print(text, style=style, markup=False)
    raise SystemExit(1 if answer is not None and answer["outcome"] == "refused" else 0)


@click.group()
def task() -> None:
    """Complete a manual task (local use; in production use the Slack buttons)."""


@task.command("done")
@click.argument("run_id", metavar="RUN")
@click.argument("step_id", metavar="[STEP]", required=False)
@as_option
@click.option(
    "--secret-file",
    type=click.File("r"),
    help="Hand over the secret the task asks for from FILE ('-' reads stdin). It goes "
    "straight into AWS Secrets Manager; the run sees only a reference.",
)
@click.option("--note", help="A note for the timeline.")
@json_option
def task_done(
    *,
    run_id: str,
    step_id: str | None,
    user: str,
    secret_file: TextIO | None,
    note: str | None,
    as_json: bool,
) -> None:
    """Mark the manual task RUN waits at (or STEP) as done, as USER."""
    secret = secret_file.read().rstrip("\r\n") if secret_file is not None else None
    _complete(
        run_id=run_id,
        step_id=step_id,
        user=user,
        status="done",
        note=note,
        secret=secret,
        as_json=as_json,
    )


@task.command("failed")
@click.argument("run_id", metavar="RUN")
@click.argument("step_id", metavar="[STEP]", required=False)
@as_option
@click.option("--note", required=True, help="Why it failed (required; stops the run).")
@json_option
def task_failed(run_id: str, step_id: str | None, user: str, note: str, as_json: bool) -> None:
    """Mark the manual task RUN waits at (or STEP) as failed, as USER; the run stops."""
    _complete(
        run_id=run_id,
        step_id=step_id,
        user=user,
        status="failed",
        note=note,
        secret=None,
        as_json=as_json,
    )


def _complete(
    *,
    run_id: str,
    step_id: str | None,
    user: str,
    status: str,
    note: str | None,
    secret: str | None,
    as_json: bool,
) -> None:
    from bot.engine import client

    with _store(as_json) as (settings, store):
        if not settings.local_approvals:
            raise UsageError(
                "local task completion is off: set IRBOT_LOCAL_APPROVALS=1 (local use and "
                "tests only; in production use the task's buttons in Slack)"
            )
        client.get_run(store, run_id)
        result = client.complete_task(
            settings,
            store,
            run_id,
            user=user,
            step_id=step_id,
            status=status,
            note=note,
            secret=secret,
        )
    answer = result.answer
    if as_json:
        emit_json({"run_id": result.run_id, "step": result.step_id, "answer": answer})
    elif answer is None:
        console().print(
            f"answer delivered to {result.run_id} task {result.step_id}; no worker has "
            "decided on it yet (is `irbot worker` running?)",
            style="yellow",
        )
    else:
        refused = answer["outcome"] == "refused"
        console().print(
            f"task {result.step_id}: {answer['outcome']}: {answer['reason']}",
            style="red" if refused else "green",
            markup=False,
        )
    raise SystemExit(1 if answer is not None and answer["outcome"] == "refused" else 0)


@click.command()
@click.option("--status", help="Only runs in this status.")
@click.option("--limit", default=50, show_default=True)
@json_option
def runs(status: str | None, limit: int, as_json: bool) -> None:
    """List recent runs."""
    with _store(as_json) as (_settings, store):
        rows = store.list_runs(status=status, limit=limit)
    if as_json:
        emit_json([_run_dict(r) for r in rows])
        return
    from rich.table import Table

    table = Table("run", "incident", "playbook", "status", "requester", "created (UTC)")
    for r in rows:
        flag = " BREAK-GLASS" if r.breakglass else ""
        table.add_row(
            r.id,
            r.incident_id,
            r.playbook,
            r.status + flag,
            r.requester,
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console().print(table)


def _run_dict(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "incident_id": r.incident_id,
        "playbook": r.playbook,
        "version": r.version,
        "sha256": r.sha256,
        "status": r.status,
        "requester": r.requester,
        "breakglass": r.breakglass,
        "detail": r.detail,
        "inputs": dict(r.inputs),
        "created_at": r.created_at.isoformat(),
        "finished_at": r.finished_at.isoformat() if r.finished_at else None,
    }


@click.command()
@click.argument("run_id", metavar="RUN")
@as_option
@json_option
def cancel(run_id: str, user: str, as_json: bool) -> None:
    """Stop RUN between steps, recording who did it."""
    from bot.engine import client

    with _store(as_json) as (settings, store):
        client.get_run(store, run_id)
        record = client.cancel(settings, store, run_id, user=user)
    if as_json:
        emit_json(_run_dict(record))
    else:
        console().print(f"run {run_id} cancelled by {user}")


@click.command()
@click.argument("incident_id", metavar="INC-ID")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "md", "json", "html"]),
    default="text",
    show_default=True,
    help="md and json are the web page's timeline.md and timeline.json; html is the "
    "page itself as one file (styles inline), rendered offline.",
)
def timeline(incident_id: str, fmt: str) -> None:
    """Print an incident's timeline (text, Markdown, JSON or HTML)."""
    from bot.core import report
    from bot.web.settings import workspace_url_from_env

    with _store(fmt == "json") as (_settings, store):
        rep = store.report(incident_id, slack_base_url=workspace_url_from_env())
    if fmt == "json":
        emit_json(report.to_dict(rep))
        return
    if fmt == "md":
        click.echo(report.to_markdown(rep), nl=False)
        return
    if fmt == "html":
        from bot.web import render

        click.echo(render.incident_page(rep, standalone=True), nl=False)
        return
    out = console()
    out.print(f"{rep.id}: {rep.title} [{rep.status}]", markup=False)
    if rep.breakglass:
        out.print("BREAK-GLASS USED: a gate was passed by one person", style="bold red")
    for e in rep.entries:
        out.print(_entry_line(e), markup=False)
    style = "green" if rep.chain.ok else "bold red"
    out.print(f"audit chain {rep.chain.label}", style=style, markup=False)


def _entry_line(e: Any) -> str:
    detail = f": {e.detail}" if e.detail else ""
    step = f" {e.step}" if e.step else ""
    return f"{e.at.strftime('%H:%M:%S')} {e.kind}{step} ({e.actor}){detail}"


@click.group()
def audit() -> None:
    """Check the tamper-evident timeline."""


@audit.command()
@json_option
def verify(as_json: bool) -> None:
    """Recompute the hash chain; exit 1 naming the first bad event."""
    with _store(as_json) as (_settings, store):
        started = time.perf_counter()
        result = store.verify()
        elapsed = time.perf_counter() - started
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": result.ok,
                    "checked": result.checked,
                    "first_bad_seq": result.first_bad_seq,
                    "first_bad_id": result.first_bad_id,
                    "reason": result.reason,
                }
            )
        )
    elif result.ok:
        console().print(
            f"audit chain verified: {result.checked} events ({elapsed:.2f}s)", style="green"
        )
    else:
        console(stderr=True).print(
            f"audit chain BROKEN at event seq {result.first_bad_seq} "
            f"(id {result.first_bad_id}): {result.reason}",
            style="bold red",
            markup=False,
        )
    raise SystemExit(0 if result.ok else 1)
