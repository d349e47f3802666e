"""Shared set-up for the engine benchmarks: a throw-away irbot installation."""

from __future__ import annotations

import os
import tempfile
import textwrap
from pathlib import Path

GROUPS = "groups: {sre: [U01, U02, U03], security: [U04], breakglass: []}\n"


def install(
    playbooks: dict[str, str], root: Path | None = None, database_url: str | None = None
) -> Path:
    """Write playbooks and irbot.yaml into a fresh directory and point the env at it."""
    root = root or Path(tempfile.mkdtemp(prefix="irbot-bench-"))
    (root / "playbooks").mkdir(parents=True, exist_ok=True)
    for name, text in playbooks.items():
        (root / "playbooks" / f"{name}.yaml").write_text(textwrap.dedent(text).lstrip())
    starts = "".join(f"  {name}: {{start: [sre]}}\n" for name in playbooks)
    (root / "irbot.yaml").write_text("slack: {channel: C0}\n" + GROUPS + "playbooks:\n" + starts)
    os.environ.update(
        {
            "IRBOT_DATA_DIR": str(root / "data"),
            "IRBOT_CONFIG": str(root / "irbot.yaml"),
            "IRBOT_PLAYBOOKS": str(root / "playbooks"),
            "IRBOT_LOCAL_APPROVALS": "1",
        }
    )
    os.environ.pop("IRBOT_DATABASE_URL", None)
    if database_url:
        os.environ["IRBOT_DATABASE_URL"] = database_url
    return root


def submit(name: str, store: object = None, **inputs: object) -> str:
    from bot.core import inputs as input_rules
    from bot.core import library
    from bot.core.config import load_config
    from bot.engine import client, runtime
    from bot.settings import load_settings

    settings = load_settings()
    lib = library.read([settings.playbooks_dir])
    loaded = lib.get(name)
    values = input_rules.resolve(inputs, loaded.playbook)
    done = client.submit(
        settings,
        store or runtime.current().store,
        loaded,
        values,
        requester="U01",
        library=lib.loaded(),
        config=load_config(settings.config_path),
    )
    return done.run_id
