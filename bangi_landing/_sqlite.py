"""What the outbox and the bundled tracker both need from SQLite: files shared by processes."""

from __future__ import annotations

import sqlite3
import time


def switch_to_wal(connection: sqlite3.Connection, timeout: float) -> None:
    """``PRAGMA journal_mode = WAL``, retried while the file is busy.

    The switch needs the file to itself, and SQLite answers "database is
    locked" at once instead of calling its busy handler when another process
    is opening the same new file: workers that boot together would fail.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def create_schema(connection: sqlite3.Connection, schema: str) -> None:
    """Run ``schema`` (``CREATE ... IF NOT EXISTS`` statements) in one transaction.

    Taking the write lock up front lets the busy timeout work when several
    workers create the same new file at once.
    """
    connection.executescript(f"BEGIN IMMEDIATE; {schema}; COMMIT;")
