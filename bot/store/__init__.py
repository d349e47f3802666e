"""Where incidents, runs and the hash-chained timeline are kept (SQLite or PostgreSQL).

Everything leaving this package is a plain frozen dataclass; ORM rows stay inside.
"""

from bot.store.records import INCIDENT_STATUSES, RUN_FINISHED, RUN_STATUSES, Incident, RunRecord
from bot.store.store import TimelineStore

__all__ = [
    "INCIDENT_STATUSES",
    "RUN_FINISHED",
    "RUN_STATUSES",
    "Incident",
    "RunRecord",
    "TimelineStore",
]
