"""The ``irbot`` command.

Start-up stays cheap: SDKs (boto3, slack_bolt, dbos ...) are imported only inside the
commands that need them, so ``irbot playbook validate`` runs in well under a second
(``bench/validate_startup.py``).
"""

from __future__ import annotations

import sys

import click

from bot import __version__, logs
from bot.cli.demo import demo
from bot.cli.output import fail, run_guarded
from bot.cli.playbook import playbook
from bot.cli.runs import approve, audit, cancel, run, runs, task, timeline, worker
from bot.cli.serve import serve
from bot.cli.shell import shell
from bot.core.errors import IrbotError

SERVICES = frozenset({"serve", "worker"})
"""Long-running commands: their logs are their output and go to stdout. Every other
command logs to stderr, so its stdout stays data (``--json``, ``timeline --format md``)."""
QUIET = frozenset({"playbook"})
"""Commands that only read files and print (no engine, store or SDK that logs): the log
variables are checked, but structlog is not even imported (~0.15 s of start-up)."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="irbot")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """irbot: incident-response playbooks with two-person approval gates.

    \b
    Validate and preview playbooks:
      irbot playbook validate playbooks/
      irbot playbook plan leak-response --input secret_id=prod/db
    \b
    Run them (a worker carries queued runs; approvals come from Slack, or
    locally with IRBOT_LOCAL_APPROVALS=1):
      irbot worker
      irbot run leak-response -i secret_id=prod/db --as U01
      irbot approve RUN --as U02
    \b
    Serve Slack and webhooks (settings from the environment):
      irbot serve --port 3000
    \b
    See it all work in a sandbox:
      irbot demo

    \b
    Logs: JSON lines, or readable text on a terminal (IRBOT_LOG_FORMAT=json|console,
    IRBOT_LOG_LEVEL); secrets are masked. serve and worker log to stdout, the
    other commands to stderr.
    """
    stream = sys.stdout if ctx.invoked_subcommand in SERVICES else sys.stderr
    try:
        choice = logs.resolve(stream=stream)
    except IrbotError as exc:
        fail(exc, as_json="--json" in sys.argv)
    if ctx.invoked_subcommand not in QUIET:
        logs.apply(choice)


for command in (playbook, run, worker, approve, task, runs, cancel, timeline, audit):
    cli.add_command(command)
cli.add_command(demo)
cli.add_command(serve)
cli.add_command(shell)


def main() -> None:
    """Console-script entry point."""
    run_guarded(cli)
