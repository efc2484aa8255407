"""Work for processes forked from a clean one, as gunicorn forks its workers.

Tests fork through :func:`fresh_context` (multiprocessing's forkserver), not
from pytest's own process: a child forked while one of pytest's threads (a
previous test's leftover server, say) is inside SQLite inherits SQLite's
mutexes locked and hangs on its first query, whatever our code does. This
module is loaded once into the fork server, so it imports nothing heavy.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

from bangi_landing.events import Event
from bangi_landing.outbox import Outbox

DAY = 24 * 3600.0


def fresh_context() -> ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def open_together(opener: Any, path: str, start: Any) -> None:
    """Open a SQLite file (an ``Outbox`` or a ``TrackerStore``) once all are ready."""
    start.wait(10)
    opener(path)


def fork_while_writing(path: Path, forks: int = 20) -> list[int | None]:
    """Fork while a thread writes to the outbox; each child writes too.

    The children's exit codes (None for one that hung), up to the first failure.
    """
    outbox = Outbox(path)
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            outbox.add([_click(n)], ["bangi"], max_age=DAY)
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    from_child = _click(10**9)  # the same event from every child: one row
    exit_codes = []
    try:
        for _ in range(forks):
            pid = os.fork()
            if pid == 0:
                try:
                    outbox.add([from_child], ["other"], max_age=DAY)
                    os._exit(0 if outbox.counts()["other"]["pending"] == 1 else 1)
                finally:
                    os._exit(2)
            exit_codes.append(exit_code(pid, timeout=10))
            if exit_codes[-1] != 0:
                break  # one hung child is enough to know
    finally:
        stop.set()
        writer.join()
    return exit_codes


def exit_code(pid: int, *, timeout: float) -> int | None:
    """The child's exit code, or None (and the child killed) if it hung."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def _click(n: int) -> Event:
    return Event("click", f"8f1b5c6e-7a3d-4d20-a7f1-{n:012d}", {"campaignId": 1}, created_at=1e6)


def carry_then_die(url: str, path: str, clicks: Any, stall: Any) -> None:
    """A sender whose tracker answers fast, then stalls: its clicks are carried, unwritten.

    Puts the eventIds of the clicks submitted after ``stall`` is set on
    ``clicks``, then waits to be killed.
    """
    from bangi_landing import sender as sender_module
    from bangi_landing.destinations import BangiTracker
    from bangi_landing.sender import BackgroundSender

    sender_module.SLOW_ANSWERS = 10.0  # any loopback answer is fast: clicks are carried
    sender = BackgroundSender([BangiTracker(url)], outbox=Outbox(path))
    for n in range(300):
        sender.submit(Event("click", f"8f1b5c6e-7a3d-4d20-a7f1-{n:012d}", {"campaignId": 1}))
        if n % 30 == 29 and sender.flush(10) and sender._whole_batches:
            break  # a pipelined batch of 8 or more was answered
    clicks.put("learned" if sender._whole_batches else "never learned")
    stall.wait(10)
    later = [
        Event("click", f"8f1b5c6e-7a3d-4d20-a7f1-{n:012d}", {"campaignId": 1})
        for n in range(1000, 1020)
    ]
    for event in later:
        sender.submit(event)
    clicks.put([event.event_id for event in later])
    time.sleep(60)
