"""The background sender: off the request path, fork-safe, never raising."""

from __future__ import annotations

import logging
import os
import socket
import uuid

import pytest

from bangi_landing.destinations import BangiTracker, DeliveryError
from bangi_landing.events import Event
from bangi_landing.sender import BackgroundSender, ThrottledLog

from .conftest import Tracker


def click(campaign_id: int = 1) -> Event:
    return Event("click", str(uuid.uuid4()), {"campaignId": campaign_id})


class Failing:
    name = "failing"

    def deliver(self, event: Event) -> None:
        raise DeliveryError("HTTP 503: down", retryable=True)


class Broken:
    name = "broken"

    def deliver(self, event: Event) -> None:
        raise RuntimeError("a bug")


def test_events_reach_the_tracker_with_their_event_id(tracker: Tracker) -> None:
    sender = BackgroundSender([BangiTracker(tracker.url)])
    events = [click() for _ in range(20)]
    for event in events:
        assert sender.submit(event)
    assert sender.flush(10)
    stored = tracker.events()
    assert [e["clickId"] for e in stored] == [e.click_id for e in events]
    assert [e["params"]["eventId"] for e in stored] == [e.event_id for e in events]
    assert sender.stats.snapshot() == {"queued": 20, "sent": 20, "failed": 0, "dropped": 0}


def test_full_queue_drops_and_counts_without_blocking() -> None:
    blocker = socket.socket()  # accepts, never answers: the worker is stuck on event one
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(10)
    try:
        destination = BangiTracker(f"http://127.0.0.1:{blocker.getsockname()[1]}", timeout=(1, 5))
        sender = BackgroundSender([destination], queue_size=3)
        results = [sender.submit(click()) for _ in range(10)]
        assert results.count(False) >= 6
        assert sender.stats.snapshot()["dropped"] == results.count(False)
    finally:
        blocker.close()


def test_a_bug_in_a_destination_does_not_kill_the_worker(
    tracker: Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    sender = BackgroundSender([Broken(), BangiTracker(tracker.url)])
    with caplog.at_level(logging.ERROR, logger="bangi_landing"):
        sender.submit(click())
        sender.submit(click())
        assert sender.flush(10)
    assert "unexpected error" in caplog.text
    assert sender._thread is not None and sender._thread.is_alive()


def test_failures_are_counted_and_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender = BackgroundSender([Failing()])
    with caplog.at_level(logging.WARNING, logger="bangi_landing"):
        for _ in range(50):
            sender.submit(click())
        assert sender.flush(10)
    assert sender.stats.snapshot()["failed"] == 50
    assert len(caplog.records) == 1
    assert "HTTP 503" in caplog.text


def test_throttled_log_reports_what_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = ThrottledLog(interval=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="bangi_landing"):
        for second in range(0, 130, 10):
            now[0] = second
            log.warning("failed: %s", "x")
    assert [record.getMessage() for record in caplog.records] == [
        "failed: x",
        "failed: x (5 more failures in the last 60 s)",
        "failed: x (5 more failures in the last 60 s)",
    ]


def test_the_worker_restarts_in_a_forked_child(tracker: Tracker) -> None:
    sender = BackgroundSender([BangiTracker(tracker.url)])
    sender.submit(click())  # the parent's worker is running
    assert sender.flush(10)
    child_event = click()
    pid = os.fork()
    if pid == 0:  # the child: its own worker, its own connections
        code = 0
        try:
            sender.submit(child_event)
            code = 0 if sender.flush(10) and sender.stats.snapshot()["sent"] >= 1 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_event.click_id in {e["clickId"] for e in tracker.events()}


def test_flush_gives_up_after_its_timeout() -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(10)
    try:
        destination = BangiTracker(f"http://127.0.0.1:{blocker.getsockname()[1]}", timeout=(1, 5))
        sender = BackgroundSender([destination])
        sender.submit(click())
        assert sender.flush(0.2) is False
    finally:
        blocker.close()
