"""Retry delays: exponential or fixed backoff with deterministic jitter.

The jitter is drawn from a hash of the step's idempotency key and the attempt, not
from a random generator, so a workflow replaying after a crash sleeps exactly as
long as the first time (DBOS workflows must be deterministic).
"""

from __future__ import annotations

import hashlib

from bot.core.playbook import Retry

NO_RETRY = Retry(attempts=1)


def delay(policy: Retry, attempt: int, key: str) -> float:
    """Seconds to wait after failed ``attempt`` (1-based) before the next one.

    Exponential: ``delay * 2**(attempt-1)`` capped at ``max_delay``, then "equal jitter"
    (between half and all of it) so retries of a fan-out do not stampede together.
    """
    base = policy.delay.total_seconds()
    cap = policy.max_delay.total_seconds()
    raw = base if policy.backoff == "fixed" else base * 2 ** (attempt - 1)
    raw = min(raw, cap)
    digest = hashlib.sha256(f"{key}#{attempt}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return raw / 2 + fraction * raw / 2
