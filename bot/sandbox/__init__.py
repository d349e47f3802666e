"""The demo sandbox: irbot's real engine and actions against local stand-ins.

Nothing in here touches a real cloud, cluster or Slack workspace. ``irbot demo`` (and
anyone who wants a throw-away installation) gets:

- :mod:`bot.sandbox.aws` — moto's server in this process, with dummy credentials;
- :mod:`bot.sandbox.kube` — a Kubernetes API emulator with a deployment controller;
- :mod:`bot.sandbox.slack` — a fake Slack Web API that keeps the incident thread;
- :mod:`bot.sandbox.cast` — three simulated people and the irbot.yaml that names them;
- :mod:`bot.sandbox.environment` — all of it wired up under one directory (SQLite);
- :mod:`bot.sandbox.scenario` — leak-response played end to end by the cast.

Submodules are imported by name: moto and the engine take seconds to import, and
``irbot --help`` must not pay for them.
"""

from __future__ import annotations

from bot.core.errors import IrbotError


class SandboxError(IrbotError):
    """The sandbox could not start, or the scripted run did not go as written."""
