"""irbot: incident-response automation for Slack."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("irbot")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0+unknown"
