"""SQLite storage for the bundled tracker.

One file in WAL mode, so readers (the report) never block writers (the API).
Exactly-once is enforced by the database, not by a read-then-write in Python:
partial unique indexes make a repeated click (same clickId) or a repeated
delivery (same type and eventId) an ``INSERT OR IGNORE`` that stores nothing,
and the fake AlterCPA Pro's leads are unique on (click, exto) the same way.

Reading never fails on a stored row: params that cannot be read back as JSON
within untrusted.py's limits come back as their stored text, and text that is
not UTF-8 with U+FFFD in place of its bad bytes.
"""

from __future__ import annotations

import json
import os
import queue
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .._sqlite import create_schema, switch_to_wal
from ..core.statuses import PAID_STATUSES, Status, StatusMapper
from .untrusted import load_stored

EVENT_TYPES = ("click", "lead", "postback", "altercpa")
LANDER = "lander"  # a click's split-test variant: the landing's default lander_param

# What the fake AlterCPA Pro answers a status.json for a lead it does not have.
NO_SUCH_PRO_LEAD = "no such lead: register it with click.json first, or send auto=1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS campaigns (
    id            INTEGER PRIMARY KEY,
    name          TEXT,
    status_mapper TEXT,
    cost          REAL,
    currency      TEXT,
    created_at    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    type        TEXT NOT NULL,
    click_id    TEXT,
    campaign_id INTEGER,
    event_id    TEXT,
    params      TEXT NOT NULL,
    status      TEXT,
    payout      REAL,
    currency    TEXT,
    received_at TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_click_per_click_id ON events (click_id) WHERE type = 'click';
CREATE UNIQUE INDEX IF NOT EXISTS one_event_per_event_id ON events (type, event_id)
    WHERE event_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_by_click_id ON events (click_id);
