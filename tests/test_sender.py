"""The background sender: retries by the book, off the request path, fork-safe, never raising.

And what may fail, and what it may hold back: events a tracker could not
store, events it keeps refusing, destinations that are down, and the log
lines that say so.

Time is a fake clock the tests move; the destinations are real HTTP servers
on loopback (the bundled tracker, or a sink told how to answer).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import socket
import sys
import time
import types
import uuid
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from bangi_landing import sender as sender_module
from bangi_landing.destinations import AlterCPAPro, BangiTracker, DeliveryError
from bangi_landing.events import MAX_DEPTH, MAX_PAYLOAD_BYTES, Event, clean_event
from bangi_landing.outbox import Outbox
from bangi_landing.retry import RetryPolicy
from bangi_landing.sender import BackgroundSender, ThrottledLog
from bangi_landing.stores import ORDER_DELAY, Claim
from bangi_landing.tracker.app import MAX_BODY

from .conftest import Landing, Tracker
from .forked import carry_then_die, exit_code, fresh_context
from .utils import Clock, Sink, eventually, form_click_ids, live_server, silent_tracker

TOKEN = "pro-site-token-5f3a9c"
CLICK_ID = "8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1"


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


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def run(sender: BackgroundSender, clock: Clock, seconds: float) -> None:
    """Let ``seconds`` pass on the fake clock and deliver whatever is due then.

    flush() also waits for a row due within ``ORDER_DELAY`` (a lead giving its
    click time), which a retry may be, by chance: the fake clock lets that
    moment pass too.
    """
    clock.now += seconds
    for _ in range(3):
        sender.wake()
        if sender.flush(2):
            return
        clock.now += ORDER_DELAY
    raise AssertionError("the sender never settled")


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


class Counting(Outbox):
    """The SQLite outbox, counting the events written to it and the rows claimed."""

    written = 0
    claimed = 0

    def add(self, events: Sequence[Event], *args: Any, **kwargs: Any) -> list[tuple[str, Claim]]:
        self.written += len(events)
        return super().add(events, *args, **kwargs)

    def claim(self, *args: Any, **kwargs: Any) -> list[Claim]:
        claims = super().claim(*args, **kwargs)
        self.claimed += len(claims)
        return claims


class Carrying(NamedTuple):
    server: Sink
    sender: BackgroundSender
    outbox: Counting
    learned: int  # requests the sink got while the sender learned


@pytest.fixture
def carrying(
    sink: tuple[Sink, str], tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> Carrying:
    """A sender that has learned its tracker answers whole batches fast: its clicks are carried."""
    server, url = sink
    outbox = Counting(tmp_path / "outbox.sqlite3", clock=clock)
    monkeypatch.setattr(sender_module, "SLOW_ANSWERS", 10.0)  # any loopback answer is fast
    sender = sender_for(url, outbox, clock)
    key = sender.destinations[0].key
    while not sender._whole_batches.get(key):  # a pipelined batch of 8 or more answered
        assert outbox.written < 300, "the sender never learned its tracker is fast"
        for _ in range(30):  # written and claimed: the sender learns the tracker is fast
            sender.submit(click())
        assert sender.flush(10)
    outbox.written = outbox.claimed = 0
    return Carrying(server, sender, outbox, len(server.received))


def test_a_fast_trackers_clicks_are_delivered_without_being_written(
    carrying: Carrying, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, sender, outbox, learned = carrying
    # However slow the sink under load: no click is written for its deadline here.
    monkeypatch.setattr(sender_module, "CARRY_FOR", 5.0)
    later = [click() for _ in range(50)]
    for start in range(0, 50, 10):  # ten at a time: the sink answers a request a millisecond
        for event in later[start : start + 10]:
            sender.submit(event)
        # The writer thread carries them (flush would write them itself).
        assert eventually(lambda: len(server.received) == learned + start + 10)  # noqa: B023
    assert sender.flush(10)
    assert (outbox.written, outbox.claimed) == (0, 0)  # none of the later ones
    assert sorted(server.event_ids()[-50:]) == sorted(e.event_id for e in later)
    assert outbox.depth() == 0


def test_carried_clicks_not_delivered_within_100_ms_are_written_claimed(
    carrying: Carrying, clock: Clock
) -> None:
    server, sender, outbox, learned = carrying
    server.delay = 0.1  # the tracker slows down: 2 s for twenty pipelined clicks
    later = [click() for _ in range(20)]
    for event in later:
        sender.submit(event)
    assert server.wait_for(learned + 1)  # being sent
    began = time.monotonic()
    # On disk well before the tracker has them, claimed: no other sender takes them.
    assert eventually(lambda: outbox.depth() == 20)
    assert time.monotonic() - began < 1.0
    key = sender.destinations[0].key
    assert outbox.claim(key, "another", limit=100, until=clock.now + 60) == []
    assert sender.flush(10)
    assert outbox.depth() == 0  # deleted once delivered
    assert sorted(server.event_ids()[learned:]) == sorted(e.event_id for e in later)
    assert outbox.claimed == 0  # the delivery thread kept them: no claim


def test_carried_clicks_the_tracker_refuses_are_written_and_retried(
    carrying: Carrying, clock: Clock, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    server, sender, outbox, _ = carrying
    monkeypatch.setattr(sender_module, "CARRY_FOR", 5.0)  # written for the failure, not the time
    refused, accepted = click(), click()
    server.statuses[refused.event_id] = 503
    sender.submit(refused)
    sender.submit(accepted)
    assert eventually(lambda: sender.stats.snapshot()["retried"] == 1)
    # Only the one refused is written, due again after its backoff.
    assert outbox.written == 1
    [(event_id, attempts, _)] = [
        (row[0], row[1], row[2])
        for row in outbox._all("SELECT event_id, attempts, lease FROM outbox")
    ]
    assert (event_id, attempts) == (refused.event_id, 1)
    del server.statuses[refused.event_id]
    clock.now += 3600
    sender.wake()
    assert sender.flush(10)
    assert outbox.depth() == 0
    assert server.event_ids().count(refused.event_id) == 2
    assert any("will retry" in line for line in warnings(caplog))


def test_a_sender_killed_while_carrying_clicks_has_written_them(
    sink: tuple[Sink, str], tmp_path: Path
) -> None:
    # A click is at the tracker or in the outbox within 100 ms: here, in the outbox.
    server, url = sink
    path = tmp_path / "outbox.sqlite3"
    context = fresh_context()
    clicks, stall = context.Queue(), context.Event()
    child = context.Process(target=carry_then_die, args=(url, str(path), clicks, stall))
    child.start()
    try:
        assert clicks.get(timeout=20) == "learned"
        server.delay = 5.0  # the tracker stalls: the carried clicks are sent, never answered
        stall.set()
        event_ids = clicks.get(timeout=10)
        time.sleep(0.15)
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(10)
    finally:
        if child.is_alive():
            child.kill()
    written = Outbox(path)._all("SELECT event_id, lease FROM outbox")
    assert sorted(event_id for event_id, _ in written) == sorted(event_ids)
    assert all(lease for _, lease in written)  # claimed: another sender waits out the lease


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
    clock.now += 0.2  # not due for 0.3 s at least: flush waits only for what is due in 0.25 s
    sender.wake()
    assert sender.flush(10)
    assert len(server.received) == 1  # not due yet
    clock.now += 0.9
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
    assert (attempts, state) == (1, "dead")
    assert error.startswith(f"HTTP {status}: as told")
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
    # Five different events failing in a row pause it; the other delivery
    # threads may each have one more on the way. The rest wait.
    assert 5 <= len(server.received) <= 5 + sender.concurrency - 1
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


@pytest.mark.logs_errors
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
            # Delivered by the child's threads, or by the parent's, which share the outbox.
            delivered = sender.flush(10) and sender.stats.snapshot()["queued"] == 1
            threads = sender._threads  # started afresh in the child
            code = 0 if delivered and threads and all(t.is_alive() for t in threads) else 1
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


# What fails, and what it may hold back

# Events are cleaned where they are made: whatever a visitor sends, the tracker takes


def nested(levels: int, inner: Any) -> Any:
    """A field's value with ``inner`` ``levels`` deep (the event's parameters are level 1)."""
    for _ in range(levels - 2):
        inner = {"in": inner}
    return inner


def test_what_a_tracker_cannot_store_is_fixed_in_one_logged_pass(
    caplog: pytest.LogCaptureFixture,
) -> None:
    event = Event(
        "lead",
        CLICK_ID,
        {
            "utm_content": "a\udfffb",
            "score": math.nan,
            "limit": -math.inf,
            "order": 2**70,
            "price": Decimal("12.50"),
            "kept": nested(MAX_DEPTH, {"leaf": 1}),
            "deep": nested(MAX_DEPTH + 1, {"leaf": 1}),
            "offer": "7",
        },
        journey={"source": "\ud800"},
    )
    with caplog.at_level(logging.INFO, logger="bangi_landing"):
        cleaned = clean_event(event)
    assert cleaned.params == {
        "utm_content": "a\ufffdb",
        "score": "NaN",
        "limit": "-Infinity",
        "order": str(2**70),
        "price": "12.50",
        "kept": nested(MAX_DEPTH, {"leaf": 1}),
        "deep": nested(MAX_DEPTH, {}),
        "offer": "7",
    }
    assert cleaned.journey == {"source": "\ufffd"}
    assert (cleaned.event_id, cleaned.click_id, cleaned.created_at) == (
        event.event_id,
        event.click_id,
        event.created_at,
    )
    json.loads(cleaned.body().decode("utf-8"))  # strict: encodable, and JSON
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"bangi-landing: lead event {event.event_id} cleaned before delivery")
    for field in ("utm_content", "score", "limit", "order", "price", "deep", "journey"):
        assert repr(field) in line
    assert "'kept'" not in line and "'offer'" not in line


def test_an_event_that_needs_nothing_is_itself_and_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    event = Event("lead", CLICK_ID, {"offer": "7", "sum": 1.5, "tags": ["a", "é"], "n": None})
    with caplog.at_level(logging.INFO, logger="bangi_landing"):
        assert clean_event(event) is event
    assert caplog.records == []


def test_a_body_over_the_limit_loses_its_largest_fields_never_ours() -> None:
    assert MAX_PAYLOAD_BYTES == MAX_BODY  # the bundled tracker's limit is the one fitted to
    params = {"status": "accept", "payout": 10, "big": "x" * 40_000, "bigger": "é" * 30_000}
    event = Event("postback", CLICK_ID, {**params, "small": "s"})
    assert len(event.body()) > MAX_PAYLOAD_BYTES
    cleaned = clean_event(event, max_bytes=MAX_PAYLOAD_BYTES)
    assert cleaned.params == {"status": "accept", "payout": 10, "big": "x" * 40_000, "small": "s"}
    assert len(cleaned.body()) <= MAX_PAYLOAD_BYTES


@pytest.mark.parametrize(
    ("body", "field", "stored"),
    [
        ('{"offer": "7", "utm_content": "\\udfff"}', "utm_content", "\ufffd"),
        ('{"offer": "7", "score": NaN}', "score", "NaN"),
        ('{"offer": "7", "score": Infinity}', "score", "Infinity"),
        # A submit within the landing's 64 KiB is a lead over the tracker's.
        (json.dumps({"offer": "7", "utm_term": "t" * (64 * 1024 - 90)}), "utm_term", None),
    ],
    ids=["lone surrogate", "NaN", "Infinity", "64 KiB"],
)
def test_a_submit_the_tracker_could_not_store_becomes_a_lead_it_takes(
    landing: Landing, caplog: pytest.LogCaptureFixture, body: str, field: str, stored: str | None
) -> None:
    [click_id, _] = form_click_ids(landing.get("/").text)
    body = body.replace("{", f'{{"sub1": "{click_id}", ', 1)  # the form's field: a lead
    assert len(body) <= 64 * 1024
    with caplog.at_level(logging.INFO, logger="bangi_landing"):
        response = landing.post(data=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 200
        [lead] = landing.events(type="lead")
    assert lead["params"]["offer"] == "7"
    assert lead["params"].get(field) == stored
    [line] = [r.getMessage() for r in caplog.records if "cleaned" in r.getMessage()]
    assert repr(field) in line
    assert warnings(caplog) == []  # no delivery failed


# One event's failure is its own; failures that span events are the destination's


def test_an_event_that_keeps_failing_backs_off_alone(
    sink: tuple[Sink, str], outbox: Outbox, clock: Clock
) -> None:
    server, url = sink
    poison = click()
    server.statuses = {poison.event_id: 500}
    sender = sender_for(url, outbox, clock)
    sender.submit(poison)
    assert sender.flush(10)
    others = [click() for _ in range(10)]
    for event in others:
        sender.submit(event)
    assert sender.flush(10)  # no time passes: the destination was never paused
    assert set(server.event_ids()) == {poison.event_id} | {e.event_id for e in others}
    [(attempts, due_at, state, _)] = rows(outbox)
    assert (attempts, state) == (1, "pending")
    run(sender, clock, due_at - clock.now)
    assert rows(outbox)[0][0] == 2  # retried on its own backoff


def test_events_a_tracker_keeps_refusing_do_not_hold_back_a_new_click(
    sink: tuple[Sink, str], outbox: Outbox, clock: Clock
) -> None:
    # Issue 15.1: after 8 such events a new click took 213 s; after 14, 1,477 s.
    server, url = sink
    sender = sender_for(url, outbox, clock)
    for _ in range(8):
        poison = click()
        server.statuses[poison.event_id] = 500
        sender.submit(poison)
        run(sender, clock, 5)
    fresh = click()
    sender.submit(fresh)
    started = clock.now
    while fresh.event_id not in server.event_ids() and clock.now - started < 30:
        run(sender, clock, 1)
    assert fresh.event_id in server.event_ids()
    assert clock.now - started <= 30
    assert outbox.depth() == 8  # the refused ones wait, each on its own backoff


def test_failures_that_span_events_pause_the_destination_until_one_goes_through(
    sink: tuple[Sink, str], outbox: Outbox, clock: Clock
) -> None:
    server, url = sink
    server.status = 503
    sender = sender_for(url, outbox, clock, concurrency=1)
    events = [click() for _ in range(20)]
    for event in events:
        sender.submit(event)
    assert sender.flush(10)
    pause_after = RetryPolicy().pause_after
    assert len(server.received) == pause_after  # then paused: the rest waits
    for probes in (1, 2, 3):  # after each pause one event, never one tried before
        run(sender, clock, 600)
        tried = server.event_ids()
        assert len(tried) == pause_after + probes
        assert len(set(tried)) == len(tried)
    server.status = 201
    run(sender, clock, 600)  # the probe goes through: the breaker closes, all go
    assert outbox.depth() == 0
    assert set(server.event_ids()) == {e.event_id for e in events}
    server.status = 503
    sender.submit(click())
    assert sender.flush(10)
    assert rows(outbox)[0][0] == 1  # closed: a new failure is tried at once, counted anew


def test_an_event_refused_for_an_hour_while_others_go_through_is_dead(
    sink: tuple[Sink, str], outbox: Outbox, clock: Clock
) -> None:
    server, url = sink
    journey = str(uuid.uuid4())
    poison = Event("click", journey, {"campaignId": 1}, created_at=clock.now)
    lead = Event("lead", journey, {"offer": "1"}, created_at=clock.now)
    server.statuses = {poison.event_id: 500}
    sender = sender_for(url, outbox, clock, concurrency=1)
    sender.submit(poison)
    sender.submit(lead, durable=True)
    started = clock.now
    while outbox.dead_count() == 0 and clock.now - started < 6 * 3600:
        sender.submit(click())  # other events keep going through
        run(sender, clock, 60)
    [(attempts, _, state, error)] = outbox._all(
        "SELECT attempts, due_at, state, last_error FROM outbox WHERE event_id = ?",
        (poison.event_id,),
    )
    policy = RetryPolicy()
    assert state == "dead"
    assert attempts >= policy.refused_attempts
    assert policy.refused_for <= clock.now - started <= policy.refused_for + 2 * policy.longest
    assert re.fullmatch(
        r"refused \d+ times over \d+ min while other events went through: .*",
        error,
    )
    assert error.endswith("HTTP 500: as told")
    run(sender, clock, 1)
    assert lead.event_id in server.event_ids()  # its journey goes on
    assert outbox.depth() == 0


def test_an_outage_kills_no_event_before_its_maximum_age(
    sink: tuple[Sink, str], outbox: Outbox, clock: Clock
) -> None:
    server, url = sink
    server.status = 503
    sender = sender_for(url, outbox, clock)
    event = Event("click", str(uuid.uuid4()), {"campaignId": 1}, created_at=clock.now)
    sender.submit(event)
    for _ in range(24):  # two hours down
        run(sender, clock, 300)
    [(attempts, _, state, _)] = rows(outbox)
    assert (state, attempts >= RetryPolicy().refused_attempts) == ("pending", True)
    server.status = 201
    run(sender, clock, 300)
    assert outbox.depth() == 0


# Failure lines say where (never a secret) and what happens next


def closed_port() -> str:
    """The URL of a loopback port nothing listens on: a connection is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_a_refused_connection_names_the_url_and_when_it_is_retried(
    outbox: Outbox, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    url = closed_port()
    sender = sender_for(url, outbox, clock)
    event = click()
    with caplog.at_level(logging.WARNING, logger="bangi_landing"):
        sender.submit(event)
        assert sender.flush(10)
    [line] = warnings(caplog)
    assert f"bangi click event {event.event_id} to {url}/api/v2/track/click failed" in line
    assert "connection failed: ConnectionRefusedError" in line
    assert re.search(r"; will retry in 1 s$", line), line


def test_a_404_names_the_url_called_says_the_event_is_dead_and_hints_the_base_url(
    sink: tuple[Sink, str], outbox: Outbox, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    server, url = sink
    server.status = 404
    sender = sender_for(url + "/api/v2/", outbox, clock)  # a common mistake
    with caplog.at_level(logging.WARNING, logger="bangi_landing"):
        sender.submit(click())
        assert sender.flush(10)
    [line] = warnings(caplog)
    assert f"to {url}/api/v2/api/v2/track/click failed: HTTP 404" in line
    assert "tracker_url must be the tracker's base URL" in line and "without /api/v2" in line
    assert line.endswith("dead, not retried (see: bangi-landing outbox status)")
    assert "without /api/v2" in rows(outbox)[0][3]  # and the outbox status shows it too


@pytest.mark.parametrize("answer", ["refused", 404])
def test_pro_failure_lines_name_the_url_but_never_the_token(
    sink: tuple[Sink, str],
    outbox: Outbox,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    answer: str | int,
) -> None:
    server, url = sink
    if answer == "refused":
        url = closed_port()
    else:
        server.status = int(answer)
    sender = BackgroundSender([AlterCPAPro(url, TOKEN)], outbox=outbox, clock=clock)
    with caplog.at_level(logging.WARNING, logger="bangi_landing"):
        sender.submit(Event("lead", CLICK_ID, {}, journey={"click": "PRO1"}), durable=True)
        run(sender, clock, 1)  # a lead waits a moment for its click
    # Only this sender's: an earlier test's threads may still be failing meanwhile.
    [line] = [line for line in warnings(caplog) if url in line]
    assert f"to {url}/api/site/click.json failed" in line
    assert ("will retry in" if answer == "refused" else "dead") in line
    assert TOKEN not in caplog.text and "token=" not in caplog.text


def test_each_destination_has_its_own_throttled_line_which_names_it(
    outbox: Outbox, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    tracker_url, pro_url = closed_port(), closed_port()
    destinations = [BangiTracker(tracker_url), AlterCPAPro(pro_url, TOKEN)]
    sender = BackgroundSender(destinations, outbox=outbox, clock=clock, concurrency=1)
    with caplog.at_level(logging.WARNING, logger="bangi_landing"):
        for _ in range(3):
            lead = Event("lead", str(uuid.uuid4()), {}, journey={"click": "PRO1"})
            sender.submit(lead, durable=True)
        run(sender, clock, 1)  # a lead waits a moment for its click
        first = warnings(caplog)
        caplog.clear()
        run(sender, clock, 61)  # every event due again, and the minute over
        later = warnings(caplog)
    # One line per destination at once, however many failed; then one a minute.
    assert len(first) == 2  # in whichever order the two were tried
    assert sum(f"{tracker_url}/api/v2/track/lead" in line for line in first) == 1
    assert sum(f"{pro_url}/api/site/click.json" in line for line in first) == 1
    assert len(later) == 2
    for where in (f"{tracker_url}/api/v2/track/lead", f"{pro_url}/api/site/click.json"):
        [line] = [line for line in later if where in line]
        assert line.endswith("(2 more failures in the last 60 s)"), line


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
    with silent_tracker() as url:
        sender = sender_for(url, None, clock, queue_size=3, timeout=(1.0, 5.0))
        sender._ensure_threads = lambda: None  # type: ignore[method-assign]  # nothing takes any
        results = [sender.submit(click()) for _ in range(10)]
        assert results == [True] * 3 + [False] * 7
        assert sender.stats.snapshot()["dropped"] == 7


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


def test_close_delivers_then_stops_every_thread(
    sink: tuple[Sink, str], outbox: Outbox, clock: Clock
) -> None:
    server, url = sink
    sender = sender_for(url, outbox, clock)
    sender.submit(click())
    threads = list(sender._threads)
    assert threads and all(thread.is_alive() for thread in threads)
    sender.close(10)
    assert len(server.received) == 1
    assert not any(thread.is_alive() for thread in threads)
    sender._next_start_check = 0.0  # look now, not in half a second
    sender.start()  # a closed sender starts nothing again
    assert not any(thread.is_alive() for thread in sender._threads)
