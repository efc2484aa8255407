"""The outbox on real SQLite: leases, outcomes, the operator's batches, processes sharing a file."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from bangi_landing.events import Event, journey_event_id
from bangi_landing.outbox import ORDER_DELAY, Outbox

from .forked import fork_while_writing, fresh_context
from .utils import Clock

DAY = 24 * 3600.0
BANGI = "bangi http://127.0.0.1:1/"
OTHER = "other http://127.0.0.1:2/"


def click(n: int = 0) -> Event:
    return Event("click", f"8f1b5c6e-7a3d-4d20-a7f1-{n:012d}", {"campaignId": 1}, created_at=1e6)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox(tmp_path: Path, clock: Clock) -> Outbox:
    return Outbox(tmp_path / "outbox.sqlite3", clock=clock)


def test_an_event_comes_back_as_it_went_in(outbox: Outbox) -> None:
    event = click()
    outbox.add([event], [BANGI], max_age=DAY)
    [claim] = outbox.claim(BANGI, "a", limit=10, until=outbox.clock() + 60)
    assert claim.event == event
    assert (claim.attempts, claim.expires_at) == (0, event.created_at + DAY)


def test_one_row_per_destination_and_adding_again_changes_nothing(outbox: Outbox) -> None:
    events = [click(i) for i in range(3)]
    outbox.add(events, [BANGI, OTHER], max_age=DAY)
    outbox.add(events, [BANGI, OTHER], max_age=DAY)
    assert outbox.counts() == {BANGI: {"pending": 3, "dead": 0}, OTHER: {"pending": 3, "dead": 0}}


def test_destinations_get_only_the_kinds_they_take(outbox: Outbox) -> None:
    lead = Event("lead", click().click_id, {}, journey_event_id("lead", click().click_id))
    outbox.add([click(), lead], {BANGI: {"click", "lead"}, OTHER: {"lead"}}, max_age=DAY)
    assert outbox.counts() == {BANGI: {"pending": 2, "dead": 0}, OTHER: {"pending": 1, "dead": 0}}


def test_a_delivered_once_per_journey_event_is_not_added_again(
    outbox: Outbox, clock: Clock
) -> None:
    click_id = click().click_id
    lead = Event("lead", click_id, {}, journey_event_id("lead", click_id), created_at=clock.now)
    outbox.add([click(), lead], [BANGI], max_age=DAY)
    clock.now += ORDER_DELAY
    for _ in ("the click", "then its lead"):
        claims = outbox.claim(BANGI, "a", limit=10, until=clock.now + 60)
        outbox.finish("a", sent=[c.id for c in claims])
    again = Event("lead", click_id, {"x": "1"}, lead.event_id, created_at=clock.now)
    outbox.add([again, click()], [BANGI, OTHER], max_age=DAY)
    # The lead goes to OTHER, which never had it; a click is never remembered.
    assert outbox.counts() == {BANGI: {"pending": 1, "dead": 0}, OTHER: {"pending": 2, "dead": 0}}
    clock.now += 31 * DAY  # past the journey's lifetime: forgotten
    outbox.forget_expired()
    outbox.add([again], [BANGI], max_age=DAY)
    assert outbox.counts()[BANGI]["pending"] == 2


def test_a_claim_brings_what_is_remembered_of_the_journey(outbox: Outbox, clock: Clock) -> None:
    first = Event("click", click().click_id, {"click": "PRO1", "src": "fb", "n": 2})
    status = Event("postback", first.click_id, {"status": "accept"}, journey={"src": "own"})
    outbox.add([first], [BANGI], max_age=DAY, keep_journeys=True)
    outbox.add([status], [OTHER], max_age=DAY)
    clock.now += ORDER_DELAY
    [claim] = outbox.claim(OTHER, "a", limit=10, until=clock.now + 60, journeys=True)
    assert claim.event.journey == {"click": "PRO1", "src": "own"}  # the event's own value wins
    [plain] = outbox.claim(BANGI, "a", limit=10, until=clock.now + 60)
    assert plain.event.journey == {}
    # A later event's journey values add to what is remembered.
    lead = Event("lead", first.click_id, {}, journey={"extra": "x"})
    outbox.add([lead], [], max_age=DAY, keep_journeys=True)
    assert outbox.journeys([first.click_id]) == {
        first.click_id: {"click": "PRO1", "src": "fb", "extra": "x"}
    }


def test_a_claimed_row_is_nobody_elses_until_its_lease_runs_out(
    outbox: Outbox, clock: Clock
) -> None:
    outbox.add([click()], [BANGI], max_age=DAY)
    assert len(outbox.claim(BANGI, "a", limit=10, until=clock.now + 60)) == 1
    assert outbox.claim(BANGI, "b", limit=10, until=clock.now + 60) == []
    clock.now += 61  # "a" died mid-send
    [claim] = outbox.claim(BANGI, "b", limit=10, until=clock.now + 60)
    outbox.finish("a", retry=[(claim.id, clock.now + 5, "late")])  # a stale lease changes nothing
    outbox.finish("b", sent=[claim.id])
    assert outbox.depth() == 0


def test_claims_take_the_oldest_due_rows_of_one_destination(outbox: Outbox, clock: Clock) -> None:
    outbox.add([click(i) for i in range(5)], [BANGI], max_age=DAY)
    outbox.add([click(9)], [OTHER], max_age=DAY)
    claims = outbox.claim(BANGI, "a", limit=3, until=clock.now + 60)
    assert [c.event.click_id[-1] for c in claims] == ["0", "1", "2"]


def test_outcomes(outbox: Outbox, clock: Clock) -> None:
    outbox.add([click(i) for i in range(4)], [BANGI], max_age=DAY)
    sent, retried, released, dead = outbox.claim(BANGI, "a", limit=4, until=clock.now + 60)
    outbox.finish(
        "a",
        sent=[sent.id],
        retry=[(retried.id, clock.now + 30, "HTTP 503: down")],
        release=[released.id],
        dead=[(dead.id, "HTTP 400: bad")],
    )
    assert [c.id for c in outbox.claim(BANGI, "b", limit=9, until=clock.now + 60)] == [released.id]
    clock.now += 31
    [again] = outbox.claim(BANGI, "b", limit=9, until=clock.now + 60)
    assert (again.id, again.attempts) == (retried.id, 1)
    assert outbox.dead_errors() == [(BANGI, "HTTP 400: bad", 1)]
    assert outbox.counts() == {BANGI: {"pending": 2, "dead": 1}}


def test_next_due_and_oldest(outbox: Outbox, clock: Clock) -> None:
    assert outbox.next_due([BANGI]) is None
    outbox.add([click()], [BANGI], max_age=DAY)
    assert outbox.next_due([BANGI]) == clock.now
    assert outbox.next_due([OTHER]) is None
    assert outbox.oldest_pending() == 1e6


def test_dead_events_can_be_revived_or_purged_in_batches(outbox: Outbox, clock: Clock) -> None:
    outbox.add([click(i) for i in range(25)], [BANGI], max_age=DAY)
    claims = outbox.claim(BANGI, "a", limit=25, until=clock.now + 60)
    outbox.finish("a", dead=[(c.id, "expired") for c in claims])
    clock.now += 2 * DAY
    assert list(outbox.retry_dead(max_age=DAY, batch=10)) == [10, 10, 5]
    revived = outbox.claim(BANGI, "b", limit=100, until=clock.now + 60)
    assert len(revived) == 25
    assert {c.expires_at for c in revived} == {clock.now + DAY}
    assert {c.attempts for c in revived} == {0}
    outbox.finish("b", dead=[(c.id, "x") for c in revived[:12]], sent=[c.id for c in revived[12:]])
    assert list(outbox.purge_dead(batch=5)) == [5, 5, 2]
    assert outbox.counts() == {}


def _claim_everything(
    path: str, name: str, start: Any, results: multiprocessing.Queue[list[int]]
) -> None:
    outbox = Outbox(path)
    start.wait(60)  # all together: a process that starts late could find nothing left
    mine: list[int] = []
    while claims := outbox.claim(BANGI, name, limit=7, until=outbox.clock() + 600):
        mine += [c.id for c in claims]
        outbox.finish(name, sent=[c.id for c in claims])
    results.put(mine)


def test_processes_sharing_a_file_never_claim_the_same_row(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    outbox = Outbox(path)
    for start in range(0, 2000, 500):
        outbox.add([click(i) for i in range(start, start + 500)], [BANGI], max_age=DAY)
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[list[int]] = context.Queue()
    start = context.Barrier(4)
    processes = [
        context.Process(target=_claim_everything, args=(path, f"p{i}", start, results))
        for i in range(4)
    ]
    for process in processes:
        process.start()
    claimed = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(10)
    every = [row for ids in claimed for row in ids]
    assert len(every) == len(set(every)) == 2000
    assert sum(1 for ids in claimed if ids) >= 2  # they really did share the work
    assert outbox.depth() == 0


def test_a_fork_while_another_thread_writes_hangs_neither_parent_nor_child(
    tmp_path: Path,
) -> None:
    # In a fresh process whose only other thread is the writer (see tests/forked.py);
    # a second generation of forks, like a gunicorn worker forking in its turn.
    pool = fresh_context().Pool(1)
    try:
        run = pool.apply_async(fork_while_writing, (tmp_path / "outbox.sqlite3",))
        assert run.get(timeout=60) == [0] * 20
    finally:
        pool.terminate()


def test_a_lead_waits_for_its_click(outbox: Outbox, clock: Clock) -> None:
    journey = "0b8e4c1a-6f2d-4e3b-9a7c-5d1e2f3a4b5c"
    first, then = Event("click", journey, {}), Event("lead", journey, {})
    outbox.add([first], [BANGI], max_age=DAY)
    outbox.add([then, click(1)], [BANGI], max_age=DAY)
    clock.now += ORDER_DELAY
    claims = outbox.claim(BANGI, "a", limit=10, until=clock.now + 60)
    assert [c.event.kind for c in claims] == ["click", "click"]  # not the lead yet
    outbox.finish("a", retry=[(claims[0].id, clock.now + 30, "HTTP 503")], sent=[claims[1].id])
    clock.now += 100
    [retried] = outbox.claim(BANGI, "a", limit=10, until=clock.now + 60)
    assert retried.event == first
    outbox.finish("a", sent=[retried.id])
    [lead] = outbox.claim(BANGI, "a", limit=10, until=clock.now + 60)
    assert lead.event == then


def test_a_lead_gives_a_click_in_another_process_time_to_be_written(
    outbox: Outbox, clock: Clock
) -> None:
    journey = "0b8e4c1a-6f2d-4e3b-9a7c-5d1e2f3a4b5c"
    outbox.add([Event("lead", journey, {})], [BANGI], max_age=DAY)
    assert outbox.claim(BANGI, "a", limit=10, until=clock.now + 60) == []  # not due yet
    assert outbox.next_due([BANGI], after=clock.now) == clock.now + ORDER_DELAY
    clock.now += ORDER_DELAY / 2
    outbox.add([Event("click", journey, {})], [BANGI], max_age=DAY)  # the other worker's click
    clock.now += ORDER_DELAY / 2
    [first] = outbox.claim(BANGI, "a", limit=10, until=clock.now + 60)
    assert first.event.kind == "click"  # written after the lead, sent before it
    assert outbox.claim(BANGI, "b", limit=10, until=clock.now + 60) == []  # the lead waits
    outbox.finish("a", sent=[first.id])
    [then] = outbox.claim(BANGI, "b", limit=10, until=clock.now + 60)
    assert then.event.kind == "lead"
