"""The ``irbot`` command.

Start-up stays cheap: SDKs (boto3, slack_bolt, dbos ...) are imported only inside the
commands that need them, so ``irbot playbook validate`` runs in well under a second
(``bench/validate_startup.py``).
"""

from __future__ import annotations

import click

from bot import __version__
from bot.cli.output import run_guarded
from bot.cli.playbook import playbook


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="irbot")
def cli() -> None:
    """irbot: incident-response playbooks with two-person approval gates.

    \b
    Validate and preview playbooks:
      irbot playbook validate playbooks/
      irbot playbook plan leak-response --input secret_id=prod/db
    """


cli.add_command(playbook)


def main() -> None:
    """Console-script entry point."""
    run_guarded(cli)
