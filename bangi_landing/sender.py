"""Delivery off the request path: a bounded queue, a durable outbox, background threads.

A page hands its event to :meth:`BackgroundSender.submit`, which only puts it
on an in-memory queue. Off the request path:

* the **writer** thread moves queued events into the outbox: woken by the
  first, it waits ``CLICK_GATHER`` s and writes all that came meanwhile in
  one transaction, so a click is on disk (or at the tracker, below) within
  the 100 ms promised, and a busy landing pays for one wake-up and one fsync
  per batch, not per page (waking a thread for every page would cost each
  page more than the middleware's own work);
* the **delivery** threads (``concurrency``, each with its own kept-alive
  connections) claim due rows, send them, and record the outcome: deleted
  after a 2xx, retried later with backoff, or dead. A write wakes one of
  them, which wakes another when it finds a full batch. A destination that
  takes batches and answers fast (the Bangi tracker, pipelined) gets whole
  ones, and the writer does not write its clicks at all: it carries them to a
  delivery thread, and writes only those still not delivered when their
  100 ms run out (``_Carried``); any other has the due rows shared out, its
  threads waiting for its answers side by side. An event that fails backs
  off alone; only failures that span events pause a destination as a whole
  (``retry.CircuitBreaker``), which is then probed by one thread with one
  event, a new one each time, so a tracker that is down costs one attempt
  per backoff period, and one event it keeps refusing holds back no other.

Events are cleaned (``events.clean_event``) before they enter the outbox: in
the writer thread for queued events, off the page's path; by the request
thread for one written at once.

A lead (``durable=True``) is written to the outbox by the request thread
itself, before the response. A full queue does the same instead of dropping.
An outbox that refuses a write (locked by another process, full, read-only,
deleted, corrupt) costs a request ``LEAD_WRITE_TIMEOUT`` at most: the event
then waits in memory, and the writer thread, retrying every
``WRITE_RETRY_INTERVAL``, writes it when the outbox takes events again.
The outbox keeps a journey's rows in order (see ``stores.ORDER_DELAY``), so a
lead written at once never reaches the tracker before its queued click. After
the outbox refused writes, the clicks of other processes may still be in their
memory, waiting for their writer's next try: the leads this process writes
then wait ``stores.RECOVERY_ORDER_DELAY`` instead, long enough for every
writer to have tried again.
Threads start on first use and again in a forked child; at exit the queue is
written out and delivery goes on for at most two seconds. Nothing here raises
into the application: failures are counted and logged.
"""

from __future__ import annotations

import atexit
import enum
import logging
import os
import secrets
import socket
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING

from .destinations import DeliveryError
from .events import clean_event
from .retry import CircuitBreaker, RetryPolicy
from .stores import ORDER_DELAY, RECOVERY_ORDER_DELAY, Claim, Lease

if TYPE_CHECKING:
    from .destinations import Destination
    from .events import Event
    from .stores import Store

logger = logging.getLogger("bangi_landing")

EXIT_FLUSH_TIMEOUT = 2.0
CLICK_GATHER = 0.05  # seconds the writer lets clicks gather: half the 100 ms promised
# Seconds a carried batch (see _Carried) may go unwritten after the writer took it:
# the rest of the 100 ms, less 10 ms for the write.
CARRY_FOR = 0.1 - CLICK_GATHER - 0.01
START_CHECK_INTERVAL = 0.5  # how often start() looks at the threads
FORGET_INTERVAL = 3600.0  # how often expired journey data is dropped from the outbox
# A request writing its lead waits this long at most for a busy outbox (another
# thread or process holds it), then leaves the lead to the writer thread.
LEAD_WRITE_TIMEOUT = 0.5
WRITE_RETRY_INTERVAL = 1.0  # how often the writer tries again while the outbox refuses events
# A destination answering a pipelined batch this slowly (seconds per event, over
# a batch this large at least) gets its batches shared out between threads.
SLOW_ANSWERS = 0.002
SLOW_ANSWERS_BATCH = 8


class Stats:
    """Counters of what happened to events, safe to bump from any thread.

    ``queued``: accepted from the application; ``sent``: delivered (per
    destination); ``retried``: failed and scheduled again; ``failed``: refused
    for good by a destination (a 4xx); ``dead``: given up on after the maximum
    age, or after being refused for too long (see ``RetryPolicy``);
    ``dropped``: lost, which only the in-memory mode does, and a click that
    finds both the queue full and the outbox refusing it.
    """

    NAMES = ("queued", "sent", "retried", "failed", "dead", "dropped")

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
    everything else in the log. The sender keeps one per destination, so the
    line that is logged names the destination the held-back failures were at.
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


