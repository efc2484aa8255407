"""The SQLite store, the default outbox: events on disk (WAL) until a destination has taken them.

It keeps the contract of ``stores.Store`` (which says it in full) in one file
that every worker process of a host shares.

One row per event and destination, so a tracker that is down does not hold
back another one. Every worker process of a host may share one file:

* a sender **claims** a few due rows by pushing their ``due_at`` past a lease
  and stamping them with its lease token, in one ``BEGIN IMMEDIATE``
  transaction, so two processes never claim the same row at the same time;
* a row is **deleted only after a 2xx**; a failure puts it back with a later
  ``due_at``, or marks it ``dead`` (kept, never sent, visible);
* a sender that dies mid-send simply lets its lease run out: the rows become
  due again and another sender claims them. The event keeps its eventId, so a
  tracker that did get the first attempt stores it once;
* a journey's rows go **in order, its click first**: a lead or status becomes
  due ``stores.ORDER_DELAY`` after it is written and then waits while its click,
  or an older row of its journey, is pending. The delay covers a click still in
  another worker process's memory (a click reaches the tracker or the outbox
  within 100 ms of its page, a lead the outbox before its submit's response,
  and a visitor submits after the page): the tracker must never get a lead
  before its click, or it files the lead without its campaign (seed 004).

Rows are written with ``synchronous=FULL`` (an accepted event survives a
power cut); claims and completions with ``NORMAL``, since losing one of those
only means sending an event again, which the eventId makes harmless.

Two more tables serve journeys that outlive their rows:

* ``delivered`` remembers, for a journey's lifetime, the eventIds of the
  once-per-journey events (leads and statuses, whose eventIds derive from the
  journey): a form submitted again after its lead went out adds nothing, and
  a destination with no eventId of its own (AlterCPA Pro) is called once;
* ``journeys`` keeps what destinations need of a journey's click (its URL
  parameters, AlterCPA Pro's click id among them), so a status reported days
  later reaches Pro under the right click.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from ._sqlite import create_schema, switch_to_wal
from .events import Event
from .stores import (
    ORDER_DELAY,
    Claim,
    Lease,
    SqlReads,
    due_at,
    is_leased,
    journey_of,
    with_journeys,
)

__all__ = ["DEFAULT_OUTBOX", "Claim", "Outbox", "OutboxBusy", "Spooled", "state_dir"]

logger = logging.getLogger("bangi_landing")

_T = TypeVar("_T")


class _DefaultOutbox:
    def __repr__(self) -> str:
        return "DEFAULT_OUTBOX"


# The ``outbox`` option's default: ``config.outbox_path()``, looked up when it is used.
DEFAULT_OUTBOX: Any = _DefaultOutbox()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    destination TEXT NOT NULL,         -- Destination.key: its kind and address, no secrets
    event_id TEXT NOT NULL,
    click_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    event TEXT NOT NULL,               -- the Event as JSON, the same for every attempt
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,          -- past it, a failed event is dead instead of retried
    due_at REAL NOT NULL,              -- not tried before; a claim pushes it to the lease's end
    lease TEXT,                        -- the token of the sender that claimed it last
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'dead')),
    last_error TEXT,
    UNIQUE (destination, event_id)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (destination, state, due_at);
CREATE INDEX IF NOT EXISTS outbox_journey ON outbox (destination, click_id, id);
CREATE TABLE IF NOT EXISTS delivered (
    destination TEXT NOT NULL,
    event_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (destination, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journeys (
    click_id TEXT PRIMARY KEY,
    params TEXT NOT NULL,              -- JSON object: the click's URL parameters, Pro's click id
    expires_at REAL NOT NULL
) WITHOUT ROWID;
"""

# Rows go in as one multi-row statement per chunk, and come out as one JSON
# array, rather than one statement step per row: Python's sqlite3 lets go of
# the GIL for every step, and each time a background thread takes it back the
# pages' thread waits. A chunk of 100 rows binds 900 values, under SQLite's
# oldest limit (999).
_CHUNK = 100


