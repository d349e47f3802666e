"""Wrong access tokens, counted per client: a guesser is slowed to a crawl, nobody else is.

``IRBOT_WEB_TOKEN`` is at least 16 characters, so guessing a random one is hopeless; this
is the net under a token that is long but guessable. After :attr:`FailureThrottle.limit`
wrong tokens from one client address within :attr:`FailureThrottle.window` seconds, its
next attempts (``POST /login``, a page with an ``Authorization`` header) are answered 429
with ``Retry-After`` without looking at the token, until its oldest failure leaves the
window. Session cookies are not throttled: they are HMAC-signed, nothing to guess there.
A blocked client is logged once per block, not once per request (no log flood).
Counts live in this process (each replica counts its own) and forget the quietest
client first when :attr:`FailureThrottle.max_clients` are tracked.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

LIMIT = 20
WINDOW_SECONDS = 60.0
MAX_CLIENTS = 10_000


@dataclass
class FailureThrottle:
    limit: int = LIMIT
    window: float = WINDOW_SECONDS
    max_clients: int = MAX_CLIENTS
    clock: Callable[[], float] = time.monotonic
    _failures: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)
    _reported: dict[str, float] = field(default_factory=dict)
    """Client -> the end of the block last logged for it."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def retry_after(self, client: str) -> int | None:
        """Whole seconds ``client`` must wait before trying a token again, or None."""
        with self._lock:
            failures = self._recent(client)
            if failures is None or len(failures) < self.limit:
                return None
            return max(1, math.ceil(failures[0] + self.window - self.clock()))

    def first_refusal(self, client: str) -> bool:
        """Whether this refusal of a blocked ``client`` is the first of its block."""
        with self._lock:
            failures = self._recent(client)
            if not failures:
                return False
            end = failures[0] + self.window
            if self._reported.get(client) == end:
                return False
            self._reported[client] = end
            return True

    def failed(self, client: str) -> None:
        with self._lock:
            failures = self._recent(client)
            if failures is None:
                failures = self._failures[client] = deque(maxlen=self.limit)
            failures.append(self.clock())
            self._failures.move_to_end(client)
            while len(self._failures) > self.max_clients:
                dropped, _ = self._failures.popitem(last=False)
                self._reported.pop(dropped, None)

    def succeeded(self, client: str) -> None:
        """The right token: the client's count starts again (a person who mistyped)."""
        with self._lock:
            self._failures.pop(client, None)
            self._reported.pop(client, None)

    def _recent(self, client: str) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        cutoff = self.clock() - self.window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        return failures
