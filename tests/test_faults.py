"""Delivery under faults, with real processes: gunicorn (WSGI) and uvicorn (ASGI) workers
serving tests/fault_app.py over one outbox, a tracker stand-in on loopback that goes
down and comes back, SIGKILL; then two gunicorn "hosts" over one PostgreSQL outbox,
one of them killed, and the database stopped for 10 s.

Each test drives real page views (new visitors: one click each) and real order
submits (one lead each), then compares what the tracker got with what the
visitors did: every click and lead, each exactly once.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from bangi_landing.outbox import Outbox
from bangi_landing.postgres import PostgresStore

from .postgres import Server
from .utils import ROOT, Sink, free_port, live_server

SUB1 = re.compile(r'name="sub1" value="([0-9a-f-]{36})"')


# server: (its command line but the options, the line of its log that gives its URL)
SERVERS = {
    "gunicorn": (
        [sys.executable, "-m", "gunicorn", "--no-control-socket", "--bind", "127.0.0.1:0",
         "tests.fault_app:app"],
        r"Listening at: (http://\S+)",
    ),
    "uvicorn": (
        [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}",
         "tests.fault_app:asgi_app"],
        r"Uvicorn running on (http://\S+)",
    ),
}  # fmt: skip


class Landing:
    """A server running the fault app, in its own process group."""

    def __init__(
        self,
        server: str,
        outbox: Path | str,
        tracker_port: int,
        *options: str,
        lease: float = 60,
        state: Path | None = None,
        orders: bool = False,
    ) -> None:
        env = {
            **os.environ,
            "BANGI_TRACKER_URL": f"http://127.0.0.1:{tracker_port}",
            "BANGI_OUTBOX": str(outbox),
            "FAULT_LEASE": str(lease),
        }
        if orders:  # orders go to the stand-in too, at /orders (see fault_app.py)
            env["FAULT_ORDERS"] = "1"
        if state is not None:  # a host of its own: its PostgreSQL spool is there
            env["XDG_STATE_HOME"] = str(state)
        command, listening = SERVERS[server]
        command = [part.format(port=free_port()) for part in command]
        self.process = subprocess.Popen(
            [*command, *options],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if found := re.search(listening, line):
                self.url = found.group(1)
                break
        else:
            raise RuntimeError(f"{server} did not start")
        # uvicorn names its URL before its workers listen: wait until one does.
        host, port = self.url.removeprefix("http://").split(":")
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        # Keep reading its log, so a full pipe never blocks it.
        self.log: list[str] = []
        self._reader = threading.Thread(target=self.log.extend, args=(self.process.stderr,))
        self._reader.start()

    def visit(self, path: str = "/?utm_source=fault-test") -> str:
        """A new visitor's page view; returns the clickId the page was given."""
        [click_id] = set(SUB1.findall(requests.get(self.url + path, timeout=10).text))
        return str(click_id)

    def order(self) -> str:
        """A new visitor views the page and submits the order form; returns the clickId."""
        with requests.Session() as browser:
            [click_id] = set(SUB1.findall(browser.get(self.url + "/", timeout=10).text))
            data = {"sub1": click_id, "name": "Ann", "phone": "+1 555 0100", "offer": "7"}
            assert browser.post(self.url + "/submit", data=data, timeout=10).ok
        return str(click_id)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> float:
        """Signal the whole group; seconds until gunicorn had exited."""
        start = time.monotonic()
        os.killpg(self.process.pid, sig)
        self.process.wait(timeout)
        took = time.monotonic() - start
        self._reader.join()  # the log ends with the process group
        assert self.process.stderr is not None
        self.process.stderr.close()
        return took


@contextmanager
def landing(
    server_name: str,
    outbox: Path | str,
    tracker_port: int,
    *options: str,
    lease: float = 60,
    state: Path | None = None,
    orders: bool = False,
) -> Iterator[Landing]:
    server = Landing(
        server_name, outbox, tracker_port, *options, lease=lease, state=state, orders=orders
    )
    failed = False
    try:
        yield server
    except BaseException:
        failed = True
        raise
    finally:
        if server.process.poll() is None:
            server.stop(signal.SIGKILL)
        if failed:  # pytest shows what was printed with the failure
            server._reader.join(5)
            print(f"{server_name}'s log:", *server.log, sep="\n")