@lru_cache(maxsize=_CHUNK)
def _insert(count: int) -> str:
    """The statement adding ``count`` rows.

    An event already delivered to this destination is not added again (only
    the once-per-journey kinds are remembered as delivered, see finish()).
    """
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * count)
    return (
        "INSERT OR IGNORE INTO outbox"  # noqa: S608 (placeholders only)
        " (destination, event_id, click_id, kind, event, created_at, expires_at, due_at, lease)"
        f" SELECT * FROM (VALUES {values}) AS new WHERE NOT EXISTS (SELECT 1 FROM delivered"
        " WHERE destination = new.column1 AND event_id = new.column2)"
    )


@lru_cache(maxsize=_CHUNK)
def _remember_journeys(count: int) -> str:
    """The statement keeping ``count`` journeys' data (merged into what is kept already)."""
    values = ", ".join(["(?, ?, ?)"] * count)
    return (
        "INSERT INTO journeys (click_id, params, expires_at)"  # noqa: S608 (placeholders only)
        f" SELECT * FROM (VALUES {values}) WHERE true ON CONFLICT (click_id)"
        " DO UPDATE SET params = json_patch(params, excluded.params)"
    )


def _insert_all(
    db: sqlite3.Connection, statement: Callable[[int], str], rows: Sequence[tuple[Any, ...]]
) -> None:
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        db.execute(statement(len(chunk)), [value for row in chunk for value in row])


def state_dir() -> Path:
    """``$XDG_STATE_HOME/bangi-landing``, ``XDG_STATE_HOME`` defaulting to ``~/.local/state``.

    Where default outboxes live, one per landing (see ``config.outbox_path``).
    """
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "bangi-landing"


class OutboxBusy(sqlite3.OperationalError):
    """The outbox could not be had before the caller's deadline (another thread or process)."""


class Spooled(NamedTuple):
    """A row handed over by :meth:`Outbox.drain`."""

    id: int
    destination: str
    event: Event
    expires_at: float


