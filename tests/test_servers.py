"""The wrapped demo under production WSGI servers, each in its own process on a loopback port:
gunicorn with sync workers, gunicorn with gthread workers, waitress.

Each serves ``tests.demo_wsgi:app`` (the demo landing in bangi-landing,
reporting to the bundled tracker); visitors view the landing and order, and
the tracker must get each one's click and lead under one clickId.
"""

from __future__ import annotations

import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from .conftest import Tracker
from .journey import land, order, tracked
from .utils import free_port, running, wait_for_port

APP = "tests.demo_wsgi:app"
GUNICORN = [sys.executable, "-m", "gunicorn", "--no-control-socket", "--workers", "2"]

# name: (command line up to the address to bind, how it is stopped, its Server header)
SERVERS = {
    "gunicorn-sync": ([*GUNICORN, "--worker-class", "sync", "--bind"], signal.SIGTERM, "gunicorn"),
    "gunicorn-gthread": (
        [*GUNICORN, "--worker-class", "gthread", "--threads", "4", "--bind"],
        signal.SIGTERM,
        "gunicorn",
    ),
    # waitress shuts down cleanly on Ctrl-C; SIGTERM would end it without atexit.
    "waitress": (
        [sys.executable, "-m", "waitress", "--threads", "4", "--listen"],
        signal.SIGINT,
        "waitress",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("server", SERVERS)
def test_visitors_order_and_the_tracker_gets_each_journey(
    server: str, tracker: Tracker, tmp_path: Path
) -> None:
    command, stop, header = SERVERS[server]
    port = free_port()
    env = {
        **os.environ,
        "BANGI_TRACKER_URL": tracker.url,
        "BANGI_OUTBOX": str(tmp_path / "landing-outbox.sqlite3"),  # shared by the workers
        "BANGI_ORDER_URL": f"{tracker.url}/network/orders",
    }
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"

    def journey(visitor: int) -> str:
        ad = {"source": server, "visitor": str(visitor)}
        with requests.Session() as browser:
            click_id, served_by = land(browser, url, ad)
            assert served_by.startswith(header)
            order(browser, url, click_id)
        tracked(tracker.events, click_id, ad, campaign_id=1)
        return click_id

    with running([*command, f"127.0.0.1:{port}", APP], env, log) as process:
        wait_for_port(port, process, log)
        with ThreadPoolExecutor(4) as visitors:  # at the same time, on several workers
            click_ids = list(visitors.map(journey, range(8)))
        os.killpg(process.pid, stop)
        assert process.wait(timeout=20) == 0, log.read_text()

    assert len(set(click_ids)) == 8
    assert len(tracker.events(type="click")) == len(tracker.events(type="lead")) == 8
    assert "Traceback" not in log.read_text()