def traffic(server: Landing, views: int, orders: int) -> tuple[list[str], list[str]]:
    """Page views and orders from 8 visitors at a time: (clickIds viewed, clickIds ordered)."""
    with ThreadPoolExecutor(8) as pool:
        viewed = pool.map(lambda _: server.visit(), range(views))
        ordered = pool.map(lambda _: server.order(), range(orders))
        return list(viewed), list(ordered)


def wait_until(condition: object, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def assert_delivered_once(sink: Sink, viewed: list[str], ordered: list[str]) -> None:
    """Every click (views, and the page view before each order) and lead, once each."""
    clicks = [r for r in sink.received if r["path"] == "/api/v2/track/click"]
    leads = [r for r in sink.received if r["path"] == "/api/v2/track/lead"]
    assert sorted(r["clickId"] for r in clicks) == sorted(viewed + ordered)  # type: ignore[type-var]
    assert sorted(r["clickId"] for r in leads) == sorted(ordered)  # type: ignore[type-var]
    event_ids = [r["eventId"] for r in sink.received]
    assert len(event_ids) == len(set(event_ids)), "an event reached the tracker twice"
    assert all("name" not in r and "phone" not in r for r in leads)


@pytest.mark.slow
@pytest.mark.parametrize("server_name", SERVERS)
def test_tracker_down_during_a_burst_then_back(tmp_path: Path, server_name: str) -> None:
    port, sink = free_port(), Sink()
    with landing(server_name, tmp_path / "outbox.sqlite3", port, "--workers", "2") as server:
        viewed, ordered = traffic(server, views=150, orders=30)  # the tracker is down
        time.sleep(1.0)  # retries fail meanwhile
        assert sink.received == []
        with live_server(sink, port):
            expected = len(viewed) + 2 * len(ordered)
            assert wait_until(lambda: len(sink.received) >= expected)
            time.sleep(1.0)  # anything sent twice would show up by now
        assert_delivered_once(sink, viewed, ordered)
        assert Outbox(tmp_path / "outbox.sqlite3").depth() == 0


@pytest.mark.slow
@pytest.mark.parametrize("server_name", SERVERS)
def test_sigkill_with_events_pending_loses_nothing(tmp_path: Path, server_name: str) -> None:
    port, sink, outbox = free_port(), Sink(), tmp_path / "outbox.sqlite3"
    with landing(server_name, outbox, port, "--workers", "1") as server:
        viewed, ordered = traffic(server, views=60, orders=15)  # the tracker is down
        time.sleep(0.15)  # clicks are in the outbox within 100 ms of their page
        server.stop(signal.SIGKILL)
    assert Outbox(outbox).depth() == len(viewed) + 2 * len(ordered)
    with live_server(sink, port), landing(server_name, outbox, port, "--workers", "1") as server:
        requests.get(server.url + "/style.css", timeout=10)  # any request starts the sender
        expected = len(viewed) + 2 * len(ordered)
        assert wait_until(lambda: len(sink.received) >= expected)
        time.sleep(0.5)
        assert_delivered_once(sink, viewed, ordered)


@pytest.mark.slow
def test_sigkill_with_orders_pending_loses_none_and_doubles_none(tmp_path: Path) -> None:
    port, sink, outbox = free_port(), Sink(), tmp_path / "outbox.sqlite3"
    with landing("gunicorn", outbox, port, "--workers", "2", orders=True) as server:
        _, ordered = traffic(server, views=0, orders=20)  # the network is down
        server.stop(signal.SIGKILL)  # at once: an order is in the outbox before its answer
    with (
        live_server(sink, port),
        landing("gunicorn", outbox, port, "--workers", "2", orders=True) as server,
    ):
        requests.get(server.url + "/style.css", timeout=10)  # any request starts the sender
        assert wait_until(lambda: len(received_orders(sink)) >= len(ordered))
        time.sleep(0.5)  # anything sent twice would show up by now
    orders = received_orders(sink)
    assert sorted(str(r["sub1"]) for r in orders) == sorted(ordered)  # each once
    assert all((r["offer"], r["name"]) == ("7", "Ann") for r in orders)


def received_orders(sink: Sink) -> list[dict[str, object]]:
    return [r for r in sink.received if r["path"] == "/orders"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("server_name", "preload"),
    [("gunicorn", False), ("gunicorn", True), ("uvicorn", False)],
    ids=["gunicorn", "gunicorn-preload", "uvicorn"],
)
def test_four_workers_share_one_outbox(tmp_path: Path, server_name: str, preload: bool) -> None:
    port, sink, outbox = free_port(), Sink(), tmp_path / "outbox.sqlite3"
    options = ["--workers", "4", *(["--preload"] if preload else [])]
    with live_server(sink, port), landing(server_name, outbox, port, *options) as server:
        viewed, ordered = traffic(server, views=200, orders=40)
        expected = len(viewed) + 2 * len(ordered)
        assert wait_until(lambda: len(sink.received) >= expected)
        time.sleep(0.5)
        assert_delivered_once(sink, viewed, ordered)
        assert server.stop(signal.SIGTERM) < 5.0  # a graceful shutdown is quick


# Many hosts, one PostgreSQL outbox (tests/postgres.py)


def both(hosts: list[Landing], views: int, orders: int) -> tuple[list[str], list[str]]:
    """``traffic`` on every host at once: (clickIds viewed, clickIds ordered), all hosts."""
    with ThreadPoolExecutor(len(hosts)) as pool:
        done = list(pool.map(lambda host: traffic(host, views, orders), hosts))
    return [c for viewed, _ in done for c in viewed], [c for _, ordered in done for c in ordered]


def first_arrivals(sink: Sink) -> dict[str, int]:
    """Each eventId's position at its first arrival at the tracker."""
    arrivals: dict[str, int] = {}
    for position, record in enumerate(list(sink.received)):
        arrivals.setdefault(str(record["eventId"]), position)
    return arrivals


def assert_clicks_before_leads(sink: Sink) -> None:
    """Every lead's first arrival follows its click's (seed 004), whichever host sent them."""
    arrivals = first_arrivals(sink)
    click_at = {
        r["clickId"]: arrivals[str(r["eventId"])]
        for r in sink.received
        if r["path"] == "/api/v2/track/click"
    }
    for lead in (r for r in sink.received if r["path"] == "/api/v2/track/lead"):
        assert click_at[lead["clickId"]] < arrivals[str(lead["eventId"])], "a lead before its click"


def assert_each_once(sink: Sink, viewed: list[str], ordered: list[str]) -> None:
    """Every click and lead reached the tracker, and it stored each once (distinct eventIds)."""
    arrivals = first_arrivals(sink)
    firsts = [r for i, r in enumerate(sink.received) if arrivals[str(r["eventId"])] == i]
    clicks = [r["clickId"] for r in firsts if r["path"] == "/api/v2/track/click"]
    leads = [r["clickId"] for r in firsts if r["path"] == "/api/v2/track/lead"]
    assert sorted(clicks) == sorted(viewed + ordered)  # type: ignore[type-var]
    assert sorted(leads) == sorted(ordered)  # type: ignore[type-var]


@pytest.mark.slow
def test_two_hosts_one_database_every_event_once_in_order(postgres: Server, tmp_path: Path) -> None:
    postgres.empty()
    port, sink, url = free_port(), Sink(), postgres.url
    with (
        landing("gunicorn", url, port, "--workers", "2", state=tmp_path / "one") as one,
        landing("gunicorn", url, port, "--workers", "2", state=tmp_path / "two") as two,
    ):
        viewed, ordered = both([one, two], views=75, orders=15)  # the tracker is down
        time.sleep(1.0)  # retries fail meanwhile
        assert sink.received == []
        with live_server(sink, port):
            expected = len(viewed) + 2 * len(ordered)
            assert wait_until(lambda: len(sink.received) >= expected)
            time.sleep(1.0)  # anything sent twice would show up by now
        assert_delivered_once(sink, viewed, ordered)
        assert_clicks_before_leads(sink)
        assert PostgresStore(postgres.url).depth() == 0


@pytest.mark.slow
def test_a_host_killed_mid_send_leaves_its_rows_to_the_other(postgres: Server) -> None:
    postgres.empty()
    port, sink = free_port(), Sink()
    sink.delay = 0.3  # a slow tracker: the host holds leased rows when it dies
    with live_server(sink, port):
        with landing("gunicorn", postgres.url, port, "--workers", "2", lease=3) as doomed:
            viewed, ordered = traffic(doomed, views=60, orders=15)
            time.sleep(0.15)  # clicks are in the outbox within 100 ms of their page
            assert len(sink.received) < len(viewed)  # the host is still sending
            doomed.stop(signal.SIGKILL)
        in_flight = set(first_arrivals(sink))  # what the dead host had sent, or was sending
        assert PostgresStore(postgres.url).depth() > 0
        with landing("gunicorn", postgres.url, port, "--workers", "2", lease=3) as other:
            requests.get(other.url + "/style.css", timeout=10)  # any request starts the sender
            expected = len(viewed) + 2 * len(ordered)
            assert wait_until(lambda: len(first_arrivals(sink)) >= expected, timeout=60)
            time.sleep(1.0)
        assert_each_once(sink, viewed, ordered)
        assert_clicks_before_leads(sink)
        sent = [r["eventId"] for r in sink.received]
        doubled = {event_id for event_id in sent if sent.count(event_id) > 1}
        # Sent twice only what the dead host had sent: its outcome was never recorded.
        assert doubled <= in_flight
        assert PostgresStore(postgres.url).depth() == 0


@pytest.mark.slow
def test_the_database_stopped_for_10_seconds_during_a_burst(
    postgres: Server, tmp_path: Path
) -> None:
    postgres.empty()
    port, sink, url, host = free_port(), Sink(), postgres.url, tmp_path / "host"
    with live_server(sink, port):
        with landing("gunicorn", url, port, "--workers", "2", lease=3, state=host) as server:
            viewed, ordered = traffic(server, views=20, orders=5)
            postgres.stop()
            try:
                stopped = time.monotonic()
                # Pages answer with their fields (visit and order check), orders go through.
                during = traffic(server, views=40, orders=10)
                time.sleep(max(0.0, 10 - (time.monotonic() - stopped)))
            finally:
                postgres.start()
            later = traffic(server, views=20, orders=5)
            for more_viewed, more_ordered in (during, later):
                viewed, ordered = viewed + more_viewed, ordered + more_ordered
            expected = len(viewed) + 2 * len(ordered)
            assert wait_until(lambda: len(first_arrivals(sink)) >= expected, timeout=60)
            time.sleep(1.0)
        assert_each_once(sink, viewed, ordered)
        assert_clicks_before_leads(sink)


@pytest.mark.slow
def test_a_host_killed_while_the_database_is_away_loses_nothing(
    postgres: Server, tmp_path: Path
) -> None:
    # Its events wait in its spool on disk, not in its memory: the host started
    # again (the same disk) moves them to the database once it is back.
    postgres.empty()
    port, sink, url, host = free_port(), Sink(), postgres.url, tmp_path / "host"
    postgres.stop()
    try:
        with landing("gunicorn", url, port, "--workers", "2", state=host) as server:
            viewed, ordered = traffic(server, views=30, orders=10)
            time.sleep(0.15)  # clicks are written (to the spool) within 100 ms of their page
            server.stop(signal.SIGKILL)
    finally:
        postgres.start()
    with live_server(sink, port), landing("gunicorn", url, port, state=host) as server:
        requests.get(server.url + "/style.css", timeout=10)  # any request starts the sender
        expected = len(viewed) + 2 * len(ordered)
        assert wait_until(lambda: len(sink.received) >= expected)
        time.sleep(0.5)
        assert_delivered_once(sink, viewed, ordered)
        assert_clicks_before_leads(sink)
