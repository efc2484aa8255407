"""The PostgreSQL store: one outbox shared by every process of every host of a landing.

For landings whose disk does not outlive them (containers, autoscaled groups)
or that run on many hosts behind a load balancer: any host delivers the
events any other wrote. It keeps the contract of ``stores.Store`` with the
same tables and rules as the SQLite store (``outbox.py``), prefixed
``bangi_``, since the database is usually the application's own:

* the schema is made on a process's first use, under an advisory lock so
  that processes starting together on many hosts make it once, and versioned:
  ``bangi_schema_version`` lists the migrations applied, the numbered SQL
  files of ``bangi_landing/migrations/``, each run once, in order;
* a claim takes rows with ``FOR UPDATE SKIP LOCKED``: senders on many hosts
  never wait for each other, nor claim one row twice;
* adding rows sends a ``NOTIFY`` at commit, which wakes the senders of every
  host (``listen``) instead of their looking every few seconds;
* a write is committed when ``add`` returns (the submit's lead, before its
  response);
* while the database is unreachable, events go to a **spool** on the host
  (a SQLite ``outbox.Outbox``), and each process moves them to the database
  when it next reaches it, before anything else it adds or claims.

Times are the senders' wall clocks, as in the SQLite store: the hosts'
clocks must agree (NTP) to within a small part of a lease. Each thread has
its own connection, opened on first use, again after the server went away,
and again in a forked child (a connection must not cross a fork). The URL's
password is never logged nor shown (``name`` is the URL without it).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from importlib import resources
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from .config import redact
from .events import Event
from .outbox import Outbox, Spooled
from .stores import (
    ORDER_DELAY,
    RECOVERY_ORDER_DELAY,
    Claim,
    Lease,
    SqlReads,
    due_at,
    is_leased,
    journey_of,
    with_journeys,
)

__all__ = ["PostgresStore"]

logger = logging.getLogger("bangi_landing")

CHANNEL = "bangi_outbox"  # the NOTIFY channel of rows added
# pg_advisory_xact_lock key held while the schema is made or migrated: b"bangi" as a number.
_SCHEMA_LOCK = int.from_bytes(b"bangi", "big")

# The rows of a write, as one JSON array in one statement: per row, executemany
# cost the writer thread about as much CPU as the rest of an event's delivery.
# They are numbered in their order, a journey's click before its lead. An event
# already delivered to this destination is not added again (see finish()).
_INSERT = (
    "INSERT INTO bangi_outbox"
    " (destination, event_id, click_id, kind, event, created_at, expires_at, due_at, lease)"
    " SELECT row->>'destination', row->>'event_id', row->>'click_id', row->>'kind',"
    " row->'event', (row->>'created_at')::float8, (row->>'expires_at')::float8,"
    " (row->>'due_at')::float8, row->>'lease'"
    " FROM jsonb_array_elements(%s) WITH ORDINALITY AS new(row, n)"
    " WHERE NOT EXISTS (SELECT 1 FROM bangi_delivered"
    "  WHERE destination = new.row->>'destination' AND event_id = new.row->>'event_id')"
    " ORDER BY n ON CONFLICT (destination, event_id) DO NOTHING"
    " RETURNING id, destination, event_id, expires_at, lease IS NOT NULL"
)

# The database away, or a connection lost: the spool takes the events meanwhile.
_UNREACHABLE = (psycopg.OperationalError, psycopg.InterfaceError)

_MERGE_JOURNEY = (
    "INSERT INTO bangi_journeys (click_id, params, expires_at) VALUES (%s, %s, %s)"
    " ON CONFLICT (click_id) DO UPDATE SET params = bangi_journeys.params || excluded.params"
)

_CLAIM = (
    "UPDATE bangi_outbox SET due_at = %(until)s, lease = %(lease)s WHERE id IN ("
    " SELECT id FROM bangi_outbox AS o WHERE destination = %(destination)s"
    " AND state = 'pending' AND due_at <= %(now)s"
    " AND (kind = 'click' OR NOT EXISTS (SELECT 1 FROM bangi_outbox AS older"
    "  WHERE older.destination = o.destination AND older.click_id = o.click_id"
    "  AND older.state = 'pending' AND (older.id < o.id OR older.kind = 'click')))"
    " ORDER BY {order} LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
    " RETURNING id, event, attempts, expires_at"
)


def migrations() -> list[tuple[int, str]]:
    """The numbered SQL files of ``bangi_landing/migrations``: ``(number, SQL)``, in order."""
    found = [
        (int(entry.name.partition("_")[0]), entry.read_text())
        for entry in resources.files("bangi_landing").joinpath("migrations").iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found)


class PostgresStore(SqlReads):
    """Events waiting for delivery, in a PostgreSQL database.

    :param url: ``postgresql://user:password@host:port/database`` (libpq's
        URL, its query parameters included, e.g. ``?sslmode=require``).
    :param journey_lifetime: seconds a journey's data and its delivered
        once-per-journey eventIds are kept: the journey cookie's lifetime.
    :param clock: wall-clock seconds, the same on every host (tests pass a fake).
    :param spool: a SQLite file on this host (``outbox.Outbox``) where events
        are written while the database is unreachable, and moved from once it
        is back, before anything else this process adds or claims; shared by
        the host's processes. ``None``: a write fails while the database is
        away (the sender keeps the events in memory and tries again).
    """

    _table = "bangi_outbox"
    _placeholder = "%s"

    CONNECT_TIMEOUT = 5  # seconds (libpq's connect_timeout, whole seconds, 2 at least)
    # The database unreachable, restarting, a connection lost, a deadlock or a timeout,
    # and the spool's faults: tried again.
    faults: tuple[type[Exception], ...] = (*_UNREACHABLE, *Outbox.faults)
    notifies = True

    def __init__(
        self,
        url: str,
        *,
        journey_lifetime: float = 30 * 24 * 3600,
        clock: Callable[[], float] = time.time,
        spool: str | os.PathLike[str] | None = None,
    ) -> None:
        self.url = url
        self.name = redact(url)
        self.journey_lifetime = journey_lifetime
        self.clock = clock
        self._local = threading.local()
        self._schema_lock = threading.Lock()
        self._schema_ready = False  # in this process (a fork inherits it: the tables stay)
        self.spool = None if spool is None else Outbox(spool, journey_lifetime=journey_lifetime)
        # Whether the spool may hold rows: at first, those an earlier process left.
        self._spooled = self.spool is not None
        self._away = False  # the database was found unreachable (said once, and its return)
        self._state_lock = threading.Lock()

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
        """Store each event once per destination, in one transaction, committed on return.

        In the spool, if there is one, while the database is unreachable (then
        nothing is written claimed: see ``stores.Store.add`` for ``lease``).

        :param timeout: seconds a request waits, at most, to connect and write;
            past them ``psycopg.OperationalError`` is raised (or the spool
            written) and nothing is written to the database.
        """
        try:
            self._move_spool()
            claimed = self._add(
                events, destinations, max_age, keep_journeys, timeout, order_delay, lease
            )
        except _UNREACHABLE as error:
            if self.spool is None:
                raise
            self._gone(error)
            self.spool.add(
                events,
                destinations,
                max_age=max_age,
                keep_journeys=keep_journeys,
                timeout=timeout,
                order_delay=order_delay,
            )
            self._spooled = True
            return []
        self._back()
        return claimed

    def _add(
        self,
        events: Sequence[Event],
        destinations: Sequence[str] | Mapping[str, Collection[str]],
        max_age: float,
        keep_journeys: bool,
        timeout: float | None,
        order_delay: float,
        lease: Lease | None,
    ) -> list[tuple[str, Claim]]:
        now = self.clock()
        routes = destinations if isinstance(destinations, Mapping) else None
        rows = [
            _row(key, e, e.created_at + max_age, due_at(e, now, order_delay))
            if not is_leased(e, key, lease)
            else _row(key, e, e.created_at + max_age, lease.until, lease.token)  # type: ignore[union-attr]
            for e in events
            for key in destinations
            if routes is None or e.kind in routes[key]
        ]
        written: list[tuple[int, str, str, float, bool]] = []
        journeys: dict[str, dict[str, str]] = {}
        lifetimes: dict[str, float] = {}
        for e in events:
            if keep_journeys and (e.kind == "click" or e.journey):
                journeys[e.click_id] = {**journeys.get(e.click_id, {}), **journey_of(e)}
                lifetimes[e.click_id] = e.created_at + self.journey_lifetime
        if rows and not journeys and timeout is None and all(row["lease"] for row in rows):
            # A busy landing's usual write: clicks written claimed. One statement is
            # atomic on its own: no BEGIN and COMMIT, and nobody to notify.
            written = self._connection(None).execute(_INSERT, (Jsonb(rows),)).fetchall()
            return self._claims(written, events)
        with self._transaction(timeout) as db:
            cursor = db.cursor()
            if rows:
                written = cursor.execute(_INSERT, (Jsonb(rows),)).fetchall()
                # Sent at commit, to wake the senders of every host, unless all that was
                # written is claimed already (and woke nobody but its own writer's thread).
                if not all(claimed for *_, claimed in written):
                    cursor.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
            cursor.executemany(
                _MERGE_JOURNEY, [(c, Jsonb(journeys[c]), lifetimes[c]) for c in sorted(journeys)]
            )
        return self._claims(written, events)

    @staticmethod
    def _claims(
        written: list[tuple[int, str, str, float, bool]], events: Sequence[Event]
    ) -> list[tuple[str, Claim]]:
        """The rows ``_INSERT`` wrote claimed, as claims of their destinations."""
        by_id = {event.event_id: event for event in events}
        return [
            (destination, Claim(row_id, by_id[event_id], 0, expires_at))
            for row_id, destination, event_id, expires_at, claimed in written
            if claimed
        ]

    def _move_spool(self) -> None:
        """Move what waits in the spool to the database (raises its faults, if it is away).

        A moved lead or status is due ``RECOVERY_ORDER_DELAY`` from now at the
        earliest: its click may still be in another host's spool.
        """
        if not self._spooled or self.spool is None:
            return
        moved = 0
        try:
            while done := self.spool.drain(self._insert_spooled):
                moved += done
        except Outbox.faults:
            return  # the spool is locked or sick: moved on a later call
        self._spooled = False
        if moved:
            logger.info(
                "bangi-landing: moved %d events from the spool %s to the outbox %s",
                moved,
                self.spool.path,
                self.name,
            )

    def _insert_spooled(self, rows: list[Spooled], journeys: list[tuple[str, str, float]]) -> None:
        """Write what the spool hands over (``Outbox.drain``), in one transaction."""
        now = self.clock()
        with self._transaction() as db:
            cursor = db.cursor()
            if rows:
                late = RECOVERY_ORDER_DELAY
                spooled = [
                    _row(r.destination, r.event, r.expires_at, due_at(r.event, now, late))
                    for r in rows
                ]
                cursor.execute(_INSERT, (Jsonb(spooled),))
                cursor.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
            cursor.executemany(
                _MERGE_JOURNEY,
                [(c, Jsonb(json.loads(params)), t) for c, params, t in journeys],
            )

    def _gone(self, error: Exception) -> None:
        with self._state_lock:
            if self._away:
                return
            self._away = True
        logger.warning(
            "bangi-landing: the outbox %s is unreachable (%s: %s); events are kept in the"
            " spool %s until it is back",
            self.name,
            type(error).__name__,
            error,
            self.spool.path if self.spool is not None else "",
        )

    def _back(self) -> None:
        with self._state_lock:
            if not self._away:
                return
            self._away = False
        logger.info("bangi-landing: the outbox %s is reachable again", self.name)

    def forget_expired(self, dead_after: Mapping[str, float] | None = None) -> None:
        """Drop journeys and delivered eventIds older than a journey's lifetime.

        :param dead_after: destination -> seconds: its dead events that happened
            longer ago are deleted (an order's personal data is kept no longer).
        """
        now = self.clock()
        with self._transaction() as db:
            db.execute("DELETE FROM bangi_delivered WHERE expires_at < %s", (now,))
            db.execute("DELETE FROM bangi_journeys WHERE expires_at < %s", (now,))
            for destination, seconds in (dead_after or {}).items():
                db.execute(
                    "DELETE FROM bangi_outbox"
                    " WHERE destination = %s AND state = 'dead' AND created_at < %s",
                    (destination, now - seconds),
                )

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
        """Up to ``limit`` due rows of ``destination``, in order, leased until ``until``.

        Rows another sender is claiming at this moment are skipped, not waited for.
        """
        with suppress(*_UNREACHABLE):  # away: the claim says so
            self._move_spool()
        order = "attempts, random()" if fresh_first else "due_at, id"
        params = {
            "until": until,
            "lease": lease,
            "destination": destination,
            "now": self.clock(),
            "limit": limit,
        }
        rows = self._connection(None).execute(_CLAIM.format(order=order), params).fetchall()
        claims = sorted(
            (
                Claim(row_id, Event.from_dict(event), attempts, expires_at)
                for row_id, event, attempts, expires_at in rows
            ),
            key=lambda claim: claim.id,
        )
        if journeys and claims:
            claims = with_journeys(claims, self.journeys([c.event.click_id for c in claims]))
        return claims

    def journeys(self, click_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """What is remembered of these journeys, by clickId."""
        rows = self._all(
            "SELECT click_id, params FROM bangi_journeys WHERE click_id = ANY(%s)",
            (list(set(click_ids)),),
        )
        return dict(rows)

    def extend(self, ids: Sequence[int], lease: str, until: float) -> None:
        """Keep the lease on rows still to be sent (a slow destination)."""
        self._connection(None).execute(
            "UPDATE bangi_outbox SET due_at = %s WHERE id = ANY(%s) AND lease = %s",
            (until, list(ids), lease),
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
        """Record a batch's outcomes in one transaction (see ``outbox.Outbox.finish``).

        The usual batch, all delivered, is one statement: no BEGIN and COMMIT.
        """
        now = self.clock()
        statements: list[tuple[str, Sequence[Sequence[object]]]] = []
        if sent:
            statements.append(
                (
                    "WITH gone AS (DELETE FROM bangi_outbox WHERE id = ANY(%s)"
                    "  RETURNING destination, event_id, kind)"
                    " INSERT INTO bangi_delivered (destination, event_id, expires_at)"
                    " SELECT destination, event_id, %s FROM gone WHERE kind <> 'click'"
                    " ON CONFLICT DO NOTHING",
                    [(list(sent), now + self.journey_lifetime)],
                )
            )
        if retry:
            statements.append(
                (
                    "UPDATE bangi_outbox SET due_at = %s, attempts = attempts + 1,"
                    " last_error = %s WHERE id = %s AND lease = %s",
                    [(due, error, row_id, lease) for row_id, due, error in retry],
                )
            )
        if release:
            statements.append(
                (
                    "UPDATE bangi_outbox SET due_at = %s WHERE id = ANY(%s) AND lease = %s",
                    [(now, list(release), lease)],
                )
            )
        if dead:
            statements.append(
                (
                    "UPDATE bangi_outbox SET state = 'dead', attempts = attempts + 1,"
                    " last_error = %s WHERE id = %s AND lease = %s",
                    [(error, row_id, lease) for row_id, error in dead],
                )
            )
        if len(statements) == 1 and len(statements[0][1]) == 1:
            sql, [params] = statements[0]
            self._connection(None).execute(sql, params)
            return
        with self._transaction() as db:
            cursor = db.cursor()
            for sql, rows in statements:
                cursor.executemany(sql, rows)

    def next_due(self, destinations: Sequence[str], *, after: float | None = None) -> float | None:
        """When the earliest pending row of these destinations is due (after ``after``), or None."""
        return self._one(  # type: ignore[no-any-return]
            "SELECT MIN(due_at) FROM bangi_outbox WHERE state = 'pending'"
            " AND destination = ANY(%s) AND due_at > %s",
            (list(destinations), -math.inf if after is None else after),
        )

    def listen(self, wake: Callable[[], None], closed: Callable[[], bool]) -> None:
        """Call ``wake`` at every commit of new rows, by any host, until ``closed()``.

        On a connection of its own. Returns (raises) when the connection is
        lost: the caller listens again, and its senders meanwhile look at
        the outbox every few seconds.
        """
        with psycopg.connect(self.url, autocommit=True, connect_timeout=self.CONNECT_TIMEOUT) as db:
            db.execute(f"LISTEN {CHANNEL}")
            wake()  # rows may have been added while nobody listened
            while not closed():
                for _ in db.notifies(timeout=1.0):
                    wake()

    # For the operator

    def retry_dead(self, *, max_age: float, batch: int = 1000) -> Iterator[int]:
        """Make dead events pending again, with ``max_age`` more to live; yields per batch."""
        yield from self._each_batch(
            "UPDATE bangi_outbox SET state = 'pending', attempts = 0, due_at = %(now)s,"
            " expires_at = %(now)s + %(max_age)s WHERE id IN (SELECT id FROM bangi_outbox"
            " WHERE state = 'dead' LIMIT %(batch)s FOR UPDATE SKIP LOCKED)",
            {"max_age": max_age, "batch": batch},
        )

    def purge_dead(self, *, batch: int = 1000) -> Iterator[int]:
        """Delete dead events; yields the number deleted per batch."""
        yield from self._each_batch(
            "DELETE FROM bangi_outbox WHERE id IN (SELECT id FROM bangi_outbox"
            " WHERE state = 'dead' LIMIT %(batch)s FOR UPDATE SKIP LOCKED)",
            {"batch": batch},
        )

    def purge_destination(self, destination: str, *, batch: int = 1000) -> Iterator[int]:
        """Delete every event (pending or dead) of ``destination``, and its delivered eventIds."""
        yield from self._each_batch(
            "DELETE FROM bangi_outbox WHERE id IN (SELECT id FROM bangi_outbox"
            " WHERE destination = %(destination)s LIMIT %(batch)s FOR UPDATE SKIP LOCKED)",
            {"destination": destination, "batch": batch},
        )
        self._connection(None).execute(
            "DELETE FROM bangi_delivered WHERE destination = %s", (destination,)
        )

    def _each_batch(self, sql: str, params: dict[str, object]) -> Iterator[int]:
        # Short transactions, so running senders are never held up for long.
        while True:
            connection = self._connection(None)
            changed = connection.execute(sql, {**params, "now": self.clock()}).rowcount
            if not changed:
                return
            yield changed

    # Connections

    def close(self) -> None:
        """Close this thread's connection (another thread's closes when that thread ends)."""
        holder = getattr(self._local, "holder", None)
        if holder is not None:
            holder.close()
        self._local.__dict__.clear()

    def _all(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        # One statement on an autocommit connection is a transaction of its own:
        # no BEGIN and COMMIT round trips around it.
        return self._connection(None).execute(sql, params).fetchall()

    @contextmanager
    def _transaction(self, timeout: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        """This thread's connection, in a transaction committed on leaving without an error.

        :param timeout: seconds to connect and run, at most (a request's wait).
        """
        db = self._connection(timeout)
        with db.transaction():
            if timeout is not None:
                # The statements' time, locks waited for included; past it, an error.
                db.execute(
                    "SELECT set_config('statement_timeout', %s, true)",
                    (f"{max(1, int(timeout * 1000))}ms",),
                )
            yield db

    def _connection(self, timeout: float | None) -> psycopg.Connection[Any]:
        """This thread's open connection, made (and the schema with it) if need be."""
        holder: _Holder | None = getattr(self._local, "holder", None)
        if holder is None or holder.connection.closed or holder.pid != os.getpid():
            seconds = self.CONNECT_TIMEOUT if timeout is None else max(2, math.ceil(timeout))
            holder = _Holder(psycopg.connect(self.url, autocommit=True, connect_timeout=seconds))
            self._local.holder = holder  # the one it replaces closes (or, forked, is kept)
        if not self._schema_ready:
            with self._schema_lock:
                if not self._schema_ready:
                    self._migrate(holder.connection)
                    self._schema_ready = True
        return holder.connection

    def _migrate(self, db: psycopg.Connection[Any]) -> None:
        """Apply the migrations this database lacks, one process of all hosts at a time."""
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            db.execute(
                "CREATE TABLE IF NOT EXISTS bangi_schema_version ("
                " version INTEGER PRIMARY KEY,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            applied = {v for (v,) in db.execute("SELECT version FROM bangi_schema_version")}
            for version, sql in migrations():
                if version not in applied:
                    db.execute(sql.encode())  # several statements: no parameters
                    db.execute("INSERT INTO bangi_schema_version (version) VALUES (%s)", (version,))
                    logger.info(
                        "bangi-landing: the outbox %s: schema migration %04d applied",
                        self.name,
                        version,
                    )


def _row(
    destination: str, event: Event, expires_at: float, due: float, lease: str | None = None
) -> dict[str, Any]:
    """``event``'s row of ``destination``, one of the array ``_INSERT`` takes."""
    return {
        "lease": lease,
        "destination": destination,
        "event_id": event.event_id,
        "click_id": event.click_id,
        "kind": event.kind,
        "event": event.to_dict(),
        "created_at": event.created_at,
        "expires_at": expires_at,
        "due_at": due,
    }


class _Holder:
    """A thread's connection, closed when the thread ends (its thread-local storage goes).

    Not in a forked child: there the connection is the parent's socket, and
    closing it would end the parent's session; it is kept, unused, instead.
    """

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.connection = connection
        self.pid = os.getpid()

    def close(self) -> None:
        if self.pid == os.getpid():
            self.connection.close()
        else:
            _INHERITED.append(self.connection)

    def __del__(self) -> None:
        self.close()


_INHERITED: list[psycopg.Connection[Any]] = []
