"""Where events wait until a destination has taken them: the store interface, and its memory store.

Layout: this module holds the contract every outbox store keeps (:class:`Store`),
the constants and helpers the stores share, and :class:`MemoryStore`, the
store in one process's memory. The stores on disk and in a database are
``outbox.Outbox`` (a SQLite file, the default) and ``postgres.PostgresStore``
(PostgreSQL, shared by many hosts); ``config.outbox`` picks one from the
``outbox`` option. The sender (``sender.BackgroundSender``) and the
``bangi-landing outbox`` commands see only :class:`Store`.

The contract (``tests/test_store_contract.py`` runs it on every store):

* one row per event and destination; adding an event again changes nothing,
  nor does adding a once-per-journey event (lead, status) that was delivered
  to that destination within the journey's lifetime;
* a claim leases due rows to one sender until a time; nobody else gets them
  before the lease runs out, and then anyone may (a sender that died);
* a row is deleted only when delivered; a failure puts it back with a later
  due time, or makes it dead (kept, never sent, until revived or purged);
* a journey's rows go in order, its click first: a lead or status becomes
  due :data:`ORDER_DELAY` after it is written and then waits while its click,
  or an older row of its journey, is pending (seed 004: a lead before its
  click loses its campaign);
* what destinations need of a journey's click (its URL parameters, Pro's
  click id) is kept for the journey's lifetime and given with each claim.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Protocol

from .events import Event

__all__ = ["ORDER_DELAY", "RECOVERY_ORDER_DELAY", "Claim", "MemoryStore", "Store"]

ORDER_DELAY = 0.25  # seconds a journey's later events wait for its click to be written
# The same after the outbox refused writes (a database away, a file locked or full):
# another process's click may wait in its memory, or its spool, for the next try of
# its writer (every WRITE_RETRY_INTERVAL, a second), so a lead waits longer.
RECOVERY_ORDER_DELAY = ORDER_DELAY + 2.0


@dataclass(frozen=True)
class Claim:
    """A row this sender may deliver until its lease runs out."""

    id: int
    event: Event
    attempts: int  # before this one
    expires_at: float


class Lease(NamedTuple):
    """Clicks to write already claimed (``Store.add``): by ``token``, until ``until``,
    for these ``destinations``."""

    token: str
    until: float
    destinations: frozenset[str]


class Store(Protocol):
    """An outbox: events per destination, leased to senders, kept until delivered.

    Every method may be called from any thread; a store shared by processes
    (SQLite, PostgreSQL) keeps its promises across them. The arguments mean
    the same as ``outbox.Outbox``'s, whose docstrings say them in full.
    """

    #: Where the events are, for log lines and the operator: never a password.
    name: str
    #: Wall-clock seconds, the same for every process sharing the store.
    clock: Callable[[], float]
    #: Exceptions that mean the store is unusable for now (locked, full,
    #: unreachable): the sender logs them and tries again; anything else is a bug.
    faults: tuple[type[Exception], ...]
    #: Whether the store tells :meth:`listen` when another process adds rows.
    notifies: bool

    def add(
        self,
        events: Sequence[Event],
        destinations: Sequence[str] | Mapping[str, Collection[str]],
        *,
        max_age: float,
        keep_journeys: bool = False,
        timeout: float | None = None,
        order_delay: float = ORDER_DELAY,
        lease: Lease | None = None,
    ) -> list[tuple[str, Claim]]:
        """Store each event once per destination, in one transaction, committed on return.

        :param order_delay: seconds a lead or status waits, at least, for its
            journey's click to be written (by any process) before it is due.
        :param lease: the clicks for ``lease.destinations`` are written claimed,
            as ``claim`` would leave them, and returned with their destination
            for the caller to deliver (saving a claim); a click already stored
            is not (it is another sender's). Any other row is written as usual.
        """

    def forget_expired(self, dead_after: Mapping[str, float] | None = None) -> None:
        """Drop journeys and delivered eventIds older than a journey's lifetime.

        :param dead_after: destination -> seconds: its dead events that happened
            longer ago are deleted (an order's personal data is kept no longer).
        """

    def claim(
        self,
        destination: str,
        lease: str,
        *,
        limit: int,
        until: float,
        journeys: bool = False,
        fresh_first: bool = False,
    ) -> list[Claim]:
        """Up to ``limit`` due rows of ``destination``, in order, leased until ``until``."""

    def journeys(self, click_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """What is remembered of these journeys, by clickId."""

    def extend(self, ids: Sequence[int], lease: str, until: float) -> None:
        """Keep the lease on rows still to be sent."""

    def finish(
        self,
        lease: str,
        *,
        sent: Sequence[int] = (),
        retry: Sequence[tuple[int, float, str | None]] = (),
        release: Sequence[int] = (),
        dead: Sequence[tuple[int, str]] = (),
    ) -> None:
        """Record a batch's outcomes (a stale lease changes nothing but a delivery)."""

    def next_due(self, destinations: Sequence[str], *, after: float | None = None) -> float | None:
        """When the earliest pending row of these destinations is due (after ``after``)."""

    def listen(self, wake: Callable[[], None], closed: Callable[[], bool]) -> None:
        """Call ``wake`` whenever rows are added, until ``closed()``; only if ``notifies``."""

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows per destination and state (``pending``, ``dead``)."""

    def depth(self) -> int:
        """Events waiting to be sent, all destinations."""

    def oldest_pending(self) -> float | None:
        """When the oldest pending event was created."""

    def dead_errors(self, limit: int = 10) -> list[tuple[str, str, int]]:
        """The most common reasons events died: ``(destination, error, count)``."""

    def dead_count(self) -> int:
        """Dead events, all destinations."""

    def retry_dead(self, *, max_age: float, batch: int = 1000) -> Iterator[int]:
        """Make dead events pending again, with ``max_age`` more to live; yields per batch."""

    def purge_dead(self, *, batch: int = 1000) -> Iterator[int]:
        """Delete dead events; yields the number deleted per batch."""

    def purge_destination(self, destination: str, *, batch: int = 1000) -> Iterator[int]:
        """Delete every event of ``destination`` and what is remembered as delivered to it."""

    def close(self) -> None:
        """Let go of this thread's connection, if the store has one."""


def journey_of(event: Event) -> dict[str, str]:
    """What to remember of an event's journey: a click's URL parameters, its journey values."""
    params = {}
    if event.kind == "click":
        params = {k: v for k, v in event.params.items() if isinstance(v, str)}
    return {**params, **event.journey}


def is_leased(event: Event, destination: str, lease: Lease | None) -> bool:
    """Whether ``event``'s row of ``destination`` is written claimed (see ``Store.add``).

    Only a click: it starts its journey, so it never waits for an older row.
    """
    return lease is not None and event.kind == "click" and destination in lease.destinations


def due_at(event: Event, now: float, order_delay: float = ORDER_DELAY) -> float:
    """When a new row of ``event`` becomes due: a click at once, the rest after ``order_delay``."""
    return now if event.kind == "click" else now + order_delay


def with_journeys(claims: list[Claim], known: Mapping[str, Mapping[str, str]]) -> list[Claim]:
    """``claims`` whose events' ``journey`` has what is ``known`` of it (the event's own wins)."""
    return [
        replace(c, event=replace(c.event, journey={**known[c.event.click_id], **c.event.journey}))
        if c.event.click_id in known
        else c
        for c in claims
    ]


class SqlReads:
    """What an operator reads of a SQL store (``bangi-landing outbox status``): the same
    queries on SQLite and PostgreSQL but for the table's name and the placeholder."""

    _table: str  # a constant of the store's own, never input: safe in the SQL below
    _placeholder: str  # "?" (sqlite3) or "%s" (psycopg)

    def _all(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        raise NotImplementedError

    def _one(self, sql: str, params: Sequence[object] = ()) -> Any:
        """The first column of the first row of a read."""
        rows = self._all(sql, params)
        return rows[0][0] if rows else None

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows per destination and state (``pending``, ``dead``)."""
        result: dict[str, dict[str, int]] = {}
        for destination, state, count in self._all(
            f"SELECT destination, state, COUNT(*) FROM {self._table}"  # noqa: S608
            " GROUP BY destination, state"
        ):
            result.setdefault(destination, {"pending": 0, "dead": 0})[state] = count
        return result

    def depth(self) -> int:
        """Events waiting to be sent, all destinations."""
        return int(self._one(f"SELECT COUNT(*) FROM {self._table} WHERE state = 'pending'"))  # noqa: S608

    def oldest_pending(self) -> float | None:
        """When the oldest pending event was created."""
        return self._one(  # type: ignore[no-any-return]
            f"SELECT MIN(created_at) FROM {self._table} WHERE state = 'pending'"  # noqa: S608
        )

    def dead_errors(self, limit: int = 10) -> list[tuple[str, str, int]]:
        """The most common reasons events died: ``(destination, error, count)``."""
        return self._all(
            f"SELECT destination, COALESCE(last_error, ''), COUNT(*) AS n FROM {self._table}"  # noqa: S608
            f" WHERE state = 'dead' GROUP BY 1, 2 ORDER BY n DESC LIMIT {self._placeholder}",
            (limit,),
        )

    def dead_count(self) -> int:
        """Dead events, all destinations."""
        return int(self._one(f"SELECT COUNT(*) FROM {self._table} WHERE state = 'dead'"))  # noqa: S608


@dataclass
class _Row:
    id: int
    destination: str
    event: Event
    expires_at: float
    due_at: float
    lease: str | None = None
    attempts: int = 0
    dead: bool = False
    last_error: str | None = None


@dataclass
class MemoryStore:
    """The store in this process's memory: every promise of :class:`Store` but durability.

    Its rows are lost when the process ends, and a forked child starts with a
    copy of its parent's that nobody else sees. It is the contract's
    reference, and the store for tests and for a single process that may lose
    what waits at exit. (``outbox=None`` is not this store: it keeps no rows at
    all and tries each event once, so a tracker that is down cannot make a
    landing's memory grow.)

    :param journey_lifetime: seconds a journey's data and its delivered
        once-per-journey eventIds are kept.
    :param clock: wall-clock seconds (tests pass a fake).
    """

    journey_lifetime: float = 30 * 24 * 3600
    clock: Callable[[], float] = time.time
    name: str = "memory"
    faults: tuple[type[Exception], ...] = ()
    notifies: bool = False
    _rows: dict[int, _Row] = field(default_factory=dict)
    _keys: dict[tuple[str, str], int] = field(default_factory=dict)  # (destination, eventId)
    _delivered: dict[tuple[str, str], float] = field(default_factory=dict)  # -> expires_at
    _journeys: dict[str, tuple[dict[str, str], float]] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self,
        events: Sequence[Event],
        destinations: Sequence[str] | Mapping[str, Collection[str]],
        *,
        max_age: float,
        keep_journeys: bool = False,
        timeout: float | None = None,
        order_delay: float = ORDER_DELAY,
        lease: Lease | None = None,
    ) -> list[tuple[str, Claim]]:
        now = self.clock()
        routes = destinations if isinstance(destinations, Mapping) else None
        claimed: list[tuple[str, Claim]] = []
        with self._lock:
            for event in events:
                for key in destinations:
                    if routes is not None and event.kind not in routes[key]:
                        continue
                    unique = (key, event.event_id)
                    if unique in self._keys or unique in self._delivered:
                        continue
                    row_id = next(self._ids)
                    expires_at = event.created_at + max_age
                    row = _Row(row_id, key, event, expires_at, due_at(event, now, order_delay))
                    if is_leased(event, key, lease):
                        row.due_at, row.lease = lease.until, lease.token  # type: ignore[union-attr]
                        claimed.append((key, Claim(row_id, event, 0, expires_at)))
                    self._rows[row_id] = row
                    self._keys[unique] = row_id
                if keep_journeys and (event.kind == "click" or event.journey):
                    params, _ = self._journeys.get(event.click_id, ({}, 0.0))
                    self._journeys[event.click_id] = (
                        {**params, **journey_of(event)},
                        event.created_at + self.journey_lifetime,
                    )
        return claimed

    def forget_expired(self, dead_after: Mapping[str, float] | None = None) -> None:
        now = self.clock()
        with self._lock:
            self._delivered = {k: t for k, t in self._delivered.items() if t >= now}
            self._journeys = {k: v for k, v in self._journeys.items() if v[1] >= now}
            limits = dead_after or {}
            old = [
                row
                for row in self._rows.values()
                if row.dead
                and row.destination in limits
                and row.event.created_at < now - limits[row.destination]
            ]
            self._delete(old, now)

    def claim(
        self,
        destination: str,
        lease: str,
        *,
        limit: int,
        until: float,
        journeys: bool = False,
        fresh_first: bool = False,
    ) -> list[Claim]:
        now = self.clock()
        with self._lock:
            pending = [
                r for r in self._rows.values() if r.destination == destination and not r.dead
            ]
            # The first pending row of each journey, and its click: only they may go.
            firsts: dict[str, int] = {}
            clicks: set[str] = set()
            for row in sorted(pending, key=lambda r: r.id):
                firsts.setdefault(row.event.click_id, row.id)
                if row.event.kind == "click":
                    clicks.add(row.event.click_id)
            due = [
                r
                for r in pending
                if r.due_at <= now
                and (
                    r.event.kind == "click"
                    or (firsts[r.event.click_id] == r.id and r.event.click_id not in clicks)
                )
            ]
            if fresh_first:
                random.shuffle(due)
                due.sort(key=lambda r: r.attempts)
            else:
                due.sort(key=lambda r: (r.due_at, r.id))
            chosen = sorted(due[:limit], key=lambda r: r.id)
            for row in chosen:
                row.due_at, row.lease = until, lease
            claims = [Claim(r.id, r.event, r.attempts, r.expires_at) for r in chosen]
        if journeys and claims:
            claims = with_journeys(claims, self.journeys([c.event.click_id for c in claims]))
        return claims

    def journeys(self, click_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        with self._lock:
            return {c: dict(self._journeys[c][0]) for c in set(click_ids) if c in self._journeys}

    def extend(self, ids: Sequence[int], lease: str, until: float) -> None:
        with self._lock:
            for row in self._leased(ids, lease):
                row.due_at = until

    def finish(
        self,
        lease: str,
        *,
        sent: Sequence[int] = (),
        retry: Sequence[tuple[int, float, str | None]] = (),
        release: Sequence[int] = (),
        dead: Sequence[tuple[int, str]] = (),
    ) -> None:
        now = self.clock()
        with self._lock:
            for row_id in sent:
                if (row := self._rows.pop(row_id, None)) is None:
                    continue
                unique = (row.destination, row.event.event_id)
                del self._keys[unique]
                if row.event.kind != "click":
                    self._delivered[unique] = now + self.journey_lifetime
            for row_id, due, error in retry:
                for row in self._leased([row_id], lease):
                    row.due_at, row.last_error, row.attempts = due, error, row.attempts + 1
            for row in self._leased(release, lease):
                row.due_at = now
            for row_id, error in dead:
                for row in self._leased([row_id], lease):
                    row.dead, row.last_error, row.attempts = True, error, row.attempts + 1

    def _leased(self, ids: Collection[int], lease: str) -> list[_Row]:
        """The rows of ``ids`` that are still ``lease``'s (the caller holds the lock)."""
        rows = (self._rows.get(row_id) for row_id in ids)
        return [row for row in rows if row is not None and row.lease == lease]

    def next_due(self, destinations: Sequence[str], *, after: float | None = None) -> float | None:
        floor = float("-inf") if after is None else after
        with self._lock:
            due = [
                r.due_at
                for r in self._rows.values()
                if not r.dead and r.destination in destinations and r.due_at > floor
            ]
        return min(due, default=None)

    def listen(self, wake: Callable[[], None], closed: Callable[[], bool]) -> None:
        """Nothing to listen to: only this process adds rows, and it wakes its sender itself."""

    def counts(self) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = {}
        with self._lock:
            for row in self._rows.values():
                states = result.setdefault(row.destination, {"pending": 0, "dead": 0})
                states["dead" if row.dead else "pending"] += 1
        return result

    def depth(self) -> int:
        with self._lock:
            return sum(not row.dead for row in self._rows.values())

    def oldest_pending(self) -> float | None:
        with self._lock:
            return min(
                (r.event.created_at for r in self._rows.values() if not r.dead), default=None
            )

    def dead_errors(self, limit: int = 10) -> list[tuple[str, str, int]]:
        reasons: dict[tuple[str, str], int] = {}
        with self._lock:
            for row in self._rows.values():
                if row.dead:
                    reason = (row.destination, row.last_error or "")
                    reasons[reason] = reasons.get(reason, 0) + 1
        ranked = sorted(reasons.items(), key=lambda item: -item[1])[:limit]
        return [(destination, error, n) for (destination, error), n in ranked]

    def dead_count(self) -> int:
        with self._lock:
            return sum(row.dead for row in self._rows.values())

    def retry_dead(self, *, max_age: float, batch: int = 1000) -> Iterator[int]:
        def revive(rows: list[_Row], now: float) -> None:
            for row in rows:
                row.dead, row.attempts, row.due_at, row.expires_at = False, 0, now, now + max_age

        yield from self._each_batch(lambda row: row.dead, revive, batch)

    def purge_dead(self, *, batch: int = 1000) -> Iterator[int]:
        yield from self._each_batch(lambda row: row.dead, self._delete, batch)

    def purge_destination(self, destination: str, *, batch: int = 1000) -> Iterator[int]:
        yield from self._each_batch(lambda row: row.destination == destination, self._delete, batch)
        with self._lock:
            self._delivered = {k: t for k, t in self._delivered.items() if k[0] != destination}

    def _delete(self, rows: list[_Row], now: float) -> None:
        for row in rows:
            del self._rows[row.id]
            del self._keys[(row.destination, row.event.event_id)]

    def _each_batch(
        self,
        chosen: Callable[[_Row], bool],
        change: Callable[[list[_Row], float], None],
        batch: int,
    ) -> Iterator[int]:
        """``change`` the rows ``chosen``, ``batch`` at a time, as the stores on disk do."""
        while True:
            with self._lock:
                rows = list(itertools.islice(filter(chosen, self._rows.values()), batch))
                change(rows, self.clock())
            if not rows:
                return
            yield len(rows)

    def close(self) -> None:
        """Nothing to close: the rows stay while the store does."""
