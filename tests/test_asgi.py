"""The ASGI door in real servers: Starlette and FastAPI landings under uvicorn and hypercorn.

The same journey as under WSGI, over HTTP: the click with the URL's
parameters and the cookie, the field in every form of an HTML page (whole or
streamed in pieces) and in no other response, the lead from a form POST with
the app receiving the very bytes sent, the relay.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .conftest import Tracker
from .utils import SUB1, eventually, free_port, running, wait_for_port

RELAY = "/bangi/postback"
RELAY_SECRET = "asgi-relay-secret-0123456"

SERVERS = {
    "uvicorn-starlette": [sys.executable, "-m", "uvicorn", "tests.asgi_landing:starlette_app"],
    "uvicorn-fastapi": [sys.executable, "-m", "uvicorn", "tests.asgi_landing:fastapi_app"],
    "hypercorn-starlette": [sys.executable, "-m", "hypercorn", "tests.asgi_landing:starlette_app"],
}


@pytest.fixture(params=list(SERVERS))
def served(request: pytest.FixtureRequest, tracker: Tracker, tmp_path: Path) -> Iterator[str]:
    """The landing's URL, served in a real process by the server named in the test's id."""
    port = free_port()
    command = SERVERS[request.param]
    address = ["--bind", f"127.0.0.1:{port}"] if "hypercorn" in command[2] else [
        "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    env = {
        **os.environ,
        "BANGI_TRACKER_URL": tracker.url,
        "BANGI_OUTBOX": str(tmp_path / "outbox.sqlite3"),
    }
    log = tmp_path / "server.log"
    with running([*command, *address], env, log) as process:
        wait_for_port(port, process, log)
        yield f"http://127.0.0.1:{port}"
    assert "Traceback" not in log.read_text(), log.read_text()


def journey_events(tracker: Tracker, click_id: str, kinds: set[str]) -> list[dict[str, object]]:
    def found() -> list[dict[str, object]] | None:
        events = tracker.events(clickId=click_id)
        return events if kinds <= {e["type"] for e in events} else None

    return eventually(found)


@pytest.mark.slow
def test_a_visitor_lands_orders_and_the_tracker_gets_both(served: str, tracker: Tracker) -> None:
    with requests.Session() as visitor:
        page = visitor.get(served + "/?source=asgi&ad_name=video-01", timeout=10)
        assert "HttpOnly" in page.headers["Set-Cookie"]
        [click_id, also] = SUB1.findall(page.text)  # both forms
        assert also == click_id and f'<p id="seen">{click_id}</p>' in page.text
        assert int(page.headers["Content-Length"]) == len(page.content)
        streamed = visitor.get(served + "/stream", timeout=10)
        assert SUB1.findall(streamed.text) == [click_id, click_id]
        assert "Content-Length" not in streamed.headers
        assert "sub1" not in visitor.get(served + "/api", timeout=10).text
        assert b"sub1" not in visitor.get(served + "/gzip", timeout=10).content
        body = f"sub1={click_id}&name=Ana&phone=%2B55+11+99999+0000&offer=ring"
        order = visitor.post(
            served + "/submit",
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=10,
        )
        assert order.content == body.encode()  # the app got every byte
        assert order.headers["X-Click-Id"] == click_id
    events = journey_events(tracker, click_id, {"click", "lead"})
    [click] = [e for e in events if e["type"] == "click"]
    [lead] = [e for e in events if e["type"] == "lead"]
    assert click["params"]["source"] == "asgi" and click["params"]["ad_name"] == "video-01"  # type: ignore[index]
    assert lead["params"] == {  # type: ignore[comparison-overlap]
        "offer": "ring",
        "withheldFields": ["name", "phone"],
        "eventId": lead["params"]["eventId"],  # type: ignore[index]
    }


@pytest.mark.slow
def test_a_multipart_order_reaches_the_app_intact_and_is_the_lead(
    served: str, tracker: Tracker
) -> None:
    with requests.Session() as visitor:
        [click_id, _] = SUB1.findall(visitor.get(served + "/", timeout=10).text)
        request = requests.Request(
            "POST",
            served + "/submit",
            data={"sub1": click_id, "offer": "ring"},
            files={"photo": ("a.txt", b"file body")},
        ).prepare()
        answer = visitor.send(request, timeout=10)
        assert answer.content == request.body
        rejected = visitor.post(served + "/submit", data={"sub1": click_id, "x": "reject"})
        assert rejected.status_code == 400
    [lead] = [e for e in journey_events(tracker, click_id, {"lead"}) if e["type"] == "lead"]
    assert lead["params"]["offer"] == "ring"  # type: ignore[index]


@pytest.mark.slow
def test_the_relay_answers_and_the_status_reaches_the_tracker(
    served: str, tracker: Tracker
) -> None:
    with requests.Session() as visitor:
        [click_id, _] = SUB1.findall(visitor.get(served + "/", timeout=10).text)
    params = {"secret": RELAY_SECRET, "clickId": click_id, "status": "accept", "payout": "9"}
    answer = requests.get(served + RELAY, params=params, timeout=10)
    assert answer.status_code == 202 and answer.json()["clickId"] == click_id
    wrong = requests.get(served + RELAY, params={**params, "secret": "wrong"}, timeout=10)
    assert wrong.status_code == 403
    events = journey_events(tracker, click_id, {"postback"})
    [status] = [e for e in events if e["type"] == "postback"]
    assert (status["params"]["status"], status["params"]["payout"]) == ("accept", 9)  # type: ignore[index]
