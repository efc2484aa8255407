"""The background sender: retries by the book, off the request path, fork-safe, never raising.

Time is a fake clock the tests move; the destinations are real HTTP servers
on loopback (the bundled tracker, or a sink told how to answer).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bangi_landing.destinations import BangiTracker, DeliveryError
from bangi_landing.events import Event
from bangi_landing.outbox import ORDER_DELAY, Outbox
from bangi_landing.retry import RetryPolicy
from bangi_landing.sender import BackgroundSender, ThrottledLog

from .conftest import Tracker
from .forked import exit_code
from .test_outbox import Clock
from .utils import Sink, live_server, silent_tracker


def click(campaign_id: int = 1) -> Event:
    return Event("click", str(uuid.uuid4()), {"campaignId": campaign_id})


class Broken:
    name = key = "broken"
    kinds = frozenset({"click", "lead", "postback"})
    journey_params = ()

    def deliver(self, event: Event) -> None:
        raise RuntimeError("a bug")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sink() -> Iterator[tuple[Sink, str]]:
    sink = Sink()
    with live_server(sink) as url:
        yield sink, url


@pytest.fixture
def outbox(tmp_path: Path, clock: Clock) -> Outbox:
    return Outbox(tmp_path / "outbox.sqlite3", clock=clock)


def sender_for(url: str, outbox: Outbox | None, clock: Clock, **options: Any) -> BackgroundSender:
    destination = BangiTracker(url, timeout=options.pop("timeout", (1.0, 2.0)))
    return BackgroundSender([destination], outbox=outbox, clock=clock, **options)


def rows(outbox: Outbox) -> list[tuple[Any, ...]]:
    return outbox._all("SELECT attempts, due_at, state, last_error FROM outbox ORDER BY id")


# Through the outbox


def test_events_reach_the_tracker_once_with_their_event_id(
    tracker: Tracker, outbox: Outbox, clock: Clock
) -> None:
    sender = sender_for(tracker.url, outbox, clock)
    events = [click() for _ in range(120)]
    for event in events:
        assert sender.submit(event)
    assert sender.flush(10)
    stored = tracker.events(limit=500)
    # Several delivery threads: in order per journey, not across journeys.
    assert sorted(e["params"]["eventId"] for e in stored) == sorted(e.event_id for e in events)
    assert sender.stats.snapshot() == {
        "queued": 120, "sent": 120, "retried": 0, "failed": 0, "dead": 0, "dropped": 0
    }  # fmt: skip
    assert sender.depth() == 0


def test_events_go_out_over_several_connections_at_once(
    sink: tuple[Sink, str], outbox: Outbox, clock: Clock
) -> None:
    server, url = sink
    server.delay = 0.02  # a tracker far away: one connection alone would wait most of the time
    sender = sender_for(url, outbox, clock, concurrency=4)
    for _ in range(100):  # a backlog: each thread claims its share
        sender.submit(click())
    assert sender.flush(10)
    assert len(set(server.event_ids())) == 100
    assert server.most_in_flight == 4


def test_one_flush_delivers_every_journey_whole_and_in_order(
    tracker: Tracker, outbox: Outbox, clock: Clock
) -> None:
    # Each journey's rows go one after another, from whichever thread is free:
    # flush must not return while a finished row has just let the next one go.
    sender = sender_for(tracker.url, outbox, clock)
    journeys = [str(uuid.uuid4()) for _ in range(20)]
    for click_id in journeys:
        sender.submit(Event("click", click_id, {"campaignId": 1}))
        sender.submit(Event("lead", click_id, {}), durable=True)
        for status in ("expect", "accept"):
            sender.submit(Event("postback", click_id, {"status": status}), durable=True)
    deadline = time.monotonic() + 5
    while outbox.depth() < 80 and time.monotonic() < deadline:
        time.sleep(0.01)  # the writer: clicks reach the outbox within 100 ms (real time)
    clock.now += ORDER_DELAY  # which the fake clock lets the leads wait
    assert sender.flush(20)
    stored = tracker.events(limit=500)
    assert len(stored) == 80
    for click_id in journeys:
        kinds = [(e["type"], e["params"].get("status")) for e in stored if e["clickId"] == click_id]
        assert kinds == [
            ("click", None),
            ("lead", None),
            ("postback", "expect"),
            ("postback", "accept"),
        ]


def test_a_durable_event_is_in_the_outbox_when_submit_returns(outbox: Outbox, clock: Clock) -> None:
    sender = sender_for("http://127.0.0.1:9", outbox, clock)
    sender._ensure_threads = lambda: None  # type: ignore[method-assign]  # nothing runs behind
    assert sender.submit(click(), durable=True)
    assert outbox.depth() == 1


def test_a_full_queue_writes_through_instead_of_dropping(
    outbox: Outbox, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    sender = sender_for("http://127.0.0.1:9", outbox, clock, queue_size=2)
    sender._ensure_threads = lambda: None  # type: ignore[method-assign]  # the queue never drains
    assert all(sender.submit(click()) for _ in range(10))
    assert outbox.depth() == 8
    assert sender.flush(5)  # writes the two still queued
    assert outbox.depth() == 10
    assert sender.stats.snapshot()["dropped"] == 0


def test_a_lead_written_at_once_still_reaches_the_tracker_after_its_queued_click(
    tracker: Tracker, outbox: Outbox, clock: Clock
) -> None:
    sender = sender_for(tracker.url, outbox, clock)
    sender._ensure_threads = lambda: None  # type: ignore[method-assign]  # the test is the writer
    first = click()
    sender.submit(first)  # queued: the writer thread would take it within CLICK_GATHER
    sender.submit(Event("lead", first.click_id, {"offer": "1"}), durable=True)
    assert [kind for (kind,) in outbox._all("SELECT kind FROM outbox")] == ["lead"]
    key = sender.destinations[0].key
    assert outbox.claim(key, "a", limit=10, until=clock.now + 60) == []  # not due yet
    assert sender.flush(5)  # writes the queued click, as the writer would, after the lead
    clock.now += ORDER_DELAY
    [claim] = outbox.claim(key, "a", limit=10, until=clock.now + 60)
    assert claim.event == first  # the click first, though written last
    del sender._ensure_threads  # now the real threads
    sender._ensure_threads()
    outbox.finish("a", release=[claim.id])
    assert sender.flush(10)
    [click_row, lead_row] = tracker.events(limit=10)  # oldest first
    assert (click_row["type"], lead_row["type"]) == ("click", "lead")
    assert lead_row["campaignId"] == 1  # the tracker knew its click


def test_server_error_is_retried_with_backoff_and_the_same_event_id(
    sink: tuple[Sink, str], outbox: Outbox, clock: Clock
) -> None:
    server, url = sink
    server.status = 500
    sender = sender_for(url, outbox, clock)
    event = click()
    sender.submit(event)
    assert sender.flush(10)
    [(attempts, due_at, state, error)] = rows(outbox)
    assert (attempts, state, error) == (1, "pending", "HTTP 500: as told")
    assert clock.now + 0.5 <= due_at <= clock.now + 1.0  # first retry: 0.5-1 s, jittered
    server.status = 201
    clock.now += 0.4
    sender.wake()
    assert sender.flush(10)
    assert len(server.received) == 1  # not due yet
    clock.now += 0.7
    sender.wake()
    assert sender.flush(10)
    assert server.event_ids() == [event.event_id, event.event_id]
    assert rows(outbox) == []
    stats = sender.stats.snapshot()
    assert (stats["retried"], stats["sent"]) == (1, 1)


@pytest.mark.parametrize("status", [408, 429, 502, 503, 504])
def test_retryable_statuses(
    status: int, sink: tuple[Sink, str], outbox: Outbox, clock: Clock
) -> None:
    server, url = sink
    server.status = status
    sender = sender_for(url, outbox, clock)
    sender.submit(click())
    assert sender.flush(10)
    assert [row[2] for row in rows(outbox)] == ["pending"]


@pytest.mark.parametrize("status", [400, 401, 404, 422, 501, 505])
def test_permanent_failures_are_dead_at_once(
    status: int, sink: tuple[Sink, str], outbox: Outbox, clock: Clock
) -> None:
    server, url = sink
    server.status = status
    sender = sender_for(url, outbox, clock)
    sender.submit(click())
    assert sender.flush(10)
    [(attempts, _, state, error)] = rows(outbox)
    assert (attempts, state, error) == (1, "dead", f"HTTP {status}: as told")
    clock.now += 3600
    sender.wake()
    assert sender.flush(10)
    assert len(server.received) == 1
    assert sender.stats.snapshot()["failed"] == 1


def test_retry_after_is_honoured_and_capped(
    sink: tuple[Sink, str], outbox: Outbox, clock: Clock
) -> None:
    server, url = sink
    server.status = 429
    server.headers = [("Retry-After", "120")]
    sender = sender_for(url, outbox, clock, retry=RetryPolicy(retry_after_cap=600))
    sender.submit(click())
    assert sender.flush(10)
    assert rows(outbox)[0][1] == clock.now + 120
    server.headers = [("Retry-After", "86400")]
    clock.now += 120
    sender.wake()
    assert sender.flush(10)
    assert len(server.received) == 2
    assert rows(outbox)[0][1] == clock.now + 600
    server.status = 201
    clock.now += 599
    sender.wake()
    assert sender.flush(10)
    assert len(server.received) == 2  # the destination is paused as long as the row waits
    clock.now += 1
    sender.wake()
    assert sender.flush(10)
    assert rows(outbox) == []


def test_an_unanswered_request_is_retried_and_the_tracker_stores_it_once(
    tracker: Tracker, outbox: Outbox, clock: Clock
) -> None:
    delay = [1.0]

    def slow_network(environ: Any, start_response: Any) -> Any:
        answer = tracker.app(environ, start_response)  # the tracker stores the event...
        time.sleep(delay[0])  # ...and its answer is slow to come back
        return answer

    with live_server(slow_network) as url:
        sender = sender_for(url, outbox, clock, timeout=(1.0, 0.3))
        event = click()
        sender.submit(event)
        assert sender.flush(10)
        assert rows(outbox)[0][3] == "timed out"
        delay[0] = 0.0
        clock.now += 1
        sender.wake()
        assert sender.flush(10)
    assert rows(outbox) == []
    assert [e["params"]["eventId"] for e in tracker.events()] == [event.event_id]


def test_a_failing_destination_is_paused_not_hammered(
    sink: tuple[Sink, str], outbox: Outbox, clock: Clock
) -> None:
    server, url = sink
    server.status = 503
    sender = sender_for(url, outbox, clock)
    for _ in range(200):
        sender.submit(click())
    assert sender.flush(10)
    # One attempt per delivery thread at most (they start together); the rest wait.
    assert 1 <= len(server.received) <= sender.concurrency
    assert outbox.depth() == 200
    for _ in range(3):  # paused, then probed by one thread with one event at a time
        attempts = len(server.received)
        clock.now += 600
        sender.wake()
        assert sender.flush(10)
        assert len(server.received) == attempts + 1
    server.status = 201
    clock.now += 600
    sender.wake()
    assert sender.flush(10)
    assert outbox.depth() == 0
    assert len(set(server.event_ids())) == 200


def test_events_past_their_maximum_age_die_on_their_next_failure(
    sink: tuple[Sink, str], outbox: Outbox, clock: Clock
) -> None:
    server, url = sink
    server.status = 503
    sender = sender_for(url, outbox, clock, retry=RetryPolicy(max_age=3600))
    sender.submit(Event("click", str(uuid.uuid4()), {}, created_at=clock.now))
    assert sender.flush(10)
    clock.now += 3601
    sender.wake()
    assert sender.flush(10)
    [(attempts, _, state, error)] = rows(outbox)
    assert (attempts, state) == (2, "dead")
    assert error.startswith("expired after 2 attempts: HTTP 503")
    assert sender.stats.snapshot()["dead"] == 1


def test_counters_are_logged_when_something_failed(
    sink: tuple[Sink, str], outbox: Outbox, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    server, url = sink
    server.status = 503
    sender = sender_for(url, outbox, clock, report_interval=60)
    with caplog.at_level(logging.INFO, logger="bangi_landing"):
        for _ in range(5):
            sender.submit(click())
        assert sender.flush(10)
        clock.now += 61
        sender.wake()
        assert sender.flush(10)
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(" retried" in m and "5 events wait in the outbox" in m for m in infos), infos
    assert " 0 retried" not in infos[-1]


def test_a_bug_in_a_destination_does_not_kill_the_threads(
    tracker: Tracker, outbox: Outbox, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    sender = BackgroundSender([Broken(), BangiTracker(tracker.url)], outbox=outbox, clock=clock)
    with caplog.at_level(logging.ERROR, logger="bangi_landing"):
        sender.submit(click())
        assert sender.flush(10)
        sender.submit(click())
        assert sender.flush(10)
    assert "unexpected error" in caplog.text
    assert len(tracker.events()) == 2
    assert all(thread.is_alive() for thread in sender._threads)


def test_the_threads_restart_in_a_forked_child(
    tracker: Tracker, outbox: Outbox, clock: Clock
) -> None:
    sender = sender_for(tracker.url, outbox, clock)
    sender.submit(click())
    assert sender.flush(10)
    child_event = click()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            sender.submit(child_event)
            code = 0 if sender.flush(10) and sender.stats.snapshot()["sent"] == 1 else 1
        finally:
            os._exit(code)
    assert exit_code(pid, timeout=20) == 0
    assert child_event.click_id in {e["clickId"] for e in tracker.events()}


def test_flush_gives_up_after_its_timeout(outbox: Outbox, clock: Clock) -> None:
    with silent_tracker() as url:
        sender = sender_for(url, outbox, clock, timeout=(1.0, 5.0))
        sender.submit(click())
        assert sender.flush(0.3) is False


def test_uwsgi_without_threads_gets_a_clear_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    # uWSGI cannot run here; its module is what the warning reads.
    monkeypatch.setitem(sys.modules, "uwsgi", types.SimpleNamespace(opt={}))
    with caplog.at_level(logging.WARNING, logger="bangi_landing"):
        sender_for("http://127.0.0.1:9", None, clock)
    assert "--enable-threads" in caplog.text
    caplog.clear()
    for module in (
        types.SimpleNamespace(opt={"enable-threads": True}),
        types.SimpleNamespace(opt={}, has_threads=1),  # 2.0.27+: threads on by default
    ):
        monkeypatch.setitem(sys.modules, "uwsgi", module)
        with caplog.at_level(logging.WARNING, logger="bangi_landing"):
            sender_for("http://127.0.0.1:9", None, clock)
        # Only this warning counts: other tests' senders may still be logging.
        assert "--enable-threads" not in caplog.text
    monkeypatch.setitem(sys.modules, "uwsgi", types.SimpleNamespace(opt={}, has_threads=0))
    with caplog.at_level(logging.WARNING, logger="bangi_landing"):
        sender_for("http://127.0.0.1:9", None, clock)
    assert "--enable-threads" in caplog.text


# In memory only


def test_in_memory_events_are_sent_once_and_failures_counted(
    sink: tuple[Sink, str], clock: Clock
) -> None:
    server, url = sink
    sender = sender_for(url, None, clock)
    sender.submit(click())
    assert sender.flush(10)
    server.status = 503
    sender.submit(click())
    assert sender.flush(10)
    assert len(server.received) == 2
    stats = sender.stats.snapshot()
    assert (stats["sent"], stats["failed"]) == (1, 1)


def test_in_memory_a_full_queue_drops_and_counts_without_blocking(clock: Clock) -> None:
    with silent_tracker() as url:  # the thread is stuck on event one
        sender = sender_for(url, None, clock, queue_size=3, timeout=(1.0, 5.0))
        results = [sender.submit(click()) for _ in range(10)]
        assert results.count(False) >= 6
        assert sender.stats.snapshot()["dropped"] == results.count(False)


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


def test_delivery_error_carries_its_verdict() -> None:
    error = DeliveryError("HTTP 429", retryable=True, retry_after=3.0)
    assert (str(error), error.retryable, error.retry_after) == ("HTTP 429", True, 3.0)