class Outbox(SqlReads):
    """Events waiting for delivery, in a SQLite file.

    Safe to use from many threads and processes: each thread of each process
    opens its own connection (a forked child never touches its parent's).

    A sick file is survived, not fatal. A file deleted (or moved) while in use
    is noticed before the next transaction and created again; a corrupt one
    (not a database, or malformed), at start-up or later, is moved aside as
    ``<name>.corrupt-<UTC timestamp>`` with its ``-wal`` and ``-shm``, logged at
    ERROR once, and a fresh file takes its place. One process at a time does
    either, under an ``flock`` on the file's directory. Other failures (locked,
    read-only, disk full) are raised for the caller to retry.

    :param path: the SQLite file; its directory is created if needed.
    :param journey_lifetime: seconds a journey's data and its delivered
        once-per-journey eventIds are kept: the journey cookie's lifetime.
    :param clock: wall-clock seconds, shared by all processes (tests pass a fake).
    """

    _table = "outbox"
    _placeholder = "?"

    BUSY_TIMEOUT = 30.0  # another process's transaction: wait rather than fail
    faults: tuple[type[Exception], ...] = (sqlite3.Error, OSError)  # locked, full, read-only
    notifies = False  # the senders of other processes look every few seconds

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        journey_lifetime: float = 30 * 24 * 3600,
        clock: Callable[[], float] = time.time,
    ):
        self.path = Path(path)
        self.name = str(self.path)
        self.journey_lifetime = journey_lifetime
        self.clock = clock
        self._local = threading.local()
        self._ready = False  # from now on, a missing file was deleted while in use

        def create() -> None:
            with _held(None):
                create_schema(self._connection(None), _SCHEMA)

        self._recovering(create, None)
        self._ready = True

    # Writing events

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
        """Store each event once per destination (again: ignored), durably, in one transaction.

        :param destinations: keys, or keys mapped to the event kinds they take.
        :param keep_journeys: remember the journeys of these events (a click's
            URL parameters, an event's ``journey``) for delivery-time lookups.
        :param timeout: seconds to wait, at most, for other threads and
            processes (a request waiting for its answer); past them
            :class:`OutboxBusy` (or the lock's ``sqlite3.OperationalError``) is
            raised, and a corrupt file is left for a call without a timeout to
            move aside. ``None``: ``BUSY_TIMEOUT`` for the lock.
        :param order_delay: seconds a lead or status waits, at least, for its
            journey's click to be written (by any process) before it is due.
        :param lease: write the clicks for ``lease.destinations`` claimed, and
            return them (see ``stores.Store.add``).
        """
        now = self.clock()
        routes = destinations if isinstance(destinations, Mapping) else None
        rows = [
            (key, e.event_id, e.click_id, e.kind, text, e.created_at, e.created_at + max_age)
            + ((lease.until, lease.token) if is_leased(e, key, lease) else (due, None))  # type: ignore[union-attr]
            for e in events
            for due in (due_at(e, now, order_delay),)
            for text in (json.dumps(e.to_dict()),)
            for key in destinations
            if routes is None or e.kind in routes[key]
        ]
        journeys = [
            (e.click_id, json.dumps(journey_of(e)), e.created_at + self.journey_lifetime)
            for e in events
            if keep_journeys and (e.kind == "click" or e.journey)
        ]

        def write(db: sqlite3.Connection) -> list[tuple[str, Claim]]:
            _insert_all(db, _insert, rows)
            _insert_all(db, _remember_journeys, journeys)
            return self._written_claimed(db, lease, events) if lease is not None else []

        deadline = None if timeout is None else time.monotonic() + timeout
        return self._run(write, durable=True, deadline=deadline)

    def _written_claimed(
        self, db: sqlite3.Connection, lease: Lease, events: Sequence[Event]
    ) -> list[tuple[str, Claim]]:
        """The rows ``add`` just wrote claimed: ours are those with our token and this end.

        A click that was stored already kept its row, another sender's: not ours.
        """
        by_id = {event.event_id: event for event in events}
        claimed: list[tuple[str, Claim]] = []
        for destination in sorted(lease.destinations):
            [rows] = db.execute(
                "SELECT json_group_array(json_array(id, event_id, expires_at)) FROM outbox"
                " WHERE destination = ? AND state = 'pending' AND due_at = ? AND lease = ?"
                " AND attempts = 0",
                (destination, lease.until, lease.token),
            ).fetchone()
            claimed += [
                (destination, Claim(row_id, by_id[event_id], 0, expires_at))
                for row_id, event_id, expires_at in json.loads(rows)
                if event_id in by_id
            ]
        return claimed

    def forget_expired(self, dead_after: Mapping[str, float] | None = None) -> None:
        """Drop journeys and delivered eventIds older than a journey's lifetime.

        :param dead_after: destination -> seconds: its dead events that happened
            longer ago are deleted (an order's personal data is kept no longer).
        """
        now = self.clock()

        def forget(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM delivered WHERE expires_at < ?", (now,))
            db.execute("DELETE FROM journeys WHERE expires_at < ?", (now,))
            db.executemany(
                "DELETE FROM outbox WHERE destination = ? AND state = 'dead' AND created_at < ?",
                [
                    (destination, now - seconds)
                    for destination, seconds in (dead_after or {}).items()
                ],
            )

        self._run(forget)

    # Delivering them

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
        """Up to ``limit`` due rows of ``destination``, oldest first, leased until ``until``.

        With ``journeys``, each event's ``journey`` also has what is remembered
        of its journey (the event's own values win). With ``fresh_first``, the
        rows tried the fewest times come first, in random order: a failing
        destination's probe is then a new event, not the one it refused last.

        A row waits while its journey's click, or an older row of its journey,
        is pending (being retried, or claimed by another sender): the tracker
        must get a click before its lead, or the lead loses its campaign
        context (seed 004). A click starts its journey, so it never waits.
        """
        now = self.clock()

        def take(db: sqlite3.Connection) -> str:
            # Two steps in all (see _CHUNK): the due rows as one JSON array, then the lease.
            [rows] = db.execute(
                "SELECT json_group_array(json_array(id, json(event), attempts, expires_at))"  # noqa: S608 (fixed orders)
                " FROM (SELECT id, event, attempts, expires_at FROM outbox AS o"
                " WHERE destination = ? AND state = 'pending' AND due_at <= ?"
                " AND (kind = 'click' OR NOT EXISTS (SELECT 1 FROM outbox AS older"
                "  WHERE older.destination = o.destination AND older.click_id = o.click_id"
                "  AND older.state = 'pending' AND (older.id < o.id OR older.kind = 'click')))"
                f" ORDER BY {'attempts, random()' if fresh_first else 'due_at, id'} LIMIT ?)",
                (destination, now, limit),
            ).fetchone()
            db.execute(
                "UPDATE outbox SET due_at = ?, lease = ?"
                " WHERE id IN (SELECT json_extract(value, '$[0]') FROM json_each(?))",
                (until, lease, rows),
            )
            return str(rows)

        claims = [
            Claim(row_id, Event.from_dict(event), attempts, expires_at)
            for row_id, event, attempts, expires_at in json.loads(self._run(take))
        ]
        claims.sort(key=lambda claim: claim.id)
        if journeys and claims:
            claims = with_journeys(claims, self.journeys([c.event.click_id for c in claims]))
        return claims

    def journeys(self, click_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """What is remembered of these journeys, by clickId."""
        rows = self._all(
            "SELECT click_id, params FROM journeys"
            " WHERE click_id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(set(click_ids))),),
        )
        return {click_id: json.loads(params) for click_id, params in rows}

    def extend(self, ids: Sequence[int], lease: str, until: float) -> None:
        """Keep the lease on rows still to be sent (a slow destination)."""
        self._run(
            lambda db: db.executemany(
                "UPDATE outbox SET due_at = ? WHERE id = ? AND lease = ?",
                [(until, row_id, lease) for row_id in ids],
            )
        )

    def finish(
        self,
        lease: str,
        *,
        sent: Sequence[int] = (),
        retry: Sequence[tuple[int, float, str | None]] = (),
        release: Sequence[int] = (),
        dead: Sequence[tuple[int, str]] = (),
    ) -> None:
        """Record a batch's outcomes in one transaction.

        :param sent: delivered: deleted (a once-per-journey event's eventId is remembered).
        :param retry: ``(id, due_at, error)``: failed, tried again from ``due_at``.
        :param release: not tried (the destination was failing): due again now.
        :param dead: ``(id, error)``: never to be sent; kept for the operator.

        A row whose lease was taken over by another sender (ours ran out) is
        left to that sender, except that a delivered row is deleted anyway.
        """
        now = self.clock()

        def record(db: sqlite3.Connection) -> None:
            if sent:
                ids = json.dumps(list(sent))
                db.execute(
                    "INSERT OR IGNORE INTO delivered (destination, event_id, expires_at)"
                    " SELECT destination, event_id, ? FROM outbox"
                    " WHERE id IN (SELECT value FROM json_each(?)) AND kind != 'click'",
                    (now + self.journey_lifetime, ids),
                )
                db.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?))", (ids,)
                )
            db.executemany(
                "UPDATE outbox SET due_at = ?, attempts = attempts + 1, last_error = ?"
                " WHERE id = ? AND lease = ?",
                [(due_at, error, i, lease) for i, due_at, error in retry],
            )
            if release:
                db.execute(
                    "UPDATE outbox SET due_at = ? WHERE lease = ?"
                    " AND id IN (SELECT value FROM json_each(?))",
                    (now, lease, json.dumps(list(release))),
                )
            db.executemany(
                "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?"
                " WHERE id = ? AND lease = ?",
                [(error, i, lease) for i, error in dead],
            )

        self._run(record)

    def next_due(self, destinations: Sequence[str], *, after: float | None = None) -> float | None:
        """When the earliest pending row of these destinations is due (after ``after``), or None."""
        return self._one(  # type: ignore[no-any-return]
            "SELECT MIN(due_at) FROM outbox WHERE state = 'pending'"
            " AND destination IN (SELECT value FROM json_each(?)) AND due_at > ?",
            (json.dumps(list(destinations)), float("-inf") if after is None else after),
        )

    def drain(self, move: Callable[[list[Spooled], list[tuple[str, str, float]]], None]) -> int:
        """Hand pending rows and every journey to ``move``, then delete them; how many rows.

        For this file as a spool (``postgres.PostgresStore``'s while its database
        is away). In one transaction that holds the file's write lock, so two
        processes never hand over the same rows; if ``move`` raises, nothing is
        deleted. The journeys go as ``(clickId, params as JSON, expires_at)``.
        """

        def hand_over(db: sqlite3.Connection) -> int:
            rows = [
                Spooled(row_id, key, Event.from_dict(json.loads(text)), expires_at)
                for row_id, key, text, expires_at in db.execute(
                    "SELECT id, destination, event, expires_at FROM outbox"
                    " WHERE state = 'pending' ORDER BY id LIMIT 500"
                )
            ]
            journeys = db.execute("SELECT click_id, params, expires_at FROM journeys").fetchall()
            if not rows and not journeys:
                return 0
            move(rows, journeys)
            db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps([row.id for row in rows]),),
            )
            db.execute("DELETE FROM journeys")
            return len(rows)

        return self._run(hand_over)

    def listen(self, wake: Callable[[], None], closed: Callable[[], bool]) -> None:
        """Nothing to listen to: SQLite tells no other process of a write (``notifies``)."""

    # For the operator

    def retry_dead(self, *, max_age: float, batch: int = 1000) -> Iterator[int]:
        """Make dead events pending again, with ``max_age`` more to live; yields per batch."""
        yield from self._each_batch(
            "UPDATE outbox SET state = 'pending', attempts = 0, due_at = :now,"
            " expires_at = :now + :max_age WHERE id IN (SELECT id FROM outbox"
            " WHERE state = 'dead' LIMIT :batch)",
            {"max_age": max_age, "batch": batch},
        )

    def purge_dead(self, *, batch: int = 1000) -> Iterator[int]:
        """Delete dead events; yields the number deleted per batch."""
        yield from self._each_batch(
            "DELETE FROM outbox WHERE id IN"
            " (SELECT id FROM outbox WHERE state = 'dead' LIMIT :batch)",
            {"batch": batch},
        )

    def purge_destination(self, destination: str, *, batch: int = 1000) -> Iterator[int]:
        """Delete every event (pending or dead) of ``destination``; yields the number per batch.

        What is remembered as delivered to it goes too: nothing of it is left.
        """
        yield from self._each_batch(
            "DELETE FROM outbox WHERE id IN"
            " (SELECT id FROM outbox WHERE destination = :destination LIMIT :batch)",
            {"destination": destination, "batch": batch},
        )
        self._run(
            lambda db: db.execute("DELETE FROM delivered WHERE destination = ?", (destination,))
        )

    def _each_batch(self, sql: str, params: dict[str, object]) -> Iterator[int]:
        # Short transactions, so running senders are never held up for long.
        while True:
            changed = self._run(
                lambda db: db.execute(sql, {**params, "now": self.clock()}).rowcount
            )
            if not changed:
                return
            yield changed

    # Connections

    def close(self) -> None:
        """Close this thread's connection (others close when their thread's storage goes)."""
        local = self._local
        if getattr(local, "pid", None) == os.getpid():
            with _held(None):
                self._close_connection()
        local.__dict__.clear()

    def _all(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        def read() -> list[Any]:
            with _held(None):
                return self._connection(None).execute(sql, params).fetchall()

        return self._recovering(read, None)

    def _run(
        self,
        work: Callable[[sqlite3.Connection], _T],
        *,
        durable: bool = False,
        deadline: float | None = None,
    ) -> _T:
        """``work(db)`` in one ``BEGIN IMMEDIATE`` ... ``COMMIT``: writers queue up front.

        ``durable``: ``synchronous=FULL``, and the file is checked after the
        commit (see ``_check_file``). ``deadline`` (``time.monotonic()``):
        when to give up waiting for other threads and processes.
        """

        def transaction() -> _T:
            with _held(deadline):
                db = self._connection(deadline)
                local = self._local
                if local.durable is not durable:
                    db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
                    local.durable = durable
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = work(db)
                    db.execute("COMMIT")
                except BaseException:
                    self._roll_back(db)
                    raise
                if durable:
                    self._check_file()
                return result

        return self._recovering(transaction, deadline)

    def _recovering(self, operation: Callable[[], _T], deadline: float | None) -> _T:
        """``operation()``, and once more if the file was replaced or found corrupt.

        A corrupt file is moved aside first, except by a caller with a
        ``deadline`` (a request waiting for its answer): that one gets the
        error, and a background thread, writing or delivering, does the move.
        """
        try:
            return operation()
        except _Replaced:
            return operation()  # connects to the file now at the path
        except sqlite3.DatabaseError as error:
            if deadline is not None or not _is_corrupt(error):
                raise
            self._move_aside(error)
            return operation()

    def _connection(self, deadline: float | None) -> sqlite3.Connection:
        """This thread's connection to the file now at ``path``, waiting until ``deadline``.

        The caller holds ``_GUARD``. A file deleted, moved aside or replaced
        since the connection was opened is noticed here (one ``stat``), and
        the connection opened again: writing on into a file that is gone
        would lose every event.
        """
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            # A connection must not cross a fork (SQLite's rule). The parent's
            # stays referenced, never closed here: closing it could disturb
            # the parent's locks on the file.
            for name in ("connection", "corrupt"):
                if (inherited := getattr(local, name, None)) is not None:
                    _INHERITED.append(inherited)
            local.__dict__.clear()
            local.connection = local.corrupt = None
            local.pid = os.getpid()
        elif local.connection is not None and local.identity != _identity(self.path):
            self._close_connection()  # SQLite leaves the -wal and -shm at the path alone
        if local.connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _directory_lock(self.path.parent, deadline):
                self._connect(deadline)
        busy = int(1000 * _seconds_left(deadline, self.BUSY_TIMEOUT))
        if local.busy != busy:
            local.connection.execute(f"PRAGMA busy_timeout = {busy}")
            local.busy = busy
        return local.connection  # type: ignore[no-any-return]

    def _connect(self, deadline: float | None, *, replacing: bool = False) -> None:
        """Connect this thread to the file at ``path``, creating it if it is missing.

        The caller holds the directory lock, so the file is complete (its
        schema made) before any other process connects to it.
        """
        local = self._local
        new = not self.path.exists()
        if new:
            if self._ready and not replacing:
                logger.error(
                    "bangi-landing: the outbox %s was deleted while in use; a new one was"
                    " created (the events that waited in it are gone)",
                    self.path,
                )
            # The journal of a deleted file would be taken for the new file's.
            for leftover in _companions(self.path)[1:]:
                leftover.unlink(missing_ok=True)
        timeout = _seconds_left(deadline, self.BUSY_TIMEOUT)
        connection = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        local.identity = _identity(self.path)  # the file a corruption found next is about
        try:
            switch_to_wal(connection, _seconds_left(deadline, self.BUSY_TIMEOUT))
            if new:
                create_schema(connection, _SCHEMA)
        except sqlite3.DatabaseError as error:
            if _is_corrupt(error):
                local.corrupt = connection  # closed once the file is moved aside (_move_aside)
            else:
                connection.close()
            raise
        except BaseException:
            connection.close()
            raise
        local.connection = connection
        local.durable = None
        local.busy = int(1000 * timeout)

    def _close_connection(self) -> None:
        """Close this thread's connections (the caller holds ``_GUARD``)."""
        local = self._local
        for connection in (getattr(local, "connection", None), getattr(local, "corrupt", None)):
            if connection is not None:
                with suppress(sqlite3.Error):
                    connection.close()
        local.connection = local.corrupt = None

    def _roll_back(self, db: sqlite3.Connection) -> None:
        # A failed COMMIT (a full disk) can leave the transaction open, and
        # every later BEGIN of this connection would fail.
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                self._close_connection()

    def _check_file(self) -> None:
        """After a durable commit: the rows are in the file at ``path``, a database still.

        SQLite works from its cache and the WAL and would not notice either
        the file deleted or moved aside meanwhile, or garbage written over
        it, and the events would be lost with it.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise _Replaced("the outbox was deleted or moved during a write") from None
        try:
            found = os.fstat(fd)
            header = os.read(fd, len(_HEADER))
        finally:
            os.close(fd)
        if (found.st_dev, found.st_ino) != self._local.identity:
            raise _Replaced("the outbox was replaced during a write")
        if header != _HEADER:
            raise _NotADatabase("file is not a database (its header is gone)")

    def _move_aside(self, error: sqlite3.DatabaseError) -> None:
        """Rename the corrupt file, with its ``-wal`` and ``-shm``, and start a fresh one.

        Only if the file at ``path`` is still the one this thread found
        corrupt: another thread or process may have moved it already.
        """
        found = getattr(self._local, "identity", None)
        with _held(None):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _directory_lock(self.path.parent, None):
                move = found is not None and _identity(self.path) == found
                if move:
                    aside = _aside_path(self.path)
                    for source, target in zip(
                        _companions(self.path), _companions(aside), strict=True
                    ):
                        with suppress(FileNotFoundError):
                            source.rename(target)
                    logger.error(
                        "bangi-landing: the outbox %s is corrupt (%s): moved it aside to %s and"
                        " started a new one; the events that waited in it are not sent",
                        self.path,
                        error,
                        aside,
                    )
                # Closed only now: the last connection to a file still at its
                # path would checkpoint into it and delete its -wal and -shm
                # (SQLite leaves a moved file's alone).
                self._close_connection()
                if move:
                    self._connect(None, replacing=True)


_HEADER = b"SQLite format 3\x00"  # the first bytes of every SQLite database file


class _Replaced(sqlite3.OperationalError):
    """The file at the path is not the one this connection wrote to: try again there."""


class _NotADatabase(sqlite3.DatabaseError):
    """A file whose SQLite header was overwritten, found after a write."""

    sqlite_errorcode = sqlite3.SQLITE_NOTADB


def _is_corrupt(error: sqlite3.DatabaseError) -> bool:
    """Whether ``error`` says the file is not a database, or a malformed one."""
    code = getattr(error, "sqlite_errorcode", None) or 0
    return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _identity(path: Path) -> tuple[int, int] | None:
    """Which file is at ``path`` (device, inode), None if none is."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


def _companions(path: Path) -> list[Path]:
    """The database file and the files SQLite keeps beside it in WAL mode."""
    return [path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")]


def _aside_path(path: Path) -> Path:
    """``<name>.corrupt-<UTC timestamp>``, with a counter if that exists already."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while any(companion.exists() for companion in _companions(aside)):
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    return aside


def _seconds_left(deadline: float | None, default: float) -> float:
    return default if deadline is None else max(0.0, deadline - time.monotonic())


_INHERITED: list[sqlite3.Connection] = []


class _ForkGuard:
    """Held around every SQLite call of this process, and taken before a fork.

    A thread inside SQLite may hold one of SQLite's own global mutexes; a
    child forked at that moment would inherit it locked and hang on its
    first query. Forking waits for the call to end instead.
    """

    def __init__(self) -> None:
        self.held = threading.Lock()
        # Methods that look ``held`` up when called: a child's fresh lock must
        # be the one its own forks wait for, down every generation.
        os.register_at_fork(
            before=self._take, after_in_parent=self._give_back, after_in_child=self._renew
        )

    def _take(self) -> None:
        self.held.acquire()

    def _give_back(self) -> None:
        self.held.release()

    def _renew(self) -> None:
        self.held = threading.Lock()


_GUARD = _ForkGuard()


@contextmanager
def _held(deadline: float | None) -> Iterator[None]:
    """``_GUARD``, waited for until ``deadline`` at most.

    Another thread of this process may hold it for as long as SQLite makes
    it wait for another process's lock.
    """
    lock = _GUARD.held  # looked up now: a fork replaces it in the child
    if not lock.acquire(timeout=-1 if deadline is None else _seconds_left(deadline, 0.0)):
        raise OutboxBusy("the outbox is busy: another thread of this process waits for it")
    try:
        yield
    finally:
        lock.release()


@contextmanager
def _directory_lock(directory: Path, deadline: float | None) -> Iterator[None]:
    """An exclusive ``flock`` on the outbox's directory, shared by every process.

    Held while a thread connects: one process at a time creates a missing
    file or moves a corrupt one aside, and nobody connects to a file half made.
    """
    flags = fcntl.LOCK_EX if deadline is None else fcntl.LOCK_EX | fcntl.LOCK_NB
    fd = os.open(directory, os.O_RDONLY)
    try:
        while True:
            try:
                fcntl.flock(fd, flags)
                break
            except BlockingIOError:
                if _seconds_left(deadline, 0.0) <= 0:
                    raise OutboxBusy("the outbox is busy: another process opens it") from None
                time.sleep(0.005)
        yield
    finally:
        os.close(fd)  # and the lock with it