CREATE INDEX IF NOT EXISTS events_by_campaign ON events (campaign_id, type);
CREATE TABLE IF NOT EXISTS network_orders (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    click_id        TEXT NOT NULL,
    params          TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    postback_status TEXT,
    postback_result TEXT,
    postback_at     TEXT
);
-- The Idempotency-Key each order came with: a retry of a taken order is not taken again.
CREATE TABLE IF NOT EXISTS network_order_keys (
    key      TEXT PRIMARY KEY,
    order_id INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pro_leads (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    click      TEXT NOT NULL,
    exto       TEXT NOT NULL,
    status     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (click, exto)
);
"""


@dataclass(frozen=True)
class Campaign:
    id: int
    name: str | None = None
    status_mapper: StatusMapper | None = None
    cost: float | None = None
    currency: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "statusMapper": self.status_mapper.to_json() if self.status_mapper else None,
            "cost": self.cost,
            "currency": self.currency,
        }


@dataclass(frozen=True)
class ProMove:
    """What a valid External sites call does to the fake AlterCPA Pro's lead (click, exto)."""

    click: str
    exto: str
    status: str
    create: bool  # when there is no such lead, create it with ``status``
    move: bool  # an existing lead takes ``status`` (click.json leaves it as it is)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class TrackerStore:
    """Thread-safe access to the tracker database.

    Connections are pooled rather than kept per thread: the threaded WSGI server
    starts a thread per request, and a per-thread connection would be opened and
    leaked for every one of them.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        with self._connection() as db:
            switch_to_wal(db, timeout=10)
            create_schema(db, _SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        db.row_factory = sqlite3.Row
        # Text another program wrote as invalid UTF-8 is shown with U+FFFD, not a 500.
        db.text_factory = _text
        db.execute("PRAGMA synchronous = NORMAL")
        return db

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        try:
            db = self._idle.get_nowait()
        except queue.Empty:
            db = self._connect()
        try:
            yield db
        finally:
            if db.in_transaction:  # an exception escaped mid-transaction
                db.rollback()
            self._idle.put(db)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the lock up front, so it never has to upgrade."""
        with self._connection() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.rollback()
                raise
            db.commit()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    # Campaigns

    def put_campaign(self, campaign: Campaign) -> bool:
        """Create or replace a campaign; True when it was created."""
        mapper = json.dumps(campaign.status_mapper.to_json()) if campaign.status_mapper else None
        with self._write() as db:
            existed = db.execute("SELECT 1 FROM campaigns WHERE id = ?", (campaign.id,)).fetchone()
            db.execute(
                "INSERT INTO campaigns (id, name, status_mapper, cost, currency, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET name = excluded.name,"
                " status_mapper = excluded.status_mapper, cost = excluded.cost,"
                " currency = excluded.currency",
                (campaign.id, campaign.name, mapper, campaign.cost, campaign.currency, _now()),
            )
        return existed is None

    def get_campaign(self, campaign_id: int) -> Campaign | None:
        with self._connection() as db:
            row = db.execute("SELECT * FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()
        return _campaign(row) if row else None

    def campaigns(self) -> list[Campaign]:
        with self._connection() as db:
            return [_campaign(row) for row in db.execute("SELECT * FROM campaigns ORDER BY id")]

    # Events

    def record_click(
        self, click_id: str, campaign_id: int, params: Mapping[str, Any], event_id: str | None
    ) -> bool:
        """Store a click; False when this clickId (or eventId) was already recorded."""
        with self._write() as db:
            created = _insert_event(db, "click", click_id, campaign_id, event_id, params)
            if created:
                db.execute(
                    "INSERT OR IGNORE INTO campaigns (id, created_at) VALUES (?, ?)",
                    (campaign_id, _now()),
                )
            return created

    def record_lead(self, click_id: str, params: Mapping[str, Any], event_id: str | None) -> bool:
        """Store a lead under its click's campaign (none when the click is unknown)."""
        with self._write() as db:
            campaign_id = _campaign_of_click(db, click_id)
            return _insert_event(db, "lead", click_id, campaign_id, event_id, params)

    def record_postback(
        self,
        click_id: str,
        params: Mapping[str, Any],
        event_id: str | None,
        payout: float | None,
        currency: str | None,
    ) -> bool:
        """Store a postback with its mapped status and, when it is paid, its payout.

        ``payout``/``currency`` are what the postback itself sent; the campaign's
        cost and currency fill in for whichever is missing.
        """
        with self._write() as db:
            campaign_id = _campaign_of_click(db, click_id)
            row = (
                db.execute("SELECT * FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()
                if campaign_id is not None
                else None
            )
            campaign = _campaign(row) if row else None
            status: Status = "trash"
            if campaign and campaign.status_mapper:
                status = campaign.status_mapper.map(params)
            if campaign and status in PAID_STATUSES:
                paid = (
                    payout if payout is not None else campaign.cost,
                    currency if currency is not None else campaign.currency,
                )
            else:
                paid = (None, None)
            return _insert_event(
                db, "postback", click_id, campaign_id, event_id, params, status, *paid
            )

    def events(
        self,
        *,
        click_id: str | None = None,
        campaign_id: int | None = None,
        type: str | None = None,
        after: int = 0,
        limit: int = 1000,
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """Events matching every given filter, oldest first (or newest first)."""
        where: list[str] = ["id > ?"]
        args: list[object] = [after]
        for column, value in (("click_id", click_id), ("campaign_id", campaign_id), ("type", type)):
            if value is not None:
                where.append(f"{column} = ?")  # column names are ours, values are bound
                args.append(value)
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY id {order} LIMIT ?"  # noqa: S608
        with self._connection() as db:
            return [_event(row) for row in db.execute(sql, [*args, limit])]

    def count(self, type: str | None = None) -> int:
        with self._connection() as db:
            if type is None:
                return int(db.execute("SELECT count(*) FROM events").fetchone()[0])
            return int(
                db.execute("SELECT count(*) FROM events WHERE type = ?", (type,)).fetchone()[0]
            )

    def campaign_summaries(self) -> list[dict[str, Any]]:
        """Per campaign: clicks, leads (distinct journeys), journeys by latest postback status.

        A journey that gets ``expect`` and later ``accept`` counts once, under
        ``accept``: statuses are read from each clickId's latest postback.
        """
        sql = f"""
        WITH latest AS ({_LATEST_POSTBACKS})
        SELECT c.id, c.name, c.currency,
            (SELECT count(*) FROM events e WHERE e.campaign_id = c.id AND e.type = 'click')
                AS clicks,
            (SELECT count(DISTINCT e.click_id) FROM events e
                WHERE e.campaign_id = c.id AND e.type = 'lead') AS leads,
            coalesce(sum(l.status = 'accept'), 0) AS accept,
            coalesce(sum(l.status = 'expect'), 0) AS expect,
            coalesce(sum(l.status = 'reject'), 0) AS reject,
            coalesce(sum(l.status = 'trash'), 0) AS trash
        FROM campaigns c LEFT JOIN latest l ON l.campaign_id = c.id AND l.nth = 1
        GROUP BY c.id ORDER BY c.id
        """  # noqa: S608 (constant SQL)
        with self._connection() as db:
            return [dict(row) for row in db.execute(sql)]

    def accepted_payouts(self) -> dict[int, dict[str | None, float]]:
        """Per campaign and currency, the payout of journeys whose latest postback is accept.

        Kept per currency because a postback may carry its own, and the
        campaign's may have changed since.
        """
        sql = f"""
        WITH latest AS ({_LATEST_POSTBACKS})
        SELECT campaign_id, currency, sum(payout) AS amount FROM latest
        WHERE nth = 1 AND status = 'accept' AND payout IS NOT NULL
        GROUP BY campaign_id, currency
        """  # noqa: S608 (constant SQL)
        totals: dict[int, dict[str | None, float]] = {}
        with self._connection() as db:
            for row in db.execute(sql):
                totals.setdefault(row["campaign_id"], {})[row["currency"]] = row["amount"]
        return totals

    def variant_summaries(self) -> list[dict[str, Any]]:
        """Per campaign and split-test variant: clicks, leads, accepted, accepted payouts.

        A journey's variant is its click's ``lander`` parameter (the landing's
        default name for it); clicks without one are in no variant. Leads and
        statuses count journeys, as :meth:`campaign_summaries` does. ``paid`` is
        the accepted payout per currency.
        """
        with_variant = f"""
        WITH latest AS ({_LATEST_POSTBACKS}),
        variants AS (
            SELECT click_id, campaign_id, json_extract(params, '$.{LANDER}') AS variant
            FROM events
            WHERE type = 'click' AND json_type(params, '$.{LANDER}') = 'text'
        )
        """  # noqa: S608 (constant SQL)
        counts = f"""{with_variant}
        SELECT v.campaign_id, v.variant, count(*) AS clicks,
            sum(EXISTS (SELECT 1 FROM events e WHERE e.type = 'lead' AND e.click_id = v.click_id))
                AS leads,
            coalesce(sum(l.status = 'accept'), 0) AS accepted
        FROM variants v LEFT JOIN latest l ON l.click_id = v.click_id AND l.nth = 1
        GROUP BY v.campaign_id, v.variant ORDER BY v.campaign_id, v.variant
        """  # noqa: S608 (constant SQL)
        paid = f"""{with_variant}
        SELECT v.campaign_id, v.variant, l.currency, sum(l.payout) AS amount
        FROM variants v JOIN latest l ON l.click_id = v.click_id AND l.nth = 1
        WHERE l.status = 'accept' AND l.payout IS NOT NULL
        GROUP BY v.campaign_id, v.variant, l.currency
        """  # noqa: S608 (constant SQL)
        with self._connection() as db:
            rows = {
                (r["campaign_id"], r["variant"]): {**dict(r), "paid": {}}
                for r in db.execute(counts)
            }
            for row in db.execute(paid):
                rows[row["campaign_id"], row["variant"]]["paid"][row["currency"]] = row["amount"]
        return list(rows.values())

    # The fake AlterCPA Pro (altercpa.py)

    def record_pro_call(
        self, click_id: str | None, params: Mapping[str, Any], outcome: ProMove | str
    ) -> int | None:
        """Apply a valid External sites call to its Pro lead, and record any call as an event.

        ``outcome`` is the valid call's move, or a refused call's error message.
        The ``altercpa`` event gets ``params`` plus ``result``: ``"ok"``, the
        error message, or ``NO_SUCH_PRO_LEAD`` when the move's lead does not
        exist and may not be created. Both writes are one transaction, so the
        record never disagrees with the lead. Returns the lead's id, or None.
        """
        with self._write() as db:
            lead_id = _move_pro_lead(db, outcome) if isinstance(outcome, ProMove) else None
            if isinstance(outcome, str):
                result = outcome
            else:
                result = "ok" if lead_id is not None else NO_SUCH_PRO_LEAD
            campaign_id = _campaign_of_click(db, click_id) if click_id else None
            _insert_event(db, "altercpa", click_id, campaign_id, None, {**params, "result": result})
            return lead_id

    def pro_leads(self) -> list[dict[str, Any]]:
        """The fake AlterCPA Pro's leads, oldest first."""
        with self._connection() as db:
            return [
                {
                    "id": row["id"],
                    "click": row["click"],
                    "exto": row["exto"],
                    "status": row["status"],
                    "createdAt": row["created_at"],
                    "updatedAt": row["updated_at"],
                }
                for row in db.execute("SELECT * FROM pro_leads ORDER BY id")
            ]

    # The fake CPA network's orders (network.py)

    def add_network_order(
        self, click_id: str, params: Mapping[str, Any], key: str | None = None
    ) -> tuple[int, bool]:
        """Store an order the fake network received, with all its fields as sent.

        :param key: the order's idempotency key: an order with a key already
            seen is not stored again.
        :return: the order's id, and whether it is new.
        """
        with self._write() as db:
            if key is not None:
                row = db.execute(
                    "SELECT order_id FROM network_order_keys WHERE key = ?", (key,)
                ).fetchone()
                if row is not None:
                    return int(row[0]), False
            cursor = db.execute(
                "INSERT INTO network_orders (click_id, params, received_at) VALUES (?, ?, ?)",
                (click_id, json.dumps(params, ensure_ascii=False, separators=(",", ":")), _now()),
            )
            order_id = int(cursor.lastrowid or 0)
            if key is not None:
                db.execute(
                    "INSERT INTO network_order_keys (key, order_id) VALUES (?, ?)", (key, order_id)
                )
            return order_id, True

    def network_orders(self, limit: int = 200) -> list[dict[str, Any]]:
        """The fake network's orders, newest first."""
        with self._connection() as db:
            rows = db.execute("SELECT * FROM network_orders ORDER BY id DESC LIMIT ?", (limit,))
            return [self._network_order(row) for row in rows]

    def network_order(self, order_id: int) -> dict[str, Any] | None:
        with self._connection() as db:
            row = db.execute("SELECT * FROM network_orders WHERE id = ?", (order_id,)).fetchone()
        return self._network_order(row) if row else None

    def count_network_orders(self) -> int:
        with self._connection() as db:
            return int(db.execute("SELECT count(*) FROM network_orders").fetchone()[0])

    def set_network_postback(self, order_id: int, status: str, result: str) -> bool:
        """Record the latest postback the network sent for an order; False if no such order."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE network_orders SET postback_status = ?, postback_result = ?,"
                " postback_at = ? WHERE id = ?",
                (status, result, _now(), order_id),
            )
            return cursor.rowcount == 1

    @staticmethod
    def _network_order(row: sqlite3.Row) -> dict[str, Any]:
        return {
            "id": row["id"],
            "clickId": row["click_id"],
            "params": load_stored(row["params"]),
            "receivedAt": row["received_at"],
            "postbackStatus": row["postback_status"],
            "postbackResult": row["postback_result"],
            "postbackAt": row["postback_at"],
        }


# Each journey's postbacks numbered newest first: nth = 1 is its current status.
_LATEST_POSTBACKS = """
    SELECT click_id, campaign_id, status, payout, currency,
           row_number() OVER (PARTITION BY click_id ORDER BY id DESC) AS nth
    FROM events WHERE type = 'postback' AND campaign_id IS NOT NULL
"""


def _campaign_of_click(db: sqlite3.Connection, click_id: str) -> int | None:
    row = db.execute(
        "SELECT campaign_id FROM events WHERE type = 'click' AND click_id = ?", (click_id,)
    ).fetchone()
    return int(row[0]) if row else None


def _move_pro_lead(db: sqlite3.Connection, move: ProMove) -> int | None:
    now = _now()
    key = (move.click, move.exto)
    if move.create:
        db.execute(
            "INSERT OR IGNORE INTO pro_leads (click, exto, status, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (*key, move.status, now, now),
        )
    if move.move:
        db.execute(
            "UPDATE pro_leads SET status = ?, updated_at = ? WHERE click = ? AND exto = ?",
            (move.status, now, *key),
        )
    row = db.execute("SELECT id FROM pro_leads WHERE click = ? AND exto = ?", key).fetchone()
    return int(row[0]) if row else None


def _insert_event(
    db: sqlite3.Connection,
    type: str,
    click_id: str | None,
    campaign_id: int | None,
    event_id: str | None,
    params: Mapping[str, Any],
    status: str | None = None,
    payout: float | None = None,
    currency: str | None = None,
) -> bool:
    cursor = db.execute(
        "INSERT OR IGNORE INTO events (type, click_id, campaign_id, event_id, params, status,"
        " payout, currency, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            type,
            click_id,
            campaign_id,
            event_id,
            json.dumps(params, ensure_ascii=False, separators=(",", ":")),
            status,
            payout,
            currency,
            _now(),
        ),
    )
    return cursor.rowcount == 1


def _campaign(row: sqlite3.Row) -> Campaign:
    mapper = row["status_mapper"]
    return Campaign(
        id=row["id"],
        name=row["name"],
        status_mapper=StatusMapper.from_json(json.loads(mapper)) if mapper else None,
        cost=row["cost"],
        currency=row["currency"],
    )


def _event(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "type": row["type"],
        "clickId": row["click_id"],
        "campaignId": row["campaign_id"],
        "params": load_stored(row["params"]),
        "status": row["status"],
        "payout": row["payout"],
        "currency": row["currency"],
        "receivedAt": row["received_at"],
    }
