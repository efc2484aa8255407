"""The PostgreSQL store's own promises, on a real server (tests/postgres.py).

What every store promises is in tests/test_store_contract.py; here: the
schema made once by processes starting together, senders woken by other
hosts' writes, choosing the store by URL, and the password kept out of sight.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bangi_landing import config
from bangi_landing.config import ConfigurationError, redact
from bangi_landing.destinations import BangiTracker
from bangi_landing.events import Event
from bangi_landing.outbox import Outbox
from bangi_landing.postgres import PostgresStore, migrations
from bangi_landing.sender import BackgroundSender

from .postgres import Server
from .utils import Sink, free_port, live_server

BANGI = "bangi http://127.0.0.1:1/"


def _open_store(url: str, start: Any) -> None:
    start.wait(60)  # all at once, as the workers of many hosts starting together
    PostgresStore(url).depth()


def test_processes_starting_together_make_the_schema_once(postgres: Server) -> None:
    url = postgres.database(f"fresh_{uuid.uuid4().hex[:8]}")
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(6)
    processes = [context.Process(target=_open_store, args=(url, start)) for _ in range(6)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [process.exitcode for process in processes] == [0] * 6
    with psycopg.connect(url) as db:
        versions = [v for (v,) in db.execute("SELECT version FROM bangi_schema_version")]
    assert versions == [number for number, _ in migrations()] == [1]


def test_a_later_process_finds_the_schema_and_changes_nothing(postgres: Server) -> None:
    store = PostgresStore(postgres.url)
    store.add([Event("click", str(uuid.uuid4()), {})], [BANGI], max_age=60)
    depth = store.depth()
    assert PostgresStore(postgres.url).depth() == depth  # its first use migrates nothing
    postgres.empty()


def test_a_sender_is_woken_by_rows_another_host_adds(postgres: Server) -> None:
    postgres.empty()
    server = Sink()
    with live_server(server) as url:
        destination = BangiTracker(url)
        sender = BackgroundSender([destination], outbox=PostgresStore(postgres.url))
        sender.start()
        assert sender.flush(10)  # settled: its threads now wait 5 s before looking again
        time.sleep(0.5)  # and its listener listens
        other_host = PostgresStore(postgres.url)
        other_host.add([Event("click", str(uuid.uuid4()), {})], [destination.key], max_age=60)
        # Well before the 5 s the senders would wait without a notification.
        assert server.wait_for(1, timeout=3.5)
        sender.close()
        other_host.close()


def test_a_postgresql_url_selects_the_store_as_option_or_environment(
    postgres: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = config.outbox(postgres.url)
    assert isinstance(store, PostgresStore) and store.url == postgres.url
    monkeypatch.setenv("BANGI_OUTBOX", postgres.url)
    assert isinstance(config.outbox(config.DEFAULT_OUTBOX), PostgresStore)


def test_without_psycopg_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg: ImportError
    monkeypatch.delitem(sys.modules, "bangi_landing.postgres")
    with pytest.raises(ConfigurationError) as raised:
        config.outbox("postgresql://bangi:s3cret@db.internal/landing")
    assert "pip install 'bangi-landing[postgresql]'" in str(raised.value)
    assert "s3cret" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://bangi:s3cret@db:5432/x", "postgresql://bangi:***@db:5432/x"),
        (
            "postgresql://db/x?user=bangi&password=s3cret",
            "postgresql://db/x?user=bangi&password=***",
        ),
        ("postgresql://bangi@db/x", "postgresql://bangi@db/x"),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_an_unreachable_database_is_logged_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"postgresql://bangi:s3cret@127.0.0.1:{free_port()}/landing"
    sender = BackgroundSender([BangiTracker("http://127.0.0.1:1")], outbox=PostgresStore(url))
    sender._ensure_threads = lambda: None  # type: ignore[method-assign]  # the request's write only
    with caplog.at_level(logging.WARNING, logger="bangi_landing"):
        assert sender.submit(Event("lead", str(uuid.uuid4()), {}), durable=True)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "postgresql://bangi:***@127.0.0.1" in logged  # the write failed, and said where
    assert "s3cret" not in logged


def test_while_the_database_is_away_events_wait_in_the_spool_then_move(
    postgres: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    postgres.empty()
    url = postgres.url.replace("postgres@", "postgres:s3cret@")
    store = PostgresStore(url, spool=tmp_path / "spool.sqlite3")
    journey = str(uuid.uuid4())
    first = Event("click", journey, {"click": "PRO1"})
    postgres.stop()
    try:
        with caplog.at_level(logging.INFO, logger="bangi_landing"):
            store.add([first], [BANGI], max_age=60, keep_journeys=True)
            store.add([Event("lead", journey, {})], [BANGI], max_age=60)
    finally:
        postgres.start()
    assert store.spool is not None and store.spool.depth() == 2
    with caplog.at_level(logging.INFO, logger="bangi_landing"):
        [claimed] = store.claim(BANGI, "a", limit=9, until=time.time() + 60, journeys=True)
    assert (claimed.event.kind, claimed.event.journey) == ("click", {"click": "PRO1"})
    assert store.spool.depth() == 0
    # The lead waits for a click that may still be in another host's spool.
    assert store.next_due([BANGI], after=time.time()) > time.time() + 1.5
    logged = [record.getMessage() for record in caplog.records]
    assert sum("unreachable" in line for line in logged) == 1  # said once, not per event
    assert any("moved 2 events from the spool" in line for line in logged)
    assert "s3cret" not in "\n".join(logged)
    store.close()


def test_a_spool_left_by_a_process_is_moved_by_the_next(postgres: Server, tmp_path: Path) -> None:
    postgres.empty()
    spool = Outbox(tmp_path / "spool.sqlite3")  # as a killed process left it
    spool.add([Event("click", str(uuid.uuid4()), {})], [BANGI], max_age=60)
    store = PostgresStore(postgres.url, spool=spool.path)
    assert store.depth() == 0  # nothing was moved by merely looking
    assert len(store.claim(BANGI, "a", limit=9, until=time.time() + 60)) == 1
    assert spool.depth() == 0
    store.close()
