"""The tracker as users run it: the CLI on a real port, restarts, concurrent writers."""

from __future__ import annotations

import logging
import random
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from bangi_landing.tracker.app import EXPOSED_WARNING

from .conftest import Tracker
from .utils import Sink, live_server


def tracker_command(db: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "bangi_landing", "tracker", "--db", str(db), *options]


@contextmanager
def tracker_process(db: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``bangi-landing tracker`` on a free port; yields the process and its URL.

    Its standard error goes to ``db`` with the suffix ``.log``.
    """
    with db.with_suffix(".log").open("w") as log:
        process = subprocess.Popen(
            tracker_command(db, "--port", "0"), stdout=subprocess.PIPE, stderr=log, text=True
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(r"Tracker: (http://127\.0\.0\.1:\d+)/\n", line)
        assert match, line
        yield process, match.group(1)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()


def stop(process: subprocess.Popen[str], sig: signal.Signals) -> str:
    process.send_signal(sig)
    assert process.wait(timeout=10) == 0
    assert process.stdout is not None
    return process.stdout.read()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_tracker_stops_cleanly_and_keeps_its_data_across_restarts(
    tmp_path: Path, sig: signal.Signals
) -> None:
    db = tmp_path / "tracker.sqlite3"
    click_id = str(uuid.uuid4())
    with tracker_process(db) as (process, url):
        response = requests.post(
            f"{url}/api/v2/track/click", json={"clickId": click_id, "campaignId": 3}, timeout=5
        )
        assert response.status_code == 201
        assert "Shutting down." in stop(process, sig)
    with tracker_process(db) as (process, url):
        events = requests.get(f"{url}/api/v2/events", timeout=5).json()["events"]
        assert [(e["type"], e["clickId"]) for e in events] == [("click", click_id)]
        again = requests.post(
            f"{url}/api/v2/track/click", json={"clickId": click_id, "campaignId": 3}, timeout=5
        )
        assert again.status_code == 200  # still known after the restart
        stop(process, signal.SIGTERM)


def test_tracker_command_defaults() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bangi_landing", "tracker", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert "127.0.0.1" in result.stdout
    assert "5001" in result.stdout
    assert "bangi-tracker.sqlite3" in result.stdout


def test_eight_threads_posting_the_same_thousand_clicks_leave_exactly_a_thousand(
    tracker: Tracker,
) -> None:
    click_ids = [str(uuid.uuid4()) for _ in range(1000)]

    def post_all(seed: int) -> list[int]:
        order = click_ids[:]
        random.Random(seed).shuffle(order)
        with requests.Session() as http:
            return [
                http.post(
                    f"{tracker.url}/api/v2/track/click",
                    json={"clickId": click_id, "campaignId": 1},
                    timeout=30,
                ).status_code
                for click_id in order
            ]

    with ThreadPoolExecutor(8) as pool:
        statuses = [status for result in pool.map(post_all, range(8)) for status in result]

    assert statuses.count(201) == 1000
    assert statuses.count(200) == 7000
    assert tracker.store.count("click") == 1000
    assert {e["clickId"] for e in tracker.store.events(limit=10_000)} == set(click_ids)


def test_the_request_log_never_shows_secret_parameters() -> None:
    from bangi_landing.serving import RedactSecrets

    record = logging.LogRecord(
        "werkzeug", logging.INFO, __file__, 1, '%s - - "%s" %s', (
            "127.0.0.1", "GET /api/site/click.json?token=T0K&click=1&Secret=S3C HTTP/1.1", "200",
        ), None,
    )  # fmt: skip
    assert RedactSecrets().filter(record)
    assert record.getMessage() == (
        '127.0.0.1 - - "GET /api/site/click.json?token=<redacted>&click=1&Secret=<redacted>'
        ' HTTP/1.1" 200'
    )


def test_the_tracker_warns_when_it_listens_beyond_loopback(tmp_path: Path) -> None:
    db = tmp_path / "tracker.sqlite3"
    # A documentation address (RFC 5737), on no interface: the warning comes before
    # the bind fails, so nothing ever listens beyond loopback.
    exposed = subprocess.run(
        tracker_command(db, "--host", "192.0.2.1", "--port", "0"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    with tracker_process(db) as (_process, url):
        assert requests.get(f"{url}/", timeout=5).status_code == 200

    assert exposed.returncode != 0  # could not bind
    assert EXPOSED_WARNING in exposed.stderr
    assert "no authentication" in EXPOSED_WARNING
    assert "Warning" not in db.with_suffix(".log").read_text()  # on 127.0.0.1


def test_the_networks_postbacks_go_to_the_tracker_itself_whatever_the_host_header(
    tmp_path: Path,
) -> None:
    sink = Sink()
    click_id = str(uuid.uuid4())
    with live_server(sink) as sink_url, tracker_process(tmp_path / "t.sqlite3") as (_process, url):
        requests.post(
            f"{url}/api/v2/track/click", json={"clickId": click_id, "campaignId": 1}, timeout=5
        ).raise_for_status()
        order = requests.post(f"{url}/network/orders", data={"sub1": click_id}, timeout=5)
        pressed = requests.post(
            f"{url}/network/orders/{order.json()['id']}/postback",
            data={"status": "approved"},
            headers={"Host": sink_url.removeprefix("http://")},
            allow_redirects=False,
            timeout=15,
        )
        events = requests.get(f"{url}/api/v2/events?type=postback", timeout=5).json()["events"]

    assert pressed.status_code == 303
    assert sink.received == []
    assert [(event["clickId"], event["params"]["status"]) for event in events] == [
        (click_id, "approved")
    ]


def test_stopped_as_soon_as_it_prints_its_url_the_tracker_still_stops_cleanly(
    tmp_path: Path,
) -> None:
    """SIGTERM is handled from before the URL is printed (eight at once widen the window)."""
    processes = [
        subprocess.Popen(
            tracker_command(tmp_path / f"{n}.sqlite3", "--port", "0"),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for n in range(8)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().startswith("Tracker: ")
            process.send_signal(signal.SIGTERM)
        assert [process.wait(timeout=20) for process in processes] == [0] * 8
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            assert process.stdout is not None
            process.stdout.close()
