"""Who is at the keyboard: irbot.yaml's members, as the shell names them (pure)."""

from __future__ import annotations

from bot.core.config import Config
from bot.core.errors import UsageError


def default_user(config: Config) -> str:
    """The first member of the first group in irbot.yaml: someone who can act at once."""
    for members in config.groups.values():
        if members:
            return members[0]
    raise UsageError("irbot.yaml lists no group members: say who you are with --as USER")


def who(config: Config, user: str) -> str:
    """``U02 (sre, security)``, or a warning that irbot.yaml does not know the user."""
    groups = sorted(config.groups_of(user))
    if groups:
        return f"{user} ({', '.join(groups)})"
    return f"{user} (in no group of irbot.yaml: may start and approve nothing)"
