"""The tracker's fake AlterCPA Pro (seed 000's External sites endpoints), over real HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from bangi_landing.tracker import create_app
from bangi_landing.tracker.altercpa import TOKENS_ENV

from .conftest import Tracker
from .utils import raw_get, reference_server

TOKEN = "pro-site-token"
CLICK = "8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1"  # our clickId, the landing's exto
PRO_CLICK = "pro-click-7"  # Pro's click id from the deep link
XSS = "<script>alert(1)</script>"

# The seed's URLs, as the landing fills them in.
WAIT = f"token={TOKEN}&click={PRO_CLICK}&exto={CLICK}"
MOVE = f"token={TOKEN}&click={PRO_CLICK}&status={{status}}&auto=1&exto={CLICK}"


@pytest.fixture
def tracker_options() -> dict[str, Any]:
    """Here the tracker starts with TOKEN as the fake Pro's one site token."""
    return {"altercpa_tokens": [TOKEN]}


def call(tracker: Tracker, endpoint: str, query: str, method: str = "GET") -> requests.Response:
    return tracker.http.request(method, f"{tracker.url}/api/site/{endpoint}?{query}", timeout=5)


def ok(response: requests.Response) -> int:
    """The Pro lead id of a successful answer."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    lead_id: int = body["id"]
    return lead_id


def assert_refused(response: requests.Response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"status", "error"}
    assert body["status"] == "error"
    message: str = body["error"]
    for word in words:
        assert word in message
    return message


def leads(tracker: Tracker) -> list[tuple[str, str, str]]:
    return [(lead["click"], lead["exto"], lead["status"]) for lead in tracker.store.pro_leads()]


def pro_calls(tracker: Tracker, **filters: object) -> list[dict[str, Any]]:
    return tracker.events(type="altercpa", **filters)


# The two endpoints


def test_click_json_registers_a_waiting_lead_and_records_the_call(tracker: Tracker) -> None:
    query = f"token={TOKEN}&click=pro+click%2F7&exto={CLICK}"

    assert call(tracker, "click.json", query).json() == {"status": "ok", "id": 1}

    assert leads(tracker) == [("pro click/7", CLICK, "wait")]
    [event] = tracker.events()
    assert (event["type"], event["clickId"], event["campaignId"]) == ("altercpa", CLICK, None)
    assert event["params"] == {
        "endpoint": "click.json",
        "query": query,
        "click": "pro click/7",
        "exto": CLICK,
        "status": "wait",
        "result": "ok",
    }
    assert (event["status"], event["payout"], event["currency"]) == (None, None, None)


def test_status_json_moves_the_lead(tracker: Tracker) -> None:
    lead_id = ok(call(tracker, "click.json", WAIT))

    assert ok(call(tracker, "status.json", MOVE.format(status="hold"))) == lead_id
    assert ok(call(tracker, "status.json", MOVE.format(status="approve"))) == lead_id

    assert leads(tracker) == [(PRO_CLICK, CLICK, "approve")]
    last = pro_calls(tracker)[-1]
    assert last["params"] == {
        "endpoint": "status.json",
        "query": MOVE.format(status="approve"),
        "click": PRO_CLICK,
        "exto": CLICK,
        "status": "approve",
        "result": "ok",
    }


@pytest.mark.parametrize("status", ["hold", "approve", "cancel", "trash"])
def test_status_json_with_auto_creates_the_lead(tracker: Tracker, status: str) -> None:
    ok(call(tracker, "status.json", MOVE.format(status=status)))

    assert leads(tracker) == [(PRO_CLICK, CLICK, status)]


def test_status_json_without_auto_needs_the_lead(tracker: Tracker) -> None:
    query = f"token={TOKEN}&click={PRO_CLICK}&status=hold&exto={CLICK}"

    message = assert_refused(call(tracker, "status.json", query), 404, "no such lead", "auto=1")

    assert leads(tracker) == []
    [event] = pro_calls(tracker)
    assert (event["params"]["status"], event["params"]["result"]) == ("hold", message)


def test_status_json_without_auto_moves_an_existing_lead(tracker: Tracker) -> None:
    lead_id = ok(call(tracker, "click.json", WAIT))

    query = f"token={TOKEN}&click={PRO_CLICK}&status=cancel&auto=0&exto={CLICK}"
    assert ok(call(tracker, "status.json", query)) == lead_id

    assert leads(tracker) == [(PRO_CLICK, CLICK, "cancel")]


def test_repeated_click_json_is_the_same_lead(tracker: Tracker) -> None:
    first = ok(call(tracker, "click.json", WAIT))

    assert ok(call(tracker, "click.json", WAIT)) == first

    assert leads(tracker) == [(PRO_CLICK, CLICK, "wait")]
    assert [event["params"]["result"] for event in pro_calls(tracker)] == ["ok", "ok"]


def test_click_json_leaves_a_moved_lead_as_it_is(tracker: Tracker) -> None:
    lead_id = ok(call(tracker, "status.json", MOVE.format(status="approve")))

    assert ok(call(tracker, "click.json", WAIT)) == lead_id

    assert leads(tracker) == [(PRO_CLICK, CLICK, "approve")]


def test_a_lead_is_one_click_and_exto_pair(tracker: Tracker) -> None:
    other = str(uuid.uuid4())
    ids = {
        ok(call(tracker, "click.json", f"token={TOKEN}&click={click}&exto={exto}"))
        for click, exto in [(PRO_CLICK, CLICK), ("another-click", CLICK), (PRO_CLICK, other)]
    }

    assert len(ids) == 3
    assert len(leads(tracker)) == 3


def test_concurrent_click_json_for_one_pair_make_one_lead(tracker: Tracker) -> None:
    def register(_: int) -> int:
        return ok(requests.get(f"{tracker.url}/api/site/click.json?{WAIT}", timeout=30))

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(register, range(80)))

    assert len(ids) == 1
    assert leads(tracker) == [(PRO_CLICK, CLICK, "wait")]
    assert len(pro_calls(tracker, limit=1000)) == 80


# Tokens


@pytest.mark.parametrize(
    "token", ["nope", f"{TOKEN}-2", TOKEN[:-1], TOKEN.upper(), "%C3%A9t%C3%A9", "x" * 500]
)
def test_wrong_token_is_forbidden_and_redacted(tracker: Tracker, token: str) -> None:
    query = f"token={token}&click={PRO_CLICK}&exto={CLICK}"

    response = call(tracker, "click.json", query)

    assert response.status_code == 403
    assert response.json() == {"status": "error", "error": "Forbidden"}
    assert leads(tracker) == []
    [event] = pro_calls(tracker)
    assert event["params"]["query"] == f"token=REDACTED&click={PRO_CLICK}&exto={CLICK}"
    assert event["params"]["result"] == "Forbidden"
    assert token not in json.dumps(tracker.events())


@pytest.mark.parametrize("query", [f"click={PRO_CLICK}&exto={CLICK}", f"token=&exto={CLICK}"])
def test_missing_token_is_forbidden(tracker: Tracker, query: str) -> None:
    assert_refused(call(tracker, "status.json", query), 403, "Forbidden")

    assert pro_calls(tracker)[0]["params"]["query"] == query


def test_token_given_twice_is_refused_and_both_redacted(tracker: Tracker) -> None:
    query = f"token={TOKEN}&token=other-site&click={PRO_CLICK}&exto={CLICK}"

    assert_refused(call(tracker, "click.json", query), 400, "token must be given once")

    recorded = pro_calls(tracker)[0]["params"]["query"]
    assert recorded == f"token=REDACTED&token=REDACTED&click={PRO_CLICK}&exto={CLICK}"


def test_encoded_token_name_is_still_redacted(tracker: Tracker) -> None:
    target = b"/api/site/click.json?tok%%65n=secret-of-someone&click=c&exto=%s" % CLICK.encode()

    assert raw_get(tracker.url, target)[0] == 403

    assert pro_calls(tracker)[0]["params"]["query"] == f"tok%65n=REDACTED&click=c&exto={CLICK}"


@pytest.mark.parametrize("tracker_options", [{}], ids=["no-tokens"])
def test_no_token_configured_forbids_every_call(tracker: Tracker) -> None:
    for query in (WAIT, f"token=&click={PRO_CLICK}&exto={CLICK}"):
        assert_refused(call(tracker, "click.json", query), 403, "Forbidden")


def started_after(request: pytest.FixtureRequest) -> Tracker:
    """The ``tracker`` fixture, started only now: after the test has set the environment."""
    tracker: Tracker = request.getfixturevalue("tracker")
    return tracker


@pytest.mark.parametrize("tracker_options", [{}], ids=["no-argument"])
def test_tokens_from_the_environment(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tracker_options: object
) -> None:
    monkeypatch.setenv(TOKENS_ENV, " first , second,,")

    tracker = started_after(request)

    for token in ("first", "second"):
        ok(call(tracker, "click.json", f"token={token}&click={PRO_CLICK}&exto={CLICK}"))
    assert_refused(call(tracker, "click.json", f"token=&click=c&exto={CLICK}"), 403)


@pytest.mark.parametrize("tracker_options", [{"altercpa_tokens": ["from-arg"]}], ids=["arg"])
def test_tokens_argument_wins_over_the_environment(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tracker_options: object
) -> None:
    monkeypatch.setenv(TOKENS_ENV, "from-env")

    tracker = started_after(request)

    ok(call(tracker, "click.json", f"token=from-arg&click={PRO_CLICK}&exto={CLICK}"))
    assert_refused(call(tracker, "click.json", f"token=from-env&click=c&exto={CLICK}"), 403)


def test_tokens_argument_must_not_be_one_string(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="not one string"):
        create_app(tmp_path / "tracker.sqlite3", altercpa_tokens=TOKEN)


def test_cli_altercpa_token_option(tmp_path: Path) -> None:
    command = [
        *(sys.executable, "-m", "bangi_landing", "tracker", "--port", "0"),
        *("--db", str(tmp_path / "tracker.sqlite3")),
        *("--altercpa-token", "first", "--altercpa-token", "second"),
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().removeprefix("Tracker: ").strip().rstrip("/")
            answers = [
                requests.get(
                    f"{url}/api/site/click.json?token={token}&click=c&exto={CLICK}", timeout=5
                ).status_code
                for token in ("first", "second", "third")
            ]
        finally:
            process.terminate()
            process.communicate(timeout=10)  # drain its goodbye: a closed pipe fails its exit
    assert answers == [200, 200, 403]


# Invalid calls: each a 4xx in Pro's shape, recorded, and no lead


@pytest.mark.parametrize(
    ("endpoint", "query", "words"),
    [
        ("click.json", f"token={TOKEN}&exto={CLICK}", "click is required"),
        ("click.json", f"token={TOKEN}&click=&exto={CLICK}", "click is required"),
        ("click.json", f"token={TOKEN}&click=%20&exto={CLICK}", "click is required"),
        ("click.json", f"token={TOKEN}&click={PRO_CLICK}", "exto is required"),
        ("status.json", f"token={TOKEN}&click={PRO_CLICK}&exto=&auto=1", "exto is required"),
        ("status.json", f"token={TOKEN}&click={PRO_CLICK}&auto=1&exto={CLICK}", "status is"),
    ],
    ids=["no-click", "empty-click", "blank-click", "no-exto", "empty-exto", "no-status"],
)
def test_missing_parameter(tracker: Tracker, endpoint: str, query: str, words: str) -> None:
    message = assert_refused(call(tracker, endpoint, query), 400, words)

    assert leads(tracker) == []
    [event] = pro_calls(tracker)
    assert (event["params"]["query"], event["params"]["result"]) == (query, message)


@pytest.mark.parametrize("status", ["approved", "APPROVE", "wait", "accept", XSS])
def test_unknown_status(tracker: Tracker, status: str) -> None:
    response = call(tracker, "status.json", MOVE.format(status=status))

    message = assert_refused(response, 400, "status must be one of hold, approve, cancel, trash")
    assert status not in message.removeprefix("status must be one of ")
    assert leads(tracker) == []
    assert pro_calls(tracker)[0]["params"]["status"] is None


@pytest.mark.parametrize(
    ("name", "query"),
    [
        ("click", f"token={TOKEN}&click=a&click=b&status=hold&auto=1&exto={CLICK}"),
        ("exto", f"token={TOKEN}&click=a&status=hold&auto=1&exto={CLICK}&exto={uuid.uuid4()}"),
        ("status", f"token={TOKEN}&click=a&status=hold&status=trash&auto=1&exto={CLICK}"),
        ("auto", f"token={TOKEN}&click=a&status=hold&auto=1&auto=1&exto={CLICK}"),
    ],
)
def test_duplicated_parameter(tracker: Tracker, name: str, query: str) -> None:
    message = assert_refused(call(tracker, "status.json", query), 400, f"{name} must be given once")

    assert leads(tracker) == []
    assert pro_calls(tracker)[0]["params"]["result"] == message


def test_auto_other_than_zero_or_one(tracker: Tracker) -> None:
    query = f"token={TOKEN}&click={PRO_CLICK}&status=hold&auto=yes&exto={CLICK}"

    message = assert_refused(call(tracker, "status.json", query), 400, "auto must be 1")

    assert "yes" not in message
    assert leads(tracker) == []


def test_query_that_is_not_utf8(tmp_path: Path) -> None:
    # Werkzeug's server re-encodes raw query bytes as UTF-8; the stdlib's passes them on, as
    # gunicorn does.
    app = create_app(tmp_path / "tracker.sqlite3", altercpa_tokens=[TOKEN])
    store = app.extensions["bangi_tracker"]
    try:
        with reference_server(app) as url:
            target = b"/api/site/click.json?token=%s&click=\xff&exto=%s" % (
                TOKEN.encode(),
                CLICK.encode(),
            )
            status, body = raw_get(url, target)
        [event] = store.events(type="altercpa")
    finally:
        store.close()

    assert status == 400
    assert body["status"] == "error"
    assert "UTF-8" in body["error"]
    assert event["params"]["query"] == f"token=REDACTED&click=\\xff&exto={CLICK}"
    assert (event["params"]["click"], event["clickId"]) == (None, None)


@pytest.mark.parametrize(
    "target", [b"/api/v2/track/lead?clickId=\xff", b"/api/v2/events?type=\xff"]
)
def test_the_tracker_api_refuses_a_query_that_is_not_utf8(tmp_path: Path, target: bytes) -> None:
    app = create_app(tmp_path / "tracker.sqlite3")
    try:
        with reference_server(app) as url:
            status, body = raw_get(url, target)
    finally:
        app.extensions["bangi_tracker"].close()
    assert (status, body) == (400, {"error": body["error"]})
    assert "UTF-8" in body["error"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_wrong_method(tracker: Tracker, method: str) -> None:
    response = call(tracker, "click.json", WAIT, method=method)

    message = assert_refused(response, 405, method, "GET")
    assert "GET" in response.headers["Allow"]
    assert leads(tracker) == []
    [event] = pro_calls(tracker)
    assert event["params"]["result"] == message
    assert event["clickId"] == CLICK


def test_unknown_endpoint_is_not_recorded(tracker: Tracker) -> None:
    assert_refused(call(tracker, "lead.json", WAIT), 404, "/api/site/click.json")

    assert tracker.events() == []


# Events and the report


def test_pro_calls_interleave_with_the_journey(tracker: Tracker) -> None:
    response = tracker.http.post(
        f"{tracker.url}/api/v2/track/click", json={"clickId": CLICK, "campaignId": 42}, timeout=5
    )
    assert response.status_code == 201
    ok(call(tracker, "click.json", WAIT))
    lead = tracker.http.get(f"{tracker.url}/api/v2/track/lead?clickId={CLICK}", timeout=5)
    assert lead.status_code == 201
    ok(call(tracker, "status.json", MOVE.format(status="approve")))
    ok(call(tracker, "click.json", f"token={TOKEN}&click=x&exto={uuid.uuid4()}"))

    assert [e["type"] for e in tracker.events(clickId=CLICK)] == [
        "click",
        "altercpa",
        "lead",
        "altercpa",
    ]
    mine = pro_calls(tracker, clickId=CLICK)
    assert [(e["params"]["status"], e["campaignId"]) for e in mine] == [
        ("wait", 42),
        ("approve", 42),
    ]
    first = tracker.http.get(
        f"{tracker.url}/api/v2/events", params={"type": "altercpa", "limit": 2}, timeout=5
    ).json()
    rest = pro_calls(tracker, after=first["next"])
    assert [e["id"] for e in first["events"] + rest] == [e["id"] for e in pro_calls(tracker)]
    assert len(rest) == 1


def test_exto_that_is_not_a_click_id_has_no_journey(tracker: Tracker) -> None:
    ok(call(tracker, "click.json", f"token={TOKEN}&click={PRO_CLICK}&exto=order-17"))
    ok(call(tracker, "click.json", f"token={TOKEN}&click={PRO_CLICK}&exto={CLICK.upper()}"))

    assert [e["clickId"] for e in pro_calls(tracker)] == [None, CLICK]
    assert pro_calls(tracker)[1]["params"]["exto"] == CLICK.upper()


def test_report_shows_pro_calls_escaped_with_their_token_redacted(tracker: Tracker) -> None:
    ok(
        call(
            tracker, "status.json", f"token={TOKEN}&click={XSS}&status=approve&auto=1&exto={CLICK}"
        )
    )
    call(tracker, "click.json", f"token=someone-elses-token&click={PRO_CLICK}&exto={CLICK}")
    assert TOKEN in json.dumps(tracker.events())  # the API keeps the right one

    for path in ("/", f"/journeys/{CLICK}"):
        html = tracker.http.get(f"{tracker.url}{path}", timeout=5).text

        assert 'class="badge type-altercpa">altercpa</span>' in html
        assert 'class="badge status-accept">approve</span>' in html
        assert 'class="badge status-refused">Forbidden</span>' in html
        assert "token=REDACTED" in html
        assert TOKEN not in html
        assert "someone-elses-token" not in html
        assert XSS not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


GIANT = "9" * 5000


@pytest.mark.parametrize(
    ("endpoint", "query", "status", "words"),
    [
        ("click.json", f"token={TOKEN}&click={GIANT}&exto={CLICK}", 400, "click must be at most"),
        ("click.json", f"token={TOKEN}&click={PRO_CLICK}&exto={GIANT}", 400, "exto must be at"),
        ("status.json", f"token={TOKEN}&click={GIANT}&status=hold&auto=1&exto=e", 400, "click"),
        ("status.json", f"token={TOKEN}&click=c&exto={'x' * 201}&status=hold&auto=1", 400, "exto"),
        ("status.json", f"token={TOKEN}&click=c&exto=e&status={GIANT}&auto=1", 400, "status"),
        ("status.json", f"token={TOKEN}&click=c&exto=e&status=hold&auto={GIANT}", 400, "auto"),
        ("click.json", f"token={GIANT}&click=c&exto=e", 403, "Forbidden"),
        ("click.json", "token=%ED%B3%BF&click=c&exto=e", 403, "Forbidden"),
    ],
    ids=[
        "click-5000",
        "exto-5000",
        "status-click-5000",
        "exto-201",
        "status-5000",
        "auto-5000",
        "token-5000",
        "token-surrogate-bytes",
    ],
)
def test_crafted_calls_are_refused_and_recorded(
    tracker: Tracker, endpoint: str, query: str, status: int, words: str
) -> None:
    assert_refused(call(tracker, endpoint, query), status, words)

    assert tracker.store.pro_leads() == []
    [record] = tracker.events(type="altercpa")
    assert record["params"]["result"] != "ok"
    for path in ("/", f"/journeys/{CLICK}"):
        assert tracker.http.get(f"{tracker.url}{path}", timeout=5).status_code == 200


def test_escaped_bytes_that_are_not_text_stay_escaped(tracker: Tracker) -> None:
    """Percent-escapes of a surrogate or of bytes that are not UTF-8 are kept as sent."""
    ok(call(tracker, "click.json", f"token={TOKEN}&click=%ED%B3%BF&exto=%FF%00"))

    [lead] = tracker.store.pro_leads()
    assert (lead["click"], lead["exto"]) == ("%ED%B3%BF", "%FF\x00")
    assert tracker.http.get(f"{tracker.url}/", timeout=5).status_code == 200
