"""When to try a request again, and how long to wait first.

Why not urllib3's `Retry` inside the adapter: its retries happen below `requests`, so
(1) our rate limiter would not see them and a retry storm could trip the gateway,
(2) the count of retries would be lost when it gives up by raising, (3) a body cut
short on the wire surfaces only when `requests` reads it, above urllib3, (4) it
sleeps whatever `Retry-After` says, uncapped, and (5) an AK/SK signature must be
made fresh for each attempt. We still use its `Retry-After` parser.

A `Retry-After` longer than `retry_after_max` is not waited for at all: one version
answering "come back in a day" must not stall the sync (a 429 holds back every
thread). The client gives that request up at once and the sync reports it as not
fetched; the next sync asks again.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_MAX_RETRY_AFTER = 60.0  # seconds
_PARSER = Retry(0)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    backoff_base: float = 0.5  # seconds before the first retry (before jitter)
    backoff_max: float = 30.0
    retry_after_max: float = DEFAULT_MAX_RETRY_AFTER  # a longer Retry-After: the request is left for the next sync

    def waits_for(self, retry_after: float | None) -> bool:
        """Whether a server's Retry-After is short enough to be honoured."""
        return retry_after is None or retry_after <= self.retry_after_max

    def wait(self, retry_number: int, retry_after: float | None = None) -> float:
        """Seconds to sleep before retry number `retry_number` (1-based).

        Capped exponential backoff with "equal jitter" (half fixed, half random), so
        threads that failed together do not come back together. A server's Retry-After
        wins, with a little jitter on top for the same reason.
        """
        if retry_after is not None:
            return min(retry_after, self.retry_after_max) + random.uniform(0, min(1.0, self.backoff_base))
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (retry_number - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delay-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    if value.strip().isascii() and value.strip().isdigit():  # urllib3 would cut it to 6 hours: keep what was said
        return float(value.strip())
    try:
        return max(0.0, _PARSER.parse_retry_after(value))
    except (InvalidHeader, ValueError, TypeError, OverflowError):
        return None
