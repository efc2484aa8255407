"""The store contract (``stores.Store``), run unchanged on every store.

SQLite (a real file), memory, and PostgreSQL (a real server, tests/postgres.py):
add, claims and leases, outcomes, dead events, per-journey order, journey
memory and its lifetime; then the sender over each store, for what the
store's due times carry (backoff, ``Retry-After``, the maximum age).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bangi_landing.destinations import BangiTracker
from bangi_landing.events import Event, journey_event_id
from bangi_landing.outbox import Outbox
from bangi_landing.postgres import PostgresStore
from bangi_landing.retry import RetryPolicy
from bangi_landing.sender import BackgroundSender
from bangi_landing.stores import ORDER_DELAY, Lease, MemoryStore, Store

from .postgres import Server
from .utils import Clock, Sink, live_server

DAY = 24 * 3600.0
BANGI = "bangi http://127.0.0.1:1/"
OTHER = "other http://127.0.0.1:2/"
JOURNEY = "0b8e4c1a-6f2d-4e3b-9a7c-5d1e2f3a4b5c"


def click(n: int = 0) -> Event:
    return Event("click", f"8f1b5c6e-7a3d-4d20-a7f1-{n:012d}", {"campaignId": 1}, created_at=1e6)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "memory", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Store]:
    made: Store
    if request.param == "sqlite":
        made = Outbox(tmp_path / "outbox.sqlite3", clock=clock)
    elif request.param == "memory":
        made = MemoryStore(clock=clock)
    else:
        server: Server = request.getfixturevalue("postgres")
        server.empty()
        made = PostgresStore(server.url, clock=clock)
    yield made
    made.close()


def claim(store: Store, lease: str = "a", **options: object) -> list[int]:
    """The ids of what ``lease`` claims now (up to 100 rows, leased for a minute)."""
    options = {"limit": 100, "until": store.clock() + 60, **options}
    return [c.id for c in store.claim(BANGI, lease, **options)]  # type: ignore[arg-type]


# Adding


def test_an_event_comes_back_as_it_went_in(store: Store) -> None:
    event = click()
    store.add([event], [BANGI], max_age=DAY)
    [claimed] = store.claim(BANGI, "a", limit=10, until=store.clock() + 60)
    assert claimed.event == event
    assert (claimed.attempts, claimed.expires_at) == (0, event.created_at + DAY)


def test_one_row_per_destination_and_adding_again_changes_nothing(store: Store) -> None:
    events = [click(i) for i in range(3)]
    store.add(events, [BANGI, OTHER], max_age=DAY)
    store.add(events, [BANGI, OTHER], max_age=DAY)
    assert store.counts() == {BANGI: {"pending": 3, "dead": 0}, OTHER: {"pending": 3, "dead": 0}}
    assert store.depth() == 6


def test_destinations_get_only_the_kinds_they_take(store: Store) -> None:
    lead = Event("lead", click().click_id, {}, journey_event_id("lead", click().click_id))
    store.add([click(), lead], {BANGI: {"click", "lead"}, OTHER: {"lead"}}, max_age=DAY)
    assert store.counts() == {BANGI: {"pending": 2, "dead": 0}, OTHER: {"pending": 1, "dead": 0}}


# Journey memory


def test_a_delivered_once_per_journey_event_is_not_added_again_for_the_journeys_lifetime(
    store: Store, clock: Clock
) -> None:
    click_id = click().click_id
    lead = Event("lead", click_id, {}, journey_event_id("lead", click_id), created_at=clock.now)
    store.add([click(), lead], [BANGI], max_age=DAY)
    clock.now += ORDER_DELAY
    for _ in ("the click", "then its lead"):
        store.finish("a", sent=claim(store))
    again = Event("lead", click_id, {"x": "1"}, lead.event_id, created_at=clock.now)
    store.add([again, click()], [BANGI, OTHER], max_age=DAY)
    # The lead goes to OTHER, which never had it; a click is never remembered.
    assert store.counts() == {BANGI: {"pending": 1, "dead": 0}, OTHER: {"pending": 2, "dead": 0}}
    clock.now += 29 * DAY  # within the journey's lifetime (30 days): still remembered
    store.forget_expired()
    store.add([again], [BANGI], max_age=DAY)
    assert store.counts()[BANGI]["pending"] == 1
    clock.now += 2 * DAY  # past it: forgotten
    store.forget_expired()
    store.add([again], [BANGI], max_age=DAY)
    assert store.counts()[BANGI]["pending"] == 2


def test_a_claim_brings_what_is_remembered_of_the_journey(store: Store, clock: Clock) -> None:
    first = Event("click", click().click_id, {"click": "PRO1", "src": "fb", "n": 2})
    status = Event("postback", first.click_id, {"status": "accept"}, journey={"src": "own"})
    store.add([first], [BANGI], max_age=DAY, keep_journeys=True)
    store.add([status], [OTHER], max_age=DAY)
    clock.now += ORDER_DELAY
    [claimed] = store.claim(OTHER, "a", limit=10, until=clock.now + 60, journeys=True)
    assert claimed.event.journey == {"click": "PRO1", "src": "own"}  # the event's own value wins
    [plain] = store.claim(BANGI, "a", limit=10, until=clock.now + 60)
    assert plain.event.journey == {}
    # A later event's journey values add to what is remembered.
    lead = Event("lead", first.click_id, {}, journey={"extra": "x"})
    store.add([lead], [], max_age=DAY, keep_journeys=True)
    assert store.journeys([first.click_id]) == {
        first.click_id: {"click": "PRO1", "src": "fb", "extra": "x"}
    }


def test_pros_click_id_is_kept_for_a_status_days_later_then_forgotten(
    store: Store, clock: Clock
) -> None:
    first = Event("click", click().click_id, {"click": "PRO1"}, created_at=clock.now)
    store.add([first], [BANGI], max_age=DAY, keep_journeys=True)
    store.finish("a", sent=claim(store))
    clock.now += 20 * DAY
    store.forget_expired()
    status = Event("postback", first.click_id, {"status": "accept"}, created_at=clock.now)
    store.add([status], [BANGI], max_age=DAY)
    clock.now += ORDER_DELAY
    [claimed] = store.claim(BANGI, "a", limit=10, until=clock.now + 60, journeys=True)
    assert claimed.event.journey == {"click": "PRO1"}
    clock.now += 11 * DAY
    store.forget_expired()
    assert store.journeys([first.click_id]) == {}


def test_dead_events_of_the_destinations_named_are_deleted_after_their_time(
    store: Store, clock: Clock
) -> None:
    old = Event("click", click(1).click_id, {}, created_at=clock.now - 1)
    young = Event("click", click(2).click_id, {}, created_at=clock.now)
    store.add([old, young], [BANGI, OTHER], max_age=DAY)
    for destination in (BANGI, OTHER):
        claimed = store.claim(destination, "a", limit=2, until=clock.now + 60)
        store.finish("a", dead=[(c.id, "refused") for c in claimed])
    store.add([click(3)], [BANGI], max_age=DAY)  # pending: never deleted for its age
    clock.now += DAY
    store.forget_expired({BANGI: DAY})  # old happened more than a day ago; young, just a day
    assert store.counts() == {BANGI: {"pending": 1, "dead": 1}, OTHER: {"pending": 0, "dead": 2}}


# Claims and leases


def test_a_claimed_row_is_nobody_elses_until_its_lease_runs_out(store: Store, clock: Clock) -> None:
    store.add([click()], [BANGI], max_age=DAY)
    assert len(claim(store, "a")) == 1
    assert claim(store, "b") == []
    clock.now += 61  # "a" died mid-send
    [taken] = claim(store, "b")
    store.finish("a", retry=[(taken, clock.now + 5, "late")])  # a stale lease changes nothing
    store.extend([taken], "a", clock.now + 600)
    assert store.next_due([BANGI]) == clock.now + 60
    store.finish("b", sent=[taken])
    assert store.depth() == 0


def test_clicks_written_claimed_come_back_and_are_nobody_elses(store: Store, clock: Clock) -> None:
    stored = click(0)
    store.add([stored], [BANGI], max_age=DAY)  # stored already: another sender's to claim
    lead = Event("lead", JOURNEY, {}, created_at=1e6)
    lease = Lease("writer", clock() + 60, frozenset({BANGI}))
    events = [stored, click(1), click(2), lead]
    claimed = store.add(events, [BANGI, OTHER], max_age=DAY, lease=lease)
    # The new clicks for BANGI, claimed as claim() would leave them; nothing else.
    assert sorted((key, c.event.click_id) for key, c in claimed) == [
        (BANGI, click(1).click_id),
        (BANGI, click(2).click_id),
    ]
    assert {c.attempts for _, c in claimed} == {0}
    assert {c.expires_at for _, c in claimed} == {1e6 + DAY}
    clock.now += ORDER_DELAY
    # Click 0 and the lead (held an hour): the rest are leased.
    assert len(claim(store, "b", until=clock() + 3600)) == 2
    clock.now += 61  # the writer's lease has run out (it died before sending them)
    assert sorted(claim(store, "c")) == sorted(c.id for _, c in claimed)


def test_a_lease_extended_keeps_the_row(store: Store, clock: Clock) -> None:
    store.add([click()], [BANGI], max_age=DAY)
    [row] = claim(store, "a")
    store.extend([row], "a", clock.now + 120)
    clock.now += 61
    assert claim(store, "b") == []
    clock.now += 60
    assert claim(store, "b") == [row]


def test_claims_take_the_oldest_due_rows_of_one_destination(store: Store, clock: Clock) -> None:
    store.add([click(i) for i in range(5)], [BANGI], max_age=DAY)
    store.add([click(9)], [OTHER], max_age=DAY)
    claims = store.claim(BANGI, "a", limit=3, until=clock.now + 60)
    assert [c.event.click_id[-1] for c in claims] == ["0", "1", "2"]


def test_a_probe_takes_the_row_tried_the_fewest_times(store: Store, clock: Clock) -> None:
    store.add([click(0)], [BANGI], max_age=DAY)
    [refused] = claim(store)
    store.finish("a", retry=[(refused, clock.now, "HTTP 503")])
    store.add([click(1)], [BANGI], max_age=DAY)
    [probe] = store.claim(BANGI, "a", limit=1, until=clock.now + 60, fresh_first=True)
    assert (probe.event.click_id, probe.attempts) == (click(1).click_id, 0)


def test_senders_claiming_at_once_never_get_the_same_row(store: Store) -> None:
    store.add([click(i) for i in range(400)], [BANGI], max_age=DAY)
    claimed: list[list[int]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def drain(n: int) -> None:
        start.wait(10)
        while ids := claim(store, f"s{n}", limit=7):
            claimed[n] += ids
            store.finish(f"s{n}", sent=ids)
        store.close()

    threads = [threading.Thread(target=drain, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    every = [row for ids in claimed for row in ids]
    assert len(every) == len(set(every)) == 400
    assert store.depth() == 0


# Outcomes


def test_outcomes(store: Store, clock: Clock) -> None:
    store.add([click(i) for i in range(4)], [BANGI], max_age=DAY)
    sent, retried, released, dead = claim(store, limit=4)
    store.finish(
        "a",
        sent=[sent],
        retry=[(retried, clock.now + 30, "HTTP 503: down")],
        release=[released],
        dead=[(dead, "HTTP 400: bad")],
    )
    assert claim(store, "b") == [released]
    assert store.next_due([BANGI], after=clock.now) == clock.now + 30
    clock.now += 30
    [again] = store.claim(BANGI, "b", limit=9, until=clock.now + 60)
    assert (again.id, again.attempts) == (retried, 1)
    assert store.dead_errors() == [(BANGI, "HTTP 400: bad", 1)]
    assert store.counts() == {BANGI: {"pending": 2, "dead": 1}}
    assert (store.depth(), store.dead_count()) == (2, 1)


def test_next_due_and_oldest(store: Store, clock: Clock) -> None:
    assert store.next_due([BANGI]) is None
    assert store.oldest_pending() is None
    store.add([click()], [BANGI], max_age=DAY)
    assert store.next_due([BANGI]) == clock.now
    assert store.next_due([OTHER]) is None
    assert store.oldest_pending() == 1e6


def test_dead_events_can_be_revived_or_purged_in_batches(store: Store, clock: Clock) -> None:
    store.add([click(i) for i in range(25)], [BANGI], max_age=DAY)
    store.finish("a", dead=[(row, "expired") for row in claim(store)])
    clock.now += 2 * DAY
    assert list(store.retry_dead(max_age=DAY, batch=10)) == [10, 10, 5]
    revived = store.claim(BANGI, "b", limit=100, until=clock.now + 60)
    assert len(revived) == 25
    assert {c.expires_at for c in revived} == {clock.now + DAY}
    assert {c.attempts for c in revived} == {0}
    store.finish("b", dead=[(c.id, "x") for c in revived[:12]], sent=[c.id for c in revived[12:]])
    assert list(store.purge_dead(batch=5)) == [5, 5, 2]
    assert store.counts() == {}


def test_purging_a_destination_forgets_it_entirely(store: Store, clock: Clock) -> None:
    lead = Event("lead", JOURNEY, {}, journey_event_id("lead", JOURNEY), created_at=clock.now)
    store.add([lead], [BANGI, OTHER], max_age=DAY)
    clock.now += ORDER_DELAY
    store.finish("a", sent=claim(store))
    store.add([click(i) for i in range(3)], [BANGI], max_age=DAY)
    assert list(store.purge_destination(BANGI, batch=2)) == [2, 1]
    assert store.counts() == {OTHER: {"pending": 1, "dead": 0}}
    store.add([lead], [BANGI], max_age=DAY)  # nothing is remembered as delivered to it
    assert store.counts()[BANGI]["pending"] == 1


# Per-journey order


def test_a_lead_waits_for_its_click(store: Store, clock: Clock) -> None:
    first, then = Event("click", JOURNEY, {}), Event("lead", JOURNEY, {})
    store.add([first], [BANGI], max_age=DAY)
    store.add([then, click(1)], [BANGI], max_age=DAY)
    clock.now += ORDER_DELAY
    claims = store.claim(BANGI, "a", limit=10, until=clock.now + 60)
    assert [c.event.kind for c in claims] == ["click", "click"]  # not the lead yet
    store.finish("a", retry=[(claims[0].id, clock.now + 30, "HTTP 503")], sent=[claims[1].id])
    clock.now += 100
    [retried] = store.claim(BANGI, "a", limit=10, until=clock.now + 60)
    assert retried.event == first
    store.finish("a", sent=[retried.id])
    [lead] = store.claim(BANGI, "a", limit=10, until=clock.now + 60)
    assert lead.event == then


def test_a_lead_gives_a_click_in_another_process_time_to_be_written(
    store: Store, clock: Clock
) -> None:
    store.add([Event("lead", JOURNEY, {})], [BANGI], max_age=DAY)
    assert claim(store) == []  # not due yet
    assert store.next_due([BANGI], after=clock.now) == clock.now + ORDER_DELAY
    clock.now += ORDER_DELAY / 2
    store.add([Event("click", JOURNEY, {})], [BANGI], max_age=DAY)  # the other worker's click
    clock.now += ORDER_DELAY / 2
    [first] = store.claim(BANGI, "a", limit=10, until=clock.now + 60)
    assert first.event.kind == "click"  # written after the lead, sent before it
    assert claim(store, "b") == []  # the lead waits
    store.finish("a", sent=[first.id])
    [then] = store.claim(BANGI, "b", limit=10, until=clock.now + 60)
    assert then.event.kind == "lead"


def test_a_lead_written_after_refused_writes_waits_longer_for_its_click(
    store: Store, clock: Clock
) -> None:
    # The sender asks for it (RECOVERY_ORDER_DELAY): other workers' clicks may still
    # wait in their memory for their writer's next try.
    written = clock.now
    store.add([Event("lead", JOURNEY, {})], [BANGI], max_age=DAY, order_delay=2.25)
    clock.now += 2.0
    assert claim(store) == []
    assert store.next_due([BANGI]) == written + 2.25
    clock.now += 0.25
    assert len(claim(store)) == 1


def test_a_journeys_later_events_go_one_at_a_time_in_order(store: Store, clock: Clock) -> None:
    events = [Event(kind, JOURNEY, {"n": n}) for n, kind in enumerate(["lead", "postback"])]
    store.add(events, [BANGI], max_age=DAY)
    clock.now += ORDER_DELAY
    [lead] = store.claim(BANGI, "a", limit=10, until=clock.now + 60)
    assert lead.event.kind == "lead"
    store.finish("a", retry=[(lead.id, clock.now, "HTTP 503")])  # due again at once
    [again] = store.claim(BANGI, "a", limit=10, until=clock.now + 60)
    assert again.id == lead.id  # the status waits behind it
    store.finish("a", sent=[again.id])
    [status] = store.claim(BANGI, "a", limit=10, until=clock.now + 60)
    assert status.event.kind == "postback"


# The sender over each store: what due times carry


def deliver(sender: BackgroundSender, clock: Clock, seconds: float = 0.0) -> None:
    clock.now += seconds
    sender.wake()
    assert sender.flush(10)


def test_retry_with_backoff_and_retry_after(store: Store, clock: Clock) -> None:
    server = Sink()
    with live_server(server) as url:
        sender = BackgroundSender(
            [BangiTracker(url)], outbox=store, clock=clock, retry=RetryPolicy(retry_after_cap=600)
        )
        server.status = 503
        sender.submit(Event("click", JOURNEY, {}, created_at=clock.now))
        deliver(sender, clock)
        due = store.next_due([BangiTracker(url).key])
        assert due is not None and clock.now + 0.5 <= due <= clock.now + 1.0  # jittered backoff
        server.status, server.headers = 429, [("Retry-After", "120")]
        deliver(sender, clock, 1.0)
        assert store.next_due([BangiTracker(url).key]) == clock.now + 120
        server.status, server.headers = 201, []
        deliver(sender, clock, 119)
        assert len(server.received) == 2  # not before Retry-After
        deliver(sender, clock, 1)
        assert server.event_ids() == [server.event_ids()[0]] * 3  # one eventId, every attempt
        assert store.depth() == 0
        sender.close()


def test_an_event_still_failing_after_24_hours_is_dead(store: Store, clock: Clock) -> None:
    server = Sink()
    server.status = 503
    with live_server(server) as url:
        sender = BackgroundSender([BangiTracker(url)], outbox=store, clock=clock)
        sender.submit(Event("click", JOURNEY, {}, created_at=clock.now))
        deliver(sender, clock)
        deliver(sender, clock, DAY - 10)
        assert (store.depth(), store.dead_count()) == (1, 0)  # not before its 24 hours
        deliver(sender, clock, 3600)
        assert (store.depth(), store.dead_count()) == (0, 1)
        [(_, error, count)] = store.dead_errors()
        assert count == 1
        assert error.startswith("expired after 3 attempts: HTTP 503")
        sender.close()


def test_a_slow_destination_keeps_a_batch_leased_until_it_is_recorded(store: Store) -> None:
    # A batch outlasts its lease: rows already sent wait for finish() with the rest,
    # and a second sender (another process, another host) must not send them again.
    server = Sink()
    server.delay = 0.4  # 7 events: 2.8 s, longer than the 2 s lease
    with live_server(server) as url:
        destination = BangiTracker(url)
        store.add([click(i) for i in range(7)], [destination.key], max_age=DAY)
        store.clock = time.time  # real time: the senders wait for it
        one, two = (
            BackgroundSender([destination], outbox=store, lease=2.0, batch_size=7, concurrency=1)
            for _ in range(2)
        )
        one.start()
        assert server.wait_for(1)  # the first sender has the whole batch
        two.start()
        assert one.flush(10) and two.flush(10)
        assert store.depth() == 0
        assert sorted(server.event_ids()) == sorted(set(server.event_ids()))  # none twice
        one.close()
        two.close()
