"""When a failed delivery is tried again."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; a server's ``Retry-After`` is honoured, up to a cap.

    The n-th consecutive failure waits between half and all of
    ``min(longest, first * 2 ** (n - 1))`` seconds ("equal jitter"): spread
    out, so many workers that failed together do not come back together, and
    never much shorter than the backoff.

    :param first: the first retry comes after about this many seconds.
    :param longest: waits grow no longer than this.
    :param retry_after_cap: the longest ``Retry-After`` obeyed; a longer one waits this long.
    :param max_age: an event still undelivered this long after it happened is
        dead: kept in the outbox, not sent (``bangi-landing outbox retry-dead``
        revives it).
    """

    first: float = 1.0
    longest: float = 300.0  # 5 minutes
    retry_after_cap: float = 3600.0  # 1 hour
    max_age: float = 24 * 3600.0  # 24 hours

    def delay(
        self,
        failures: int,
        retry_after: float | None = None,
        *,
        jitter: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait after ``failures`` failures in a row (1 for the first)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap)
        ceiling = min(self.longest, self.first * 2.0 ** min(max(failures, 1) - 1, 64))
        return ceiling / 2 + jitter() * ceiling / 2