class _PendingEvents:
    """Events accepted and not yet handled: the pages add, one background thread takes.

    Adding takes no lock (a deque's operations are atomic) and wakes the
    thread only if it sleeps: a page pays a fraction of a microsecond. The
    thread takes everything at once and says when it is done with it, so
    ``join`` can wait until all that was added has been handled.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._events: deque[Event] = deque()
        self._ready = threading.Event()
        self._handled = threading.Condition()
        self._in_hand = 0

    def __len__(self) -> int:
        return len(self._events) + self._in_hand

    def add(self, event: Event, *, force: bool = False) -> bool:
        """False when ``size`` events wait already (unless ``force``)."""
        if len(self._events) >= self.size and not force:
            return False
        self._events.append(event)
        if not self._ready.is_set():
            self._ready.set()
        return True

    def give_back(self, events: list[Event]) -> None:
        """Put taken events back, first in line (call ``done`` for them as well)."""
        self._events.extendleft(reversed(events))
        self._ready.set()

    def wait(self, timeout: float | None = None) -> None:
        """Until something was added (or ``wake`` was called), ``timeout`` s at most."""
        self._ready.wait(timeout)

    def wake(self) -> None:
        """End a ``wait`` with nothing added (the sender is closing)."""
        self._ready.set()

    def take(self) -> list[Event]:
        """All that waits; call ``done`` once it is handled."""
        with self._handled:
            self._ready.clear()  # before taking: an event added from now on sets it again
            events = [self._events.popleft() for _ in range(len(self._events))]
            self._in_hand += len(events)
        return events

    def done(self, events: list[Event]) -> None:
        with self._handled:
            self._in_hand -= len(events)
            self._handled.notify_all()

    def join(self, timeout: float) -> bool:
        """Wait until everything added is handled; False if ``timeout`` ran out first."""
        with self._handled:
            return self._handled.wait_for(lambda: not self._events and not self._in_hand, timeout)


class _Carried:
    """Clicks for one destination, delivered before they are written.

    A tracker that answers fast has them all well within the 100 ms a click
    has to reach the outbox, and then they are never written: no insert, no
    claim, no delete, which were most of what a click cost the landing. The
    promise holds either way: within 100 ms a click is at the tracker or in
    the outbox. What is not delivered by then is written claimed by this
    sender, by the writer at ``deadline`` (still being sent, maybe) or by the
    delivery thread as soon as it fails, and from there on it goes like any
    claimed row.

    ``claims`` are numbered by their place in the batch; ``ids`` maps those
    numbers to the rows' ids once written. ``lock`` is held while either
    thread writes them or the delivery thread records their outcome.
    """

    __slots__ = ("claims", "deadline", "ids", "key", "lock", "settled")

    def __init__(self, key: str, events: list[Event], max_age: float, deadline: float):
        self.key = key
        self.claims = [Claim(n, e, 0, e.created_at + max_age) for n, e in enumerate(events)]
        self.deadline = deadline  # time.monotonic()
        self.lock = threading.Lock()
        self.ids: dict[int, int] | None = None
        self.settled = False  # outcome recorded, or the clicks given back to the queue

    @property
    def unwritten(self) -> bool:
        """Neither written nor settled: only memory holds these clicks."""
        return self.ids is None and not self.settled


class _Pass(enum.Enum):
    """What a delivery pass did for a destination."""

    IDLE = "nothing was due"
    CARRIED = "carried clicks, all delivered: nothing changed in the outbox"
    WORKED = "rows delivered, or failed: there may be more now"


class _DeliveryThread(threading.local):
    """What a delivery thread keeps between passes."""

    wake_at = 0.0  # when its last full pass planned to look at the outbox again


class BackgroundSender:
    """Delivers events to every destination from background threads.

    :param destinations: where each event goes.
    :param outbox: the store where events wait until delivered (``stores.Store``:
        a SQLite file shared by the worker processes of a host, a PostgreSQL
        database shared by many hosts). ``None`` keeps events in memory only:
        one attempt each, dropped when the queue is full or the process exits.
    :param queue_size: events waiting in memory at most.
    :param retry: backoff, ``Retry-After`` cap and maximum age.
    :param batch_size: outbox rows claimed at a time by a thread, for a
        destination that takes batches (pipelined); for any other, its share
        (``batch_size // concurrency``).
    :param concurrency: delivery threads (with an outbox): events in flight at
        once, each thread over its own kept-alive connection, so one waiting
        for the tracker's answer does not hold the others back.
    :param lease: seconds a claim keeps other senders off its rows.
    :param clock: wall-clock seconds; tests pass a fake one.
    :param report_interval: counters are logged at INFO this often when
        something failed.
    """

    def __init__(
        self,
        destinations: Sequence[Destination],
        *,
        outbox: Store | None = None,
        queue_size: int = 10_000,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 (frozen, shared safely)
        batch_size: int = 100,
        concurrency: int = 4,
        lease: float = 60.0,
        clock: Callable[[], float] = time.time,
        report_interval: float = 60.0,
    ) -> None:
        self.destinations = tuple(destinations)
        self.outbox = outbox
        self.queue_size = queue_size
        self.retry = retry
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.lease = lease
        self.clock = clock
        self.report_interval = report_interval
        self.failure_log = ThrottledLog(clock=clock)  # what is not one destination's
        self.write_log = ThrottledLog(clock=clock)  # the outbox refusing events
        self._write_failing = False
        self._keys = [destination.key for destination in self.destinations]
        self._failure_logs = {key: ThrottledLog(clock=clock) for key in self._keys}
        self._routes = {destination.key: destination.kinds for destination in self.destinations}
        self._keep_journeys = any(destination.journey_params for destination in self.destinations)
        # Destinations whose dead events go after a while (orders: the customer's personal data).
        self._dead_after: dict[str, float] = {
            d.key: keep
            for d in self.destinations
            if (keep := getattr(d, "keep_dead", None)) is not None
        }
        self._closed = False
        self._start_fresh()
        ref = weakref.ref(self)
        # The child of a fork has no threads and may hold copies of locks that
        # were taken at fork time: give it everything new.
        os.register_at_fork(after_in_child=lambda: _call(ref, "_start_fresh"))
        atexit.register(_call, ref, "_exit")
        _warn_if_uwsgi_without_threads()

    def _start_fresh(self) -> None:
        self.stats = Stats()  # per process: a forked worker counts its own
        self._lock = threading.Lock()
        self._pending = _PendingEvents(self.queue_size)
        self._threads: list[threading.Thread] = []
        self._pid = os.getpid()
        self._lease_token = f"{socket.gethostname()}:{self._pid}:{secrets.token_hex(4)}"
        # Wakes every delivery thread: each pass notes the generation it started
        # in, and its wait ends at once if a wake came after that.
        self._wakes = threading.Condition()
        self._wake_generation = 0
        self._settled = threading.Condition()
        self._write_now = threading.Event()  # flush() cuts the writer's gathering short
        self._passes = 0  # delivery passes started
        self._settled_pass = -1  # the last pass that found nothing due
        self._flushing = 0  # flush() calls waiting for a pass to settle
        self._delivering = 0  # delivery threads busy with claimed rows
        self._delivered = 0  # batches finished (by any thread)
        self._breakers = {key: CircuitBreaker(self.retry) for key in self._keys}
        self._probes = {key: threading.Lock() for key in self._keys}  # see deliver_due
        self._whole_batches: dict[str, bool] = {}  # see _claim_and_deliver
        # Clicks the writer carries to the delivery threads (see _Carried): waiting for a
        # thread, and, for the writer to keep their deadline, all not yet settled.
        self._handed: dict[str, deque[_Carried]] = {key: deque() for key in self._keys}
        self._carrying: deque[_Carried] = deque()
        self._carrying_lock = threading.Lock()  # the writer's, and close()'s
        self._local = _DeliveryThread()
        self._answer_times: dict[str, float] = {}  # seconds per event, see _chunk
        self._reported = self.stats.snapshot()
        self._next_report = self.clock() + self.report_interval
        self._next_forget = 0.0  # expired journeys are dropped on the first pass, then hourly
        self._next_start_check = 0.0

    # The application's side

    def submit(self, event: Event, *, durable: bool = False) -> bool:
        """Accept ``event`` for delivery. Never blocks on the network, never raises.

        With ``durable`` (and an outbox), the event is in the outbox when this
        returns, if the outbox took it within ``LEAD_WRITE_TIMEOUT``; if not,
        it waits in memory (beyond the queue's size if need be) and the writer
        thread writes it when the outbox takes events again. False when it was
        lost: in the in-memory mode with the queue full, or a click with the
        queue full and the outbox refusing it as well. Whatever the event
        holds, it is cleaned (``events.clean_event``) before it is stored or
        sent: a queued one by the thread that takes it.
        """
        return self.submit_all((event,), durable=durable)

    def submit_all(self, events: Sequence[Event], *, durable: bool = False) -> bool:
        """:meth:`submit` for the events of one response, durable ones in one transaction.

        A submit's lead and order are one write (one sync to disk), not two.
        False when any of them was lost.
        """
        try:
            self.start()
            if not durable or self.outbox is None:
                events = [event for event in events if not self._pending.add(event)]
                if not events:
                    return True  # counted as queued when taken
                if self.outbox is None:
                    self.stats.add("dropped", len(events))
                    self.failure_log.warning("bangi-landing: send queue full, dropped an event")
                    return False
                # A full queue: the page waits for a write; nothing is lost.
            events = [clean_event(event) for event in events]
            if self._write(events, timeout=LEAD_WRITE_TIMEOUT):
                self.stats.add("queued", len(events))
                return True
            # The outbox refused them for now: the writer thread keeps trying.
            lost = [event for event in events if not self._pending.add(event, force=durable)]
            if not lost:
                return True  # counted as queued when taken
            self.stats.add("dropped", len(lost))
            self.write_log.warning(
                "bangi-landing: send queue full and the outbox refuses events: dropped a %s",
                lost[0].kind,
            )
            return False
        except Exception:
            kinds = ", ".join(event.kind for event in events)
            logger.exception("bangi-landing: could not accept events (%s)", kinds)
            return False

    def start(self) -> None:
        """Start the threads if they are not running (in this process). Never raises.

        The middleware calls it on every request, and ``submit`` on every
        event, so a restarted landing delivers what waits in the outbox from
        its first request on, even one that reports nothing. Looking costs a
        page a microsecond or two, so it is done at most every
        ``START_CHECK_INTERVAL`` s (a fork starts afresh at once).
        """
        now = time.monotonic()
        if now < self._next_start_check:
            return
        self._next_start_check = now + START_CHECK_INTERVAL
        try:
            self._ensure_threads()
        except Exception:
            logger.exception("bangi-landing: could not start the sender")

    def close(self, timeout: float = EXIT_FLUSH_TIMEOUT) -> None:
        """Deliver for at most ``timeout`` seconds, then stop the threads and close the outbox.

        For a process that goes on without this sender (a test, an app that
        replaces its middleware); what is left waits in the outbox for the
        next sender. Events submitted afterwards are not delivered.
        """
        self.flush(timeout)
        self._closed = True
        self._pending.wake()
        self._write_now.set()
        self.wake()
        for thread in self._threads:
            thread.join(timeout)
        if self.outbox is not None:
            for key in self._keys:
                with suppress(*self.outbox.faults):
                    self._release_handed(key)
            self._write_overdue(everything=True)
            self.outbox.close()

    def flush(self, timeout: float = EXIT_FLUSH_TIMEOUT) -> bool:
        """Write what is queued to the outbox, then wait while anything due is being sent.

        True when nothing is left that could be sent now (a paused destination's
        events wait in the outbox); False when ``timeout`` ran out first.
        """
        deadline = time.monotonic() + timeout
        if self.outbox is not None and self._pid == os.getpid():
            self._write_now.set()  # and what the writer has in hand, at once
            taken = self._take()
            try:
                if not self._write(taken, timeout=max(0.0, deadline - time.monotonic())):
                    self._pending.give_back(taken)  # for the writer thread to retry
                    self.stats.add("queued", -len(taken))  # counted again when taken
            finally:
                self._pending.done(taken)
        if not self._pending.join(max(0.0, deadline - time.monotonic())):
            return False
        if self.outbox is None or not any(t.is_alive() for t in self._threads):
            return True
        with self._settled:
            target = self._passes  # the next pass starts after everything above was written
            self._flushing += 1
            try:
                self.wake()
                while self._settled_pass < target:
                    if not self._settled.wait(max(0.0, deadline - time.monotonic())):
                        return False
            finally:
                self._flushing -= 1
        return True

    def _exit(self) -> None:
        """At the interpreter's exit: deliver for ``EXIT_FLUSH_TIMEOUT`` s, then write what
        is carried still (a tracker that stopped answering)."""
        self.flush(EXIT_FLUSH_TIMEOUT)
        if self.outbox is not None and self._pid == os.getpid():
            self._write_overdue(everything=True)

    def depth(self) -> int:
        """Events waiting: in the outbox (all processes), or in memory."""
        return self.outbox.depth() if self.outbox is not None else len(self._pending)

    def wake(self, *, one: bool = False) -> None:
        """Look at the outbox now (tests with a fake clock call this after moving it).

        :param one: wake one delivery thread, not all: new rows of this process's
            own. That thread wakes another if it finds more than its share
            (``_claim_and_deliver``), so a fast tracker keeps one thread busy,
            not four taking turns, and a backlog still gets them all.
        """
        with self._wakes:
            self._wake_generation += 1
            if one:
                self._wakes.notify()
            else:
                self._wakes.notify_all()

    # Threads

    def _ensure_threads(self) -> None:
        if self._pid != os.getpid():  # forked without the hook (e.g. os.fork in C code)
            self._start_fresh()
        if self._closed:
            return
        if self._threads and all(thread.is_alive() for thread in self._threads):
            return
        with self._lock:
            if self._threads and all(thread.is_alive() for thread in self._threads):
                return
            if self.outbox is None:
                targets = {"sender": self._deliver_from_memory}
            else:
                targets = {"writer": self._write_queued}
                for n in range(1, self.concurrency + 1):
                    targets[f"sender-{n}"] = self._deliver_from_outbox
                if self.outbox.notifies:  # rows added by other hosts wake the senders at once
                    targets["listener"] = self._listen
            alive = {thread.name for thread in self._threads if thread.is_alive()}
            for name, target in targets.items():
                if f"bangi-landing-{name}" not in alive:
                    thread = threading.Thread(target=target, name=f"bangi-landing-{name}")
                    thread.daemon = True
                    thread.start()
                    self._threads = [t for t in self._threads if t.name != thread.name]
                    self._threads.append(thread)

    def _write_queued(self) -> None:
        while not self._closed:
            # Woken by an event, or by a carried batch's deadline.
            self._pending.wait(self._until_overdue())
            overdue_in = self._until_overdue()
            self._write_now.wait(
                CLICK_GATHER if overdue_in is None else min(CLICK_GATHER, overdue_in)
            )
            self._write_now.clear()
            self._write_overdue()
            events = self._take()
            try:
                # While the outbox refuses them, they wait here, and the queue
                # behind them holds the pages' events (see submit).
                while not self._write(events, carry=True) and not self._closed:
                    time.sleep(WRITE_RETRY_INTERVAL)
            finally:
                self._pending.done(events)

    def _until_overdue(self) -> float | None:
        """Seconds until the oldest carried batch still unwritten must be written, if any."""
        with self._carrying_lock:
            carrying = self._carrying
            while carrying and not carrying[0].unwritten:
                carrying.popleft()  # delivered, or written: no deadline to keep
            return max(0.0, carrying[0].deadline - time.monotonic()) if carrying else None

    def _write_overdue(self, *, everything: bool = False) -> None:
        """Write the carried batches whose deadline has come and that are not delivered yet.

        :param everything: all that is left, due at once (the sender is closing).
        """
        now = time.monotonic()
        while True:
            with self._carrying_lock:
                carrying = self._carrying
                if not carrying or not (everything or carrying[0].deadline <= now):
                    return
                carried = carrying.popleft()
            with carried.lock:
                if carried.unwritten:  # still being sent, maybe: claimed, until its lease ends
                    self._write_carried(carried, self.clock() + (0 if everything else self.lease))

    def _take(self) -> list[Event]:
        """What waits in memory, cleaned: the events to write or send (``done`` takes them back)."""
        events = self._pending.take()
        if events:
            self.stats.add("queued", len(events))
        return [clean_event(event) for event in events]

    def _write(
        self, events: list[Event], *, timeout: float | None = None, carry: bool = False
    ) -> bool:
        """Put ``events`` in the outbox; False, logged at most once a minute, if it refused.

        :param timeout: seconds to wait for a busy outbox (a request's, a flush's).
        :param carry: the clicks for destinations that answer whole batches fast
            are not written but carried to a delivery thread (see ``_Carried``).
        """
        if not events:
            return True
        assert self.outbox is not None
        carried = self._fast_destinations() if carry else frozenset()
        routes = {
            key: kinds - {"click"} if key in carried else kinds
            for key, kinds in self._routes.items()
        }
        if self._keep_journeys or any(e.kind in kinds for e in events for kinds in routes.values()):
            if not self._add(events, routes, timeout):
                return False
            self.wake(one=True)
        if carried:
            self._carry(events, carried)
        return True

    def _add(
        self, events: list[Event], routes: Mapping[str, Collection[str]], timeout: float | None
    ) -> bool:
        """``outbox.add``: False, logged at most once a minute, if the outbox refused."""
        assert self.outbox is not None
        try:
            self.outbox.add(
                events,
                routes,
                max_age=self.retry.max_age,
                keep_journeys=self._keep_journeys,
                timeout=timeout,
                order_delay=RECOVERY_ORDER_DELAY if self._write_failing else ORDER_DELAY,
            )
        except Exception as error:
            self._write_failing = True
            self.write_log.warning(
                "bangi-landing: could not write %d events to the outbox %s (%s: %s);"
                " %d events wait in memory until it takes them",
                len(events),
                self.outbox.name,
                type(error).__name__,
                error,
                len(self._pending),
            )
            return False
        if self._write_failing:
            self._write_failing = False
            logger.info("bangi-landing: the outbox %s takes events again", self.outbox.name)
        return True

    def _fast_destinations(self) -> frozenset[str]:
        """The destinations whose clicks are carried: those that answer whole batches fast,
        and work."""
        now = self.clock()
        return frozenset(
            key
            for key, breaker in self._breakers.items()
            if self._whole_batches.get(key) and not breaker.is_open and not breaker.is_paused(now)
        )

    def _carry(self, events: list[Event], keys: frozenset[str]) -> None:
        """Hand the clicks for ``keys`` to the delivery threads, a batch at a time (each
        wakes one), to be written by ``CARRY_FOR`` from now if still not delivered."""
        clicks = [event for event in events if event.kind == "click"]
        deadline = time.monotonic() + CARRY_FOR
        for key in keys:
            if "click" not in self._routes[key]:
                continue
            for start in range(0, len(clicks), self.batch_size):
                batch = clicks[start : start + self.batch_size]
                carried = _Carried(key, batch, self.retry.max_age, deadline)
                self._carrying.append(carried)
                self._handed[key].append(carried)
                self.wake(one=True)

    def _write_carried(self, carried: _Carried, until: float, only: set[int] | None = None) -> None:
        """Write ``carried``'s clicks (those numbered ``only``), claimed until ``until``.

        The caller holds ``carried.lock``. If the outbox refuses them, they go
        back to the queue, for the writer to write as it retries: nothing is
        lost, and a click sent meanwhile is sent again, which its eventId makes
        harmless.
        """
        assert self.outbox is not None
        claims = [c for c in carried.claims if only is None or c.id in only]
        lease = Lease(self._lease_token, until, frozenset({carried.key}))
        try:
            written = self.outbox.add(
                [claim.event for claim in claims],
                {carried.key: frozenset({"click"})},
                max_age=self.retry.max_age,
                lease=lease,
            )
        except Exception as error:
            carried.settled = True
            self._pending.give_back([claim.event for claim in claims])
            self.stats.add("queued", -len(claims))  # counted again when taken
            self.write_log.warning(
                "bangi-landing: could not write %d clicks to the outbox %s (%s: %s);"
                " they wait in memory until it takes them",
                len(claims),
                self.outbox.name,
                type(error).__name__,
                error,
            )
            return
        row_ids = {claim.event.event_id: claim.id for _, claim in written}
        # A click missing from them was stored already: another sender's row, not ours.
        carried.ids = {
            claim.id: row_ids[claim.event.event_id]
            for claim in claims
            if claim.event.event_id in row_ids
        }

    def _release_handed(self, key: str) -> None:
        """Give back what was carried and not sent (the destination paused, the sender
        closing): written, or released, due now for any sender."""
        assert self.outbox is not None
        while True:
            try:
                carried = self._handed[key].popleft()
            except IndexError:
                return
            with carried.lock:
                if carried.unwritten:
                    self._write_carried(carried, self.clock())
                elif carried.ids:
                    self.outbox.finish(self._lease_token, release=list(carried.ids.values()))
                carried.settled = True

    def _deliver_from_memory(self) -> None:
        while not self._closed:
            self._pending.wait()
            events = self._take()
            for event in events:
                try:
                    self._deliver_once(event)
                except Exception:  # a bug must not kill the thread that serves every event
                    logger.exception("bangi-landing: unexpected error delivering an event")
            self._pending.done(events)

    def _listen(self) -> None:
        assert self.outbox is not None
        while not self._closed:
            try:
                # One thread per notice: it wakes another if it finds a full batch.
                self.outbox.listen(lambda: self.wake(one=True), lambda: self._closed)
            except Exception as error:  # the senders still look every 5 s meanwhile
                self.write_log.warning(
                    "bangi-landing: cannot listen for new events in the outbox %s (%s: %s)",
                    self.outbox.name,
                    type(error).__name__,
                    error,
                )
                time.sleep(1.0)

    def _deliver_once(self, event: Event) -> None:
        for destination in self.destinations:
            if event.kind not in destination.kinds:
                continue
            try:
                destination.deliver(event)
            except DeliveryError as error:
                self.stats.add("failed")
                self._log_failure(destination, event, error, "not retried: no outbox")
            else:
                self.stats.add("sent")

    def _deliver_from_outbox(self) -> None:
        assert self.outbox is not None
        while not self._closed:
            try:
                self.deliver_due()
            except self.outbox.faults as error:
                # The outbox is sick (full, locked, read-only, unreachable): an operating
                # fault, said once a minute; the rows wait in it until it recovers.
                self.write_log.warning(
                    "bangi-landing: the outbox %s cannot be used for delivery (%s: %s);"
                    " trying again every second",
                    self.outbox.name,
                    type(error).__name__,
                    error,
                )
                time.sleep(1.0)
            except Exception:
                logger.exception("bangi-landing: unexpected error in the delivery loop")
                time.sleep(1.0)

    def deliver_due(self) -> None:
        """One delivery pass, then wait for more work (the delivery thread's loop body)."""
        with self._wakes:
            generation = self._wake_generation  # a wake from now on ends the wait below
        with self._settled:
            this_pass = self._passes
            self._passes += 1
            delivered_before = self._delivered
        outcomes = set()
        for destination in self.destinations:
            breaker = self._breakers[destination.key]
            failing = breaker.is_open  # tried by one thread, one event at a time
            resting = breaker.is_paused(self.clock())
            if failing or resting:
                self._release_handed(destination.key)  # due again, for the probe or later
            if resting:
                continue
            probe = self._probes[destination.key]
            if failing and not probe.acquire(blocking=False):
                continue
            with self._settled:
                self._delivering += 1  # before claiming: flush() must not settle meanwhile
            outcome = _Pass.IDLE
            try:
                outcome = self._claim_and_deliver(destination, probe=failing)
            finally:
                with self._settled:
                    self._delivering -= 1
                    self._delivered += outcome is not _Pass.IDLE
                if failing:
                    probe.release()
            outcomes.add(outcome)
        self._report_if_due()
        self._forget_if_due()
        if _Pass.WORKED in outcomes:
            return
        now = self.clock()
        if _Pass.CARRIED in outcomes and not self._flushing and self._local.wake_at > now:
            # Carried clicks, all delivered, changed nothing in the outbox: no claim
            # to make, and the last pass's wake-up time still holds (what this process
            # writes wakes a thread anyway).
            self._wait(generation, self._local.wake_at, now)
            return
        paused = [b.paused_until for b in self._breakers.values() if b.is_paused(now)]
        active = [key for key, breaker in self._breakers.items() if not breaker.is_paused(now)]
        next_due = self.outbox.next_due(active, after=now) if active else None  # type: ignore[union-attr]
        if next_due is None or next_due > now + ORDER_DELAY:
            # Nothing can be sent now, nor in a moment (a lead gives its click time),
            # unless another thread holds rows or finished some since this pass
            # began (which may have let a journey's next row go): it passes again.
            with self._settled:
                handed = any(self._handed.values())
                if not self._delivering and self._delivered == delivered_before and not handed:
                    self._settled_pass = this_pass
                    self._settled.notify_all()
                elif self._flushing:
                    # Others were busy: whichever finishes last may find this
                    # thread's check stale too, so a flush waits for a pass soon.
                    next_due = now
        # Until the next row or pause end, at most 5 s: other processes add rows too.
        self._local.wake_at = wake_at = min([*paused, next_due or now + 5.0])
        self._wait(generation, wake_at, now)

    def _wait(self, generation: int, wake_at: float, now: float) -> None:
        """Until ``wake_at`` (5 s at most), or a wake since ``generation``."""
        with self._wakes:
            self._wakes.wait_for(
                lambda: self._wake_generation != generation, min(5.0, max(0.01, wake_at - now))
            )

    def _claim_and_deliver(self, destination: Destination, *, probe: bool) -> _Pass:
        """Claim this thread's share of ``destination``'s due rows and deliver them.

        With ``probe`` (the destination is failing), one row: one never tried
        if there is one, so a probe is not the event refused last time.
        """
        assert self.outbox is not None
        try:
            carried = self._handed[destination.key].popleft()
        except IndexError:
            pass
        else:
            changed = self._deliver_claims(destination, carried.claims, carried)
            return _Pass.WORKED if changed else _Pass.CARRIED
        now = self.clock()
        # A destination that answers fast gets whole batches: one pipelined exchange,
        # one claim and one finish for all. Any other (one that takes events one at
        # a time, or answers each slowly) has them shared out between the threads,
        # which then wait for its answers side by side (see _timed).
        if self._whole_batches.get(destination.key):
            share = self.batch_size
        else:
            share = self.batch_size // self.concurrency
        limit = 1 if probe else max(1, share)
        claims = self.outbox.claim(
            destination.key,
            self._lease_token,
            limit=limit,
            until=now + self.lease,
            journeys=bool(destination.journey_params),
            fresh_first=probe,
        )
        if len(claims) == limit and not probe:
            self.wake(one=True)  # there may be more: another thread takes the next share
        if not claims:
            return _Pass.IDLE
        self._deliver_claims(destination, claims)
        return _Pass.WORKED

    def _deliver_claims(
        self, destination: Destination, claims: list[Claim], carried: _Carried | None = None
    ) -> bool:
        """Deliver claimed rows, or ``carried`` clicks, and record the outcomes.

        False when that changed nothing in the outbox: carried clicks, all
        delivered before they were written.
        """
        assert self.outbox is not None
        breaker = self._breakers[destination.key]
        sent: list[int] = []
        retry: list[tuple[int, float, str | None]] = []
        dead: list[tuple[int, str]] = []
        release: list[int] = []
        lease_end = self.clock() + self.lease
        # A destination that takes a batch (deliver_all) gets as many at once as the
        # breaker trusts it with; any other one at a time. A pause or a short lease
        # is noticed between batches.
        batches = hasattr(destination, "deliver_all")
        start = 0
        while start < len(claims):
            if breaker.is_paused(self.clock()):  # failing as a whole: the rest waits
                release = [c.id for c in claims[start:]]
                break
            if self.clock() > lease_end - self.lease / 2:  # a slow destination: keep the rows
                # All of them: those sent already are deleted only by finish() below,
                # and another sender must not take them again meanwhile.
                lease_end = self.clock() + self.lease
                ids = [c.id for c in claims]
                if carried is not None:
                    with carried.lock:
                        ids = list((carried.ids or {}).values())  # unwritten: nothing to keep
                self.outbox.extend(ids, self._lease_token, lease_end)
            batch = claims[
                start : start + (self._chunk(destination, len(claims)) if batches else 1)
            ]
            start += len(batch)
            delivered = 0
            for claim, error in zip(batch, self._timed(destination, batch), strict=True):
                if error is None:
                    sent.append(claim.id)
                    delivered += 1
                else:
                    self._failed(destination, breaker, claim, error, retry, dead)
            if delivered:
                breaker.delivered(self.clock(), delivered)
                self.stats.add("sent", delivered)
        if carried is not None:
            return self._finish_carried(carried, lease_end, sent, retry, release, dead)
        self.outbox.finish(self._lease_token, sent=sent, retry=retry, release=release, dead=dead)
        return True

    def _finish_carried(
        self,
        carried: _Carried,
        lease_end: float,
        sent: list[int],
        retry: list[tuple[int, float, str | None]],
        release: list[int],
        dead: list[tuple[int, str]],
    ) -> bool:
        """Record the outcomes of ``carried``'s clicks (given by number): nothing, if all
        were delivered before they were written; otherwise on their rows, writing first
        those not delivered if they are not written yet. Whether the outbox changed."""
        assert self.outbox is not None
        with carried.lock:
            if carried.settled:  # given back to the queue: the writer has them
                return False
            if carried.ids is None:
                if not (retry or release or dead):
                    carried.settled = True
                    return False  # the common case: never written at all
                failed = {n for n, *_ in retry} | set(release) | {n for n, _ in dead}
                self._write_carried(carried, lease_end, only=failed)
                if carried.ids is None:
                    return False  # given back
            carried.settled = True
            ids = carried.ids
            self.outbox.finish(
                self._lease_token,
                sent=[ids[n] for n in sent if n in ids],
                retry=[(ids[n], due, error) for n, due, error in retry if n in ids],
                release=[ids[n] for n in release if n in ids],
                dead=[(ids[n], error) for n, error in dead if n in ids],
            )
            return True

    def _chunk(self, destination: Destination, most: int) -> int:
        """How many claimed events to pipeline at once: as many as the breaker trusts
        the destination with, and no more than its answers take a quarter lease for
        (the lease is extended between chunks, see _deliver_claims)."""
        depth = self._breakers[destination.key].depth(most)
        answer_time = self._answer_times.get(destination.key)
        if answer_time:
            depth = min(depth, max(1, int(self.lease / 4 / answer_time)))
        return depth

    def _timed(self, destination: Destination, claims: list[Claim]) -> list[DeliveryError | None]:
        """``_attempt``, noting how fast the destination answers (see ``_chunk``).

        Answers to a pipelined batch come one after another: a batch of
        ``SLOW_ANSWERS_BATCH`` or more that took ``SLOW_ANSWERS`` s or more per
        event means a tracker slow at each request, which parallel connections
        speed up; a far one (a long round trip, fast answers) is quick per event,
        and gets whole batches.
        """
        began = time.monotonic()
        errors = self._attempt(destination, claims)
        if hasattr(destination, "deliver_all"):
            per_event = (time.monotonic() - began) / len(claims)
            self._answer_times[destination.key] = per_event
            if len(claims) >= SLOW_ANSWERS_BATCH:
                self._whole_batches[destination.key] = per_event < SLOW_ANSWERS
        return errors

    def _attempt(self, destination: Destination, claims: list[Claim]) -> list[DeliveryError | None]:
        """Deliver the claims' events: each one's failure, or None."""
        events = [claim.event for claim in claims]
        try:
            deliver_all = getattr(destination, "deliver_all", None)
            if deliver_all is not None:
                return list(deliver_all(events))
            [event] = events
            destination.deliver(event)
            return [None]
        except DeliveryError as error:
            return [error]
        except Exception:  # a bug, maybe on what an event holds: its events back off alone
            logger.exception(
                "bangi-landing: unexpected error delivering %s event %s%s to %s",
                events[0].kind,
                events[0].event_id,
                f" and {len(events) - 1} more" if len(events) > 1 else "",
                destination.name,
            )
            bug = DeliveryError("unexpected error in the destination", retryable=True)
            return [bug] * len(events)

    def _failed(
        self,
        destination: Destination,
        breaker: CircuitBreaker,
        claim: Claim,
        error: DeliveryError,
        retry: list[tuple[int, float, str | None]],
        dead: list[tuple[int, str]],
    ) -> None:
        """Record a failed attempt at ``claim``: its next one or its death, and the log line."""
        now = self.clock()
        if not error.retryable:
            dead.append((claim.id, str(error)))
            self.stats.add("failed")
            self._log_failure(destination, claim.event, error, f"dead, not retried{_SEE_DEAD}")
            return
        pause = breaker.failed(claim.event.event_id, now, error.retry_after)
        why_dead = self._why_dead(breaker, claim, now)
        if why_dead:
            dead.append((claim.id, f"{why_dead}: {error}"))
            self.stats.add("dead")
            verdict = f"dead: {why_dead}{_SEE_DEAD}"
        else:
            delay = self.retry.delay(claim.attempts + 1, error.retry_after)
            retry.append((claim.id, now + delay, str(error)))
            self.stats.add("retried")
            verdict = f"will retry in {_duration(delay)}"
        if pause is not None:
            seconds, why = pause
            verdict += f"; {destination.name} paused for {_duration(seconds)}: {why}"
        self._log_failure(destination, claim.event, error, verdict)

    def _why_dead(self, breaker: CircuitBreaker, claim: Claim, now: float) -> str | None:
        """Why a retryable failure of ``claim`` is its last, if it is (see ``RetryPolicy``)."""
        attempts = claim.attempts + 1
        if now >= claim.expires_at:
            return f"expired after {attempts} attempts"
        if attempts < self.retry.refused_attempts:
            return None
        if now - claim.event.created_at < self.retry.refused_for:
            return None
        # Other events went through since this one's previous attempt, which
        # was at least the shortest backoff before this one ago.
        since_last = self.retry.delay(claim.attempts, jitter=lambda: 0.0)
        if not breaker.delivered_since(now - since_last):
            return None  # the destination may be failing as a whole: not this event's fault
        return (
            f"refused {attempts} times over {_duration(now - claim.event.created_at)}"
            " while other events went through"
        )

    def _log_failure(
        self, destination: Destination, event: Event, error: DeliveryError, verdict: str
    ) -> None:
        """One line: what failed, where (no query, no secret), why, and what happens next."""
        # Without a URL (refused before any request), the key: kind and address, no secrets.
        where = error.url or destination.key.removeprefix(f"{destination.name} ")
        self._failure_logs[destination.key].warning(
            "bangi-landing: %s %s event %s to %s failed: %s; %s",
            destination.name,
            event.kind,
            event.event_id,
            where,
            error,
            verdict,
        )

    def _forget_if_due(self) -> None:
        now = self.clock()
        with self._settled:  # one delivery thread does it
            if now < self._next_forget:
                return
            self._next_forget = now + FORGET_INTERVAL
        self.outbox.forget_expired(self._dead_after)  # type: ignore[union-attr]

    def _report_if_due(self) -> None:
        now = self.clock()
        with self._settled:  # one delivery thread does it
            if now < self._next_report:
                return
            self._next_report = now + self.report_interval
        counts = self.stats.snapshot()
        delta = {name: counts[name] - self._reported[name] for name in counts}
        self._reported = counts
        if delta["retried"] or delta["failed"] or delta["dead"] or delta["dropped"]:
            logger.info(
                "bangi-landing: in the last %d s: %d sent, %d retried, %d failed, %d dead,"
                " %d dropped; %d events wait in the outbox",
                self.report_interval,
                delta["sent"],
                delta["retried"],
                delta["failed"],
                delta["dead"],
                delta["dropped"],
                self.depth(),
            )


_SEE_DEAD = " (see: bangi-landing outbox status)"


def _duration(seconds: float) -> str:
    """``seconds`` for a log line: "1 s", "45 s", "5 min", "2 h"."""
    if seconds < 120:
        return f"{max(1, round(seconds))} s"
    if seconds < 2 * 3600:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600)} h"


def _warn_if_uwsgi_without_threads() -> None:
    uwsgi = sys.modules.get("uwsgi")
    options = getattr(uwsgi, "opt", None)
    if options is None:
        return
    # uWSGI's own verdict when it gives one: threads are on by default since 2.0.27.
    has_threads = getattr(uwsgi, "has_threads", None)
    if has_threads is None:
        has_threads = options.get("enable-threads") or options.get("threads")
    if not has_threads:
        logger.warning(
            "bangi-landing: uWSGI runs without threads, so events are never sent:"
            " start it with --enable-threads (or --threads N)"
        )


def _call(ref: weakref.ref[BackgroundSender], method: str, *args: float) -> None:
    sender = ref()
    if sender is not None:
        getattr(sender, method)(*args)
