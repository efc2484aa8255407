"""Delivery under faults, with real processes: gunicorn (WSGI) and uvicorn (ASGI) workers
serving tests/fault_app.py over one outbox, a tracker stand-in on loopback that goes
down and comes back, SIGKILL.

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

    def __init__(self, server: str, outbox: Path, tracker_port: int, *options: str) -> None:
        env = {
            **os.environ,
            "BANGI_TRACKER_URL": f"http://127.0.0.1:{tracker_port}",
            "BANGI_OUTBOX": str(outbox),
        }
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
def landing(server_name: str, outbox: Path, tracker_port: int, *options: str) -> Iterator[Landing]:
    server = Landing(server_name, outbox, tracker_port, *options)
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
