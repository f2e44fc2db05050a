"""A requests-per-second budget shared by all threads of a client (a token bucket).

Why proactive: the API gateway throttles per account (APIG.0308, "limit:XX, time:1
minute") and publishes no number; staying under a configured rate avoids the 429s
rather than paying for them with backoff. `pause_until` lets one thread's 429 with
Retry-After hold back every thread, since the throttle is shared too.
"""
from __future__ import annotations

import threading
import time


class RateLimiter:
    """`rate` requests per second on average, bursts of up to `burst`; rate None = no limit."""

    def __init__(self, rate: float | None, burst: float | None = None):
        if rate is not None and rate <= 0:
            rate = None
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else (rate or 1.0))
        self._tokens = self.burst
        self._updated = time.monotonic()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping if the budget is spent; returns the seconds slept.

        A token may be taken "on credit" (the count goes negative): each caller is
        given its own future slot under the lock and sleeps outside it, so waiting
        threads are served in order and none spins.
        """
        with self._lock:
            now = time.monotonic()
            wait = max(0.0, self._paused_until - now)
            if self.rate is not None:
                self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                self._tokens -= 1
                if self._tokens < 0:
                    wait = max(wait, -self._tokens / self.rate)
        if wait > 0:
            time.sleep(wait)
        return wait

    def pause_until(self, deadline: float) -> None:
        """No request starts before `deadline` (a time.monotonic() value)."""
        with self._lock:
            self._paused_until = max(self._paused_until, deadline)
