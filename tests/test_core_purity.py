"""bot/core/ is the pure domain: it must never import an SDK or a web/database framework."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "bot" / "core"
FORBIDDEN = {
    "slack_bolt",
    "slack_sdk",
    "boto3",
    "botocore",
    "kubernetes",
    "pagerduty",
    "httpx",
    "httpx2",
    "dbos",
    "sqlalchemy",
    "alembic",
    "starlette",
    "uvicorn",
    "redis",
    "psycopg",
    "psycopg2",
}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_modules_import_no_sdk() -> None:
    """No module under bot/core/ names a forbidden package in any import statement."""
    offenders = {
        str(path.relative_to(CORE)): sorted(_imported_roots(path) & FORBIDDEN)
        for path in CORE.rglob("*.py")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert offenders == {}


def test_core_imports_only_core_of_bot() -> None:
    """bot/core/ depends on no other part of bot/ (engine, actions, slack ...)."""
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bot."):
                assert node.module.startswith("bot.core"), f"{path}: imports {node.module}"


def test_importing_core_loads_no_sdk_at_runtime() -> None:
    """Importing every core module in a fresh interpreter pulls in no forbidden package."""
    modules = sorted(
        "bot.core." + ".".join(p.relative_to(CORE).with_suffix("").parts)
        for p in CORE.rglob("*.py")
        if p.name != "__init__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(set({sorted(FORBIDDEN)!r}) & {{n.split('.')[0] for n in sys.modules}}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
    assert len(modules) >= 10
