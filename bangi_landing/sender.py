"""Delivery off the request path: a bounded queue drained by one background thread.

The request thread only puts the event on a queue; a daemon thread, started on
first use and again in every forked child, hands it to each destination. A slow
or dead tracker therefore costs a page nothing. Failures are logged and
counted, never raised into the application.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .destinations import DeliveryError

if TYPE_CHECKING:
    from .destinations import Destination
    from .events import Event

logger = logging.getLogger("bangi_landing")

EXIT_FLUSH_TIMEOUT = 2.0


class Stats:
    """Counters of what happened to events, safe to bump from any thread."""

    NAMES = ("queued", "sent", "failed", "dropped")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.NAMES, 0)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class ThrottledLog:
    """Logs the first failure at once, then at most one line per ``interval`` with a count.

    A tracker that is down fails every event; one line per event would bury
    everything else in the log.
    """

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.clock = clock
        self._next = 0.0
        self._suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        now = self.clock()
        if now < self._next:
            self._suppressed += 1
            return
        if self._suppressed:
            message += " (%d more failures in the last %d s)"
            args = (*args, self._suppressed, int(self.interval))
        logger.warning(message, *args)
        self._next = now + self.interval
        self._suppressed = 0


class BackgroundSender:
    """Delivers events to every destination from a background thread.

    :param destinations: where each event goes.
    :param queue_size: events waiting at most; beyond it new events are
        dropped and counted (a durable outbox removes that limit).
    """

    def __init__(self, destinations: Sequence[Destination], *, queue_size: int = 10_000) -> None:
        self.destinations = tuple(destinations)
        self.queue_size = queue_size
        self.stats = Stats()
        self.failure_log = ThrottledLog()
        self._start_fresh()
        ref = weakref.ref(self)
        # The child of a fork has no worker thread and may hold copies of locks
        # that were taken at fork time: give it everything new.
        os.register_at_fork(after_in_child=lambda: _call(ref, "_start_fresh"))
        atexit.register(_call, ref, "flush", EXIT_FLUSH_TIMEOUT)

    def _start_fresh(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.Queue[Event] = queue.Queue(self.queue_size)
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def submit(self, event: Event) -> bool:
        """Queue ``event`` for delivery; False when it had to be dropped. Never blocks."""
        self._ensure_thread()
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.stats.add("dropped")
            logger.warning("bangi-landing: send queue full, dropped a %s event", event.kind)
            return False
        self.stats.add("queued")
        return True

    def flush(self, timeout: float = EXIT_FLUSH_TIMEOUT) -> bool:
        """Wait until every queued event was handled; False when ``timeout`` ran out first."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():  # forked without the hook (e.g. os.fork in C code)
            self._start_fresh()
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="bangi-landing-sender", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        events = self._queue
        while True:
            event = events.get()
            try:
                self.deliver(event)
            except Exception:  # a bug must not kill the thread that serves every event
                logger.exception("bangi-landing: unexpected error delivering an event")
            finally:
                events.task_done()

    def deliver(self, event: Event) -> None:
        """Send ``event`` to every destination now, in this thread."""
        for destination in self.destinations:
            try:
                destination.deliver(event)
            except DeliveryError as error:
                self.stats.add("failed")
                self.failure_log.warning(
                    "bangi-landing: %s %s event %s failed: %s",
                    destination.name,
                    event.kind,
                    event.event_id,
                    error,
                )
            else:
                self.stats.add("sent")


def _call(ref: weakref.ref[BackgroundSender], method: str, *args: float) -> None:
    sender = ref()
    if sender is not None:
        getattr(sender, method)(*args)
