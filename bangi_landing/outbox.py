"""The durable outbox: events on disk (SQLite, WAL) until a destination has taken them.

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
  due ``ORDER_DELAY`` after it is written and then waits while its click, or
  an older row of its journey, is pending. The delay covers a click still in
  another worker process's memory (a click reaches the outbox within 100 ms
  of its page, a lead before its submit's response, and a visitor submits
  after the page): the tracker must never get a lead before its click, or it
  files the lead without its campaign (seed 004).

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

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ._sqlite import create_schema, switch_to_wal
from .events import Event

__all__ = ["DEFAULT_OUTBOX", "Claim", "Outbox", "default_path"]


class _DefaultOutbox:
    def __repr__(self) -> str:
        return "DEFAULT_OUTBOX"


# The ``outbox`` option's default: ``default_path()``, looked up when it is used.
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

ORDER_DELAY = 0.25  # seconds a journey's later events wait for its click to be written

# An event already delivered to this destination is not added again (only the
# once-per-journey kinds are remembered as delivered, see finish()).
_INSERT = (
    "INSERT OR IGNORE INTO outbox"
    " (destination, event_id, click_id, kind, event, created_at, expires_at, due_at)"
    " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8"
    " WHERE NOT EXISTS (SELECT 1 FROM delivered WHERE destination = ?1 AND event_id = ?2)"
)


def default_path() -> Path:
    """``$BANGI_OUTBOX``, else ``$XDG_STATE_HOME/bangi-landing/outbox.sqlite3``.

    ``XDG_STATE_HOME`` defaults to ``~/.local/state``: one file per user and
    host, shared by every worker process of a landing.
    """
    if env := os.environ.get("BANGI_OUTBOX"):
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "bangi-landing" / "outbox.sqlite3"


@dataclass(frozen=True)
class Claim:
    """A row this sender may deliver until its lease runs out."""

    id: int
    event: Event
    attempts: int  # before this one
    expires_at: float


class Outbox:
    """Events waiting for delivery, in a SQLite file.

    Safe to use from many threads and processes: each thread of each process
    opens its own connection (a forked child never touches its parent's).

    :param path: the SQLite file; its directory is created if needed.
    :param journey_lifetime: seconds a journey's data and its delivered
        once-per-journey eventIds are kept: the journey cookie's lifetime.
    :param clock: wall-clock seconds, shared by all processes (tests pass a fake).
    """

    BUSY_TIMEOUT = 30.0  # another process's transaction: wait rather than fail

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        journey_lifetime: float = 30 * 24 * 3600,
        clock: Callable[[], float] = time.time,
    ):
        self.path = Path(path)
        self.journey_lifetime = journey_lifetime
        self.clock = clock
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _GUARD.held:
            create_schema(self._connection(), _SCHEMA)

    # Writing events

    def add(
        self,
        events: Sequence[Event],
        destinations: Sequence[str] | Mapping[str, Collection[str]],
        *,
        max_age: float,
        keep_journeys: bool = False,
    ) -> None:
        """Store each event once per destination (again: ignored), durably, in one transaction.

        :param destinations: keys, or keys mapped to the event kinds they take.
        :param keep_journeys: remember the journeys of these events (a click's
            URL parameters, an event's ``journey``) for delivery-time lookups.
        """
        now = self.clock()
        routes = destinations if isinstance(destinations, Mapping) else None
        rows = [
            (key, e.event_id, e.click_id, e.kind, text, e.created_at, e.created_at + max_age, due)
            for e in events
            for due in (now if e.kind == "click" else now + ORDER_DELAY,)
            for text in (json.dumps(e.to_dict()),)
            for key in destinations
            if routes is None or e.kind in routes[key]
        ]
        journeys = [
            (e.click_id, json.dumps(_journey_of(e)), e.created_at + self.journey_lifetime)
            for e in events
            if keep_journeys and (e.kind == "click" or e.journey)
        ]
        with self._transaction(durable=True) as db:
            db.executemany(_INSERT, rows)
            db.executemany(
                "INSERT INTO journeys (click_id, params, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (click_id)"
                " DO UPDATE SET params = json_patch(params, excluded.params)",
                journeys,
            )

    def forget_expired(self) -> None:
        """Drop journeys and delivered eventIds older than a journey's lifetime."""
        now = self.clock()
        with self._transaction() as db:
            db.execute("DELETE FROM delivered WHERE expires_at < ?", (now,))
            db.execute("DELETE FROM journeys WHERE expires_at < ?", (now,))

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
        with self._transaction() as db:
            rows = db.execute(
                "UPDATE outbox SET due_at = ?, lease = ? WHERE id IN ("  # noqa: S608 (fixed orders)
                " SELECT id FROM outbox AS o WHERE destination = ? AND state = 'pending'"
                " AND due_at <= ? AND (kind = 'click' OR NOT EXISTS (SELECT 1 FROM outbox AS older"
                "  WHERE older.destination = o.destination AND older.click_id = o.click_id"
                "  AND older.state = 'pending' AND (older.id < o.id OR older.kind = 'click')))"
                f" ORDER BY {'attempts, random()' if fresh_first else 'due_at, id'} LIMIT ?)"
                " RETURNING id, event, attempts, expires_at",
                (until, lease, destination, now, limit),
            ).fetchall()
        claims = [
            Claim(row_id, Event.from_dict(json.loads(text)), attempts, expires_at)
            for row_id, text, attempts, expires_at in rows
        ]
        claims.sort(key=lambda claim: claim.id)
        if journeys and claims:
            known = self.journeys([claim.event.click_id for claim in claims])
            claims = [
                replace(
                    c,
                    event=replace(c.event, journey={**known[c.event.click_id], **c.event.journey}),
                )
                if c.event.click_id in known
                else c
                for c in claims
            ]
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
        with self._transaction() as db:
            db.executemany(
                "UPDATE outbox SET due_at = ? WHERE id = ? AND lease = ?",
                [(until, row_id, lease) for row_id in ids],
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
        with self._transaction() as db:
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

    def next_due(self, destinations: Sequence[str], *, after: float | None = None) -> float | None:
        """When the earliest pending row of these destinations is due (after ``after``), or None."""
        return self._one(  # type: ignore[no-any-return]
            "SELECT MIN(due_at) FROM outbox WHERE state = 'pending'"
            " AND destination IN (SELECT value FROM json_each(?)) AND due_at > ?",
            (json.dumps(list(destinations)), float("-inf") if after is None else after),
        )

    # For the operator

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows per destination and state (``pending``, ``dead``)."""
        result: dict[str, dict[str, int]] = {}
        for destination, state, count in self._all(
            "SELECT destination, state, COUNT(*) FROM outbox GROUP BY destination, state"
        ):
            result.setdefault(destination, {"pending": 0, "dead": 0})[state] = count
        return result

    def depth(self) -> int:
        """Events waiting to be sent, all destinations."""
        return int(self._one("SELECT COUNT(*) FROM outbox WHERE state = 'pending'"))

    def oldest_pending(self) -> float | None:
        return self._one(  # type: ignore[no-any-return]
            "SELECT MIN(created_at) FROM outbox WHERE state = 'pending'"
        )

    def dead_errors(self, limit: int = 10) -> list[tuple[str, str, int]]:
        """The most common reasons events died: ``(destination, error, count)``."""
        return self._all(
            "SELECT destination, COALESCE(last_error, ''), COUNT(*) AS n FROM outbox"
            " WHERE state = 'dead' GROUP BY 1, 2 ORDER BY n DESC LIMIT ?",
            (limit,),
        )

    def dead_count(self) -> int:
        return int(self._one("SELECT COUNT(*) FROM outbox WHERE state = 'dead'"))

    def retry_dead(self, *, max_age: float, batch: int = 1000) -> Iterator[int]:
        """Make dead events pending again, with ``max_age`` more to live; yields per batch."""
        yield from self._each_dead_batch(
            "UPDATE outbox SET state = 'pending', attempts = 0, due_at = :now,"
            " expires_at = :now + :max_age WHERE id IN (SELECT id FROM outbox"
            " WHERE state = 'dead' LIMIT :batch)",
            {"max_age": max_age, "batch": batch},
        )

    def purge_dead(self, *, batch: int = 1000) -> Iterator[int]:
        """Delete dead events; yields the number deleted per batch."""
        yield from self._each_dead_batch(
            "DELETE FROM outbox WHERE id IN"
            " (SELECT id FROM outbox WHERE state = 'dead' LIMIT :batch)",
            {"batch": batch},
        )

    def _each_dead_batch(self, sql: str, params: dict[str, float]) -> Iterator[int]:
        # Short transactions, so running senders are never held up for long.
        while True:
            with self._transaction() as db:
                changed = db.execute(sql, {**params, "now": self.clock()}).rowcount
            if not changed:
                return
            yield changed

    # Connections

    def close(self) -> None:
        """Close this thread's connection (others close when their thread's storage goes)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None and getattr(self._local, "pid", None) == os.getpid():
            with _GUARD.held:
                connection.close()
        self._local.__dict__.clear()

    def _one(self, sql: str, params: Sequence[object] = ()) -> Any:
        """The first column of the first row of a read."""
        rows = self._all(sql, params)
        return rows[0][0] if rows else None

    def _all(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        with _GUARD.held:
            return self._connection().execute(sql, params).fetchall()

    def _connection(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            # A connection must not cross a fork (SQLite's rule). The parent's
            # stays referenced, never closed here: closing it could disturb
            # the parent's locks on the file.
            if local.__dict__:
                _INHERITED.append(local.__dict__.copy())
                local.__dict__.clear()
            connection = sqlite3.connect(
                self.path, timeout=self.BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            switch_to_wal(connection, self.BUSY_TIMEOUT)
            local.connection = connection
            local.durable = None
            local.pid = os.getpid()  # last: a failed connect is tried again next time
        return local.connection  # type: ignore[no-any-return]

    def _transaction(self, *, durable: bool = False) -> _Transaction:
        return _Transaction(self, durable)


def _journey_of(event: Event) -> dict[str, str]:
    """What to remember of an event's journey: a click's URL parameters, its journey values."""
    params = {}
    if event.kind == "click":
        params = {k: v for k, v in event.params.items() if isinstance(v, str)}
    return {**params, **event.journey}


_INHERITED: list[dict[str, object]] = []


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


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): writers queue up front."""

    def __init__(self, outbox: Outbox, durable: bool) -> None:
        self.outbox = outbox
        self.durable = durable

    def __enter__(self) -> sqlite3.Connection:
        self.lock = _GUARD.held
        self.lock.acquire()
        try:
            db = self.outbox._connection()
            local = self.outbox._local
            if local.durable is not self.durable:
                db.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
                local.durable = self.durable
            db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        self.db = db
        return db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self.lock.release()
