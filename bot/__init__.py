"""irbot: incident-response automation for Slack."""

__version__ = "0.1.0"
"""Kept in step with pyproject.toml (tests/test_cli.py checks it); reading package
metadata here would cost 30 ms at every CLI start."""
