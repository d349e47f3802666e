"""The pure domain of irbot.

Nothing in this package talks to the network or imports an SDK (Slack, AWS,
Kubernetes, PagerDuty, DBOS, SQLAlchemy, Starlette); ``tests/test_core_purity.py``
enforces it. Everything here can be used by the CLI without credentials.
"""
