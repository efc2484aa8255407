"""When a failed delivery is tried again, when an event is given up on, when a destination rests."""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CircuitBreaker", "RetryPolicy"]

# Jitter from a generator of our own: the app's use of the random module (a seed,
# a test's) neither steers our retries nor is disturbed by our threads.
_jitter = random.Random().random


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
    :param pause_after: this many different events failing in a row, with no
        delivery between, pause the destination as a whole (see
        :class:`CircuitBreaker`); fewer are taken to be those events' own
        failures, and each backs off alone.
    :param refused_attempts: an event that failed this many times, at least
        ``refused_for`` seconds after it happened, while the destination took
        other events since its previous attempt, is dead: the tracker keeps
        refusing it (a 5xx for what it holds) and it would hold its journey's
        later events back until ``max_age``. With the default backoff, ten
        attempts take four minutes at least; the hour lets a tracker fix a
        passing fault first. A tracker that is down takes no other events, so
        an outage kills nothing before ``max_age``.
    :param refused_for: see ``refused_attempts``.
    """

    first: float = 1.0
    longest: float = 300.0  # 5 minutes
    retry_after_cap: float = 3600.0  # 1 hour
    max_age: float = 24 * 3600.0  # 24 hours
    pause_after: int = 5
    refused_attempts: int = 10
    refused_for: float = 3600.0  # 1 hour

    def delay(
        self,
        failures: int,
        retry_after: float | None = None,
        *,
        jitter: Callable[[], float] = _jitter,
    ) -> float:
        """Seconds to wait after ``failures`` failures in a row (1 for the first)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap)
        ceiling = min(self.longest, self.first * 2.0 ** min(max(failures, 1) - 1, 64))
        return ceiling / 2 + jitter() * ceiling / 2


class CircuitBreaker:
    """Whether a destination fails as a whole, or only some of its events do.

    An event that a tracker keeps refusing (a 5xx for what it holds) must not
    hold back the others: it backs off alone, by its outbox row's own
    backoff. Only when ``policy.pause_after`` different events fail in a row,
    with no delivery between, is the destination taken to be failing (or at
    once, when it asked for a pause with ``Retry-After``): it is paused, and
    then tried with one event, a different one each time (the sender picks
    one never tried before, if any: not the next refused event). A delivery
    closes the breaker; a failure pauses it again, longer each time, so a
    tracker that is down gets one attempt per backoff period.

    It also says how many events may go at once to a destination that takes
    them in a batch (pipelined, see ``HttpDestination.request_all``): one at
    first and after a failure, one more for each delivery, as TCP's slow
    start does, so a destination that begins to fail gets few requests sent
    before the pause, and a working one gets whole batches.

    Per process and destination, shared by the process's delivery threads.
    """

    MAX_DEPTH = 1024

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.paused_until = 0.0
        self._lock = threading.Lock()
        self._failed: set[str] = set()  # eventIds failed since the last delivery
        self._pauses = 0  # in a row, since the last delivery
        self._last_delivery = -math.inf
        self._depth = 1

    @property
    def is_open(self) -> bool:
        """Failing as a whole: after its pause, it is tried with one event at a time."""
        return self._pauses > 0

    def is_paused(self, now: float) -> bool:
        return now < self.paused_until

    def depth(self, most: int) -> int:
        """How many events to send at once, ``most`` at most."""
        return max(1, min(most, self._depth))

    def delivered(self, now: float, count: int = 1) -> None:
        """``count`` events went through: the destination works."""
        with self._lock:
            self._failed.clear()
            self._pauses = 0
            self.paused_until = 0.0
            self._last_delivery = max(self._last_delivery, now)
            self._depth = min(self._depth + count, self.MAX_DEPTH)

    def failed(
        self, event_id: str, now: float, retry_after: float | None = None
    ) -> tuple[float, str] | None:
        """Count a retryable failure of ``event_id``: the pause it starts and why, if it starts one.

        A failure while the destination is paused already (another thread's
        attempt, begun before the pause) changes nothing.
        """
        with self._lock:
            self._depth = 1
            if now < self.paused_until:
                return None
            self._failed.add(event_id)
            if retry_after is not None:
                why = "as its Retry-After asked"
            elif self._pauses:
                why = "it failed again after its pause"
            elif len(self._failed) >= self.policy.pause_after:
                why = f"{len(self._failed)} different events failed in a row"
            else:
                return None
            self._failed.clear()
            self._pauses += 1
            pause = self.policy.delay(self._pauses, retry_after)
            self.paused_until = now + pause
            return pause, why

    def delivered_since(self, when: float) -> bool:
        """Whether an event went through at ``when`` or later."""
        return self._last_delivery >= when
