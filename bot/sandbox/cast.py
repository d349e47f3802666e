"""The simulated people of the demo and the irbot.yaml that makes them who they are.

Their ids are plain names (irbot.yaml accepts local names as well as Slack ids), so the
timeline reads ``user:bob`` rather than ``user:U02…``.
"""

from __future__ import annotations

from dataclasses import dataclass

CHANNEL = "C0INCIDENTS"
"""The notification channel (an id, so slack.post can find its earlier posts)."""
CHANNEL_NAME = "#incidents"


@dataclass(frozen=True)
class Person:
    id: str
    groups: tuple[str, ...]
    role: str
    """What they do in the story, for the banner."""


REQUESTER = Person("alice", ("sre",), "on call; starts the run")
APPROVERS = (
    Person("bob", ("sre",), "approves"),
    Person("carol", ("security",), "approves"),
)
CAST = (REQUESTER, *APPROVERS)


def config_text(playbooks: tuple[str, ...]) -> str:
    """irbot.yaml for the sandbox: groups from the cast; sre and security may start."""
    groups: dict[str, list[str]] = {}
    for person in CAST:
        for group in person.groups:
            groups.setdefault(group, []).append(person.id)
    lines = [
        "# irbot.yaml of the irbot demo sandbox (written by `irbot demo`).",
        f"slack: {{channel: {CHANNEL}}}",
        "groups:",
        *(f"  {name}: [{', '.join(members)}]" for name, members in groups.items()),
        "  breakglass: []",
        "playbooks:",
        *(f"  {name}: {{start: [sre, security]}}" for name in playbooks),
    ]
    return "\n".join(lines) + "\n"
