"""The bundled tracker's API, rule by rule, over real HTTP (seed 004)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests

from .conftest import Tracker

CLICK = "8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1"
MAPPER = {
    "parameter": "status",
    "values": {"approved": "accept", "pending": "expect", "rejected": "reject"},
}


def post_click(tracker: Tracker, body: Any, **kwargs: Any) -> requests.Response:
    return tracker.http.post(f"{tracker.url}/api/v2/track/click", json=body, timeout=5, **kwargs)


def click(tracker: Tracker, click_id: str = CLICK, campaign_id: int = 42, **extra: Any) -> None:
    response = post_click(tracker, {"clickId": click_id, "campaignId": campaign_id, **extra})
    assert response.status_code == 201, response.text


def put_campaign(tracker: Tracker, campaign_id: int = 42, **body: Any) -> requests.Response:
    body = {"name": "LatAm Ring", "statusMapper": MAPPER, "cost": 10, "currency": "USD", **body}
    return tracker.http.put(f"{tracker.url}/api/v2/campaigns/{campaign_id}", json=body, timeout=5)


def postback(tracker: Tracker, **params: Any) -> dict[str, Any]:
    response = tracker.http.get(
        f"{tracker.url}/api/v2/track/postback", params={"clickId": CLICK, **params}, timeout=5
    )
    assert response.status_code == 201, response.text
    [event] = tracker.events(type="postback")
    return event


def assert_error(response: requests.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    message = response.json()["error"]
    for word in words:
        assert word in message


# Click


def test_click_is_created_with_its_extra_parameters(tracker: Tracker) -> None:
    extra = {"source": "facebook", "ad_name": "video-01", "bid": 0.25, "test": True, "tags": ["a"]}
    response = post_click(tracker, {"clickId": CLICK, "campaignId": 42, **extra})
    assert response.status_code == 201
    [event] = tracker.events()
    assert event["type"] == "click"
    assert event["clickId"] == CLICK
    assert event["campaignId"] == 42
    assert event["params"] == extra  # JSON keeps its types
    assert event["receivedAt"].endswith("Z")


def test_click_id_in_any_case_is_stored_lowercase(tracker: Tracker) -> None:
    click(tracker, CLICK.upper())
    assert tracker.events()[0]["clickId"] == CLICK


def test_campaign_id_as_digit_string_is_accepted(tracker: Tracker) -> None:
    assert post_click(tracker, {"clickId": CLICK, "campaignId": "42"}).status_code == 201
    assert tracker.events()[0]["campaignId"] == 42


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "OPTIONS"])
def test_click_accepts_only_post(tracker: Tracker, method: str) -> None:
    response = tracker.http.request(method, f"{tracker.url}/api/v2/track/click", timeout=5)
    assert_error(response, 405, "POST")
    assert response.headers["Allow"] == "POST"


def test_click_body_that_is_not_json(tracker: Tracker) -> None:
    response = post_click(tracker, None, data=b"clickId=" + CLICK.encode())
    assert_error(response, 400, "JSON")


@pytest.mark.parametrize("body", [b'["%s", 42]' % CLICK.encode(), b'"click"', b"42", b"null"])
def test_click_body_that_is_not_an_object(tracker: Tracker, body: bytes) -> None:
    response = post_click(tracker, None, data=body, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "JSON object")


def test_click_with_empty_body(tracker: Tracker) -> None:
    assert_error(post_click(tracker, None), 400, "empty")


def test_click_rejects_nan(tracker: Tracker) -> None:
    data = f'{{"clickId": "{CLICK}", "campaignId": 42, "bid": NaN}}'
    response = post_click(tracker, None, data=data, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "NaN")


def test_click_rejects_numbers_out_of_range(tracker: Tracker) -> None:
    data = f'{{"clickId": "{CLICK}", "campaignId": 42, "bid": 1e999}}'
    response = post_click(tracker, None, data=data, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "out of range")
    assert tracker.events() == []


def test_click_without_click_id(tracker: Tracker) -> None:
    assert_error(post_click(tracker, {"campaignId": 42}), 400, "clickId is required")


def test_click_with_snake_case_click_id(tracker: Tracker) -> None:
    response = post_click(tracker, {"click_id": CLICK, "campaignId": 42})
    assert_error(response, 400, "clickId", "camelCase", "click_id")


def test_click_with_snake_case_campaign_id(tracker: Tracker) -> None:
    response = post_click(tracker, {"clickId": CLICK, "campaign_id": 42})
    assert_error(response, 400, "campaignId", "camelCase", "campaign_id")


def test_click_without_campaign_id(tracker: Tracker) -> None:
    assert_error(post_click(tracker, {"clickId": CLICK}), 400, "campaignId is required")


@pytest.mark.parametrize(
    "click_id", ["", "not-a-uuid", CLICK[:-1], "{" + CLICK + "}", CLICK.replace("-", ""), 42, None]
)
def test_click_id_must_be_a_uuid(tracker: Tracker, click_id: Any) -> None:
    assert_error(post_click(tracker, {"clickId": click_id, "campaignId": 42}), 400, "UUID")


@pytest.mark.parametrize("campaign_id", [0, -1, 1.5, True, "abc", "", None, 2**63, [42]])
def test_campaign_id_must_be_a_positive_integer(tracker: Tracker, campaign_id: Any) -> None:
    response = post_click(tracker, {"clickId": CLICK, "campaignId": campaign_id})
    assert_error(response, 400, "campaignId", "positive integer")


def test_repeated_click_stores_nothing_new(tracker: Tracker) -> None:
    click(tracker, source="first")
    response = post_click(tracker, {"clickId": CLICK.upper(), "campaignId": 42, "source": "again"})
    assert response.status_code == 200
    assert response.json()["status"] == "duplicate"
    [event] = tracker.events()
    assert event["params"] == {"source": "first"}


def test_click_for_unknown_campaign_creates_a_bare_campaign(tracker: Tracker) -> None:
    click(tracker, campaign_id=77)
    response = tracker.http.get(f"{tracker.url}/api/v2/campaigns/77", timeout=5)
    assert response.status_code == 200
    assert response.json() == {
        "id": 77,
        "name": None,
        "statusMapper": None,
        "cost": None,
        "currency": None,
    }


def test_repeated_click_for_another_campaign_creates_no_campaign(tracker: Tracker) -> None:
    click(tracker, campaign_id=1)
    assert post_click(tracker, {"clickId": CLICK, "campaignId": 2}).status_code == 200
    assert tracker.http.get(f"{tracker.url}/api/v2/campaigns/2", timeout=5).status_code == 404


def test_click_keeps_an_existing_campaign(tracker: Tracker) -> None:
    put_campaign(tracker)
    click(tracker)
    assert tracker.http.get(f"{tracker.url}/api/v2/campaigns/42", timeout=5).json()["name"]


# Lead


def test_lead_by_get_keeps_values_as_strings(tracker: Tracker) -> None:
    click(tracker)
    response = tracker.http.get(
        f"{tracker.url}/api/v2/track/lead",
        params={"clickId": CLICK, "offer_id": "456", "source": "landing"},
        timeout=5,
    )
    assert response.status_code == 201
    [lead] = tracker.events(type="lead")
    assert lead["params"] == {"offer_id": "456", "source": "landing"}
    assert lead["campaignId"] == 42


def test_lead_by_post_json_keeps_types(tracker: Tracker) -> None:
    click(tracker)
    body = {"clickId": CLICK, "offer_id": 456, "vip": False, "items": [1, 2]}
    response = tracker.http.post(f"{tracker.url}/api/v2/track/lead", json=body, timeout=5)
    assert response.status_code == 201
    assert tracker.events(type="lead")[0]["params"] == {
        "offer_id": 456,
        "vip": False,
        "items": [1, 2],
    }


def test_lead_by_form_encoded_post(tracker: Tracker) -> None:
    response = tracker.http.post(
        f"{tracker.url}/api/v2/track/lead", data={"clickId": CLICK, "offer_id": "456"}, timeout=5
    )
    assert response.status_code == 201
    assert tracker.events(type="lead")[0]["params"] == {"offer_id": "456"}


def test_lead_repeated_query_parameter_keeps_every_value(tracker: Tracker) -> None:
    tracker.http.get(
        f"{tracker.url}/api/v2/track/lead?clickId={CLICK}&tag=a&tag=b", timeout=5
    ).raise_for_status()
    assert tracker.events(type="lead")[0]["params"] == {"tag": ["a", "b"]}


def test_lead_click_id_given_twice(tracker: Tracker) -> None:
    response = tracker.http.get(
        f"{tracker.url}/api/v2/track/lead?clickId={CLICK}&clickId={CLICK}", timeout=5
    )
    assert_error(response, 400, "once")


def test_lead_without_click_id(tracker: Tracker) -> None:
    response = tracker.http.get(f"{tracker.url}/api/v2/track/lead?offer_id=1", timeout=5)
    assert_error(response, 400, "clickId is required")


def test_lead_with_snake_case_click_id(tracker: Tracker) -> None:
    response = tracker.http.get(f"{tracker.url}/api/v2/track/lead?click_id={CLICK}", timeout=5)
    assert_error(response, 400, "camelCase")


def test_lead_with_invalid_click_id(tracker: Tracker) -> None:
    response = tracker.http.get(f"{tracker.url}/api/v2/track/lead?clickId=123", timeout=5)
    assert_error(response, 400, "UUID")


def test_lead_with_unsupported_body_type(tracker: Tracker) -> None:
    response = tracker.http.post(
        f"{tracker.url}/api/v2/track/lead",
        data=f"clickId={CLICK}",
        headers={"Content-Type": "text/plain"},
        timeout=5,
    )
    assert_error(response, 415, "application/json")


def test_lead_accepts_only_get_and_post(tracker: Tracker) -> None:
    response = tracker.http.put(f"{tracker.url}/api/v2/track/lead", json={}, timeout=5)
    assert_error(response, 405)
    assert "POST" in response.headers["Allow"]


def test_lead_without_a_click_has_no_campaign(tracker: Tracker) -> None:
    tracker.http.get(
        f"{tracker.url}/api/v2/track/lead?clickId={CLICK}", timeout=5
    ).raise_for_status()
    [lead] = tracker.events()
    assert lead["campaignId"] is None


def test_repeated_event_id_is_stored_once_per_type(tracker: Tracker) -> None:
    for path in ("lead", "lead", "postback", "postback"):
        response = tracker.http.post(
            f"{tracker.url}/api/v2/track/{path}",
            json={"clickId": CLICK, "eventId": "e-1"},
            timeout=5,
        )
        assert response.status_code in (200, 201)
    assert [event["type"] for event in tracker.events()] == ["lead", "postback"]
    assert tracker.events()[0]["params"] == {"eventId": "e-1"}


def test_click_with_a_stored_event_id_is_not_stored_again(tracker: Tracker) -> None:
    click(tracker, eventId="e-1")
    response = post_click(
        tracker, {"clickId": str(uuid.uuid4()), "campaignId": 42, "eventId": "e-1"}
    )
    assert response.status_code == 200
    assert len(tracker.events()) == 1


@pytest.mark.parametrize("event_id", [{"id": 1}, ["e"], True, "", "x" * 201])
def test_event_id_must_be_a_short_string(tracker: Tracker, event_id: Any) -> None:
    response = tracker.http.post(
        f"{tracker.url}/api/v2/track/lead", json={"clickId": CLICK, "eventId": event_id}, timeout=5
    )
    assert_error(response, 400, "eventId")


# Postback and the Status Mapper


def test_postback_maps_status_and_takes_campaign_cost(tracker: Tracker) -> None:
    put_campaign(tracker)
    click(tracker)
    event = postback(tracker, status="approved", offer_id="456")
    assert event["status"] == "accept"
    assert (event["payout"], event["currency"]) == (10, "USD")
    assert event["params"] == {"status": "approved", "offer_id": "456"}


def test_postback_payout_and_currency_win_over_campaign_cost(tracker: Tracker) -> None:
    put_campaign(tracker)
    click(tracker)
    event = postback(tracker, status="pending", payout="12.5", currency="eur")
    assert (event["status"], event["payout"], event["currency"]) == ("expect", 12.5, "EUR")


def test_postback_payout_alone_takes_campaign_currency(tracker: Tracker) -> None:
    put_campaign(tracker)
    click(tracker)
    event = postback(tracker, status="approved", payout="7")
    assert (event["payout"], event["currency"]) == (7, "USD")


def test_postback_json_payout_number(tracker: Tracker) -> None:
    put_campaign(tracker)
    click(tracker)
    response = tracker.http.post(
        f"{tracker.url}/api/v2/track/postback",
        json={"clickId": CLICK, "status": "approved", "payout": 10, "offer_id": "456"},
        timeout=5,
    )
    assert response.status_code == 201
    [event] = tracker.events(type="postback")
    assert event["payout"] == 10
    assert event["params"]["payout"] == 10


def test_status_value_is_trimmed_and_case_insensitive(tracker: Tracker) -> None:
    put_campaign(tracker)
    click(tracker)
    assert postback(tracker, status="  APPROVED ")["status"] == "accept"


def test_internal_status_name_maps_to_itself(tracker: Tracker) -> None:
    put_campaign(tracker)
    click(tracker)
    assert postback(tracker, status="Reject")["status"] == "reject"


def test_unmatched_status_is_trash_without_payout(tracker: Tracker) -> None:
    put_campaign(tracker)
    click(tracker)
    event = postback(tracker, status="weird", payout="10")
    assert (event["status"], event["payout"], event["currency"]) == ("trash", None, None)


def test_postback_without_the_mapper_parameter_is_trash(tracker: Tracker) -> None:
    put_campaign(tracker)
    click(tracker)
    assert postback(tracker, state="approved")["status"] == "trash"


def test_campaign_without_mapper_gives_trash(tracker: Tracker) -> None:
    click(tracker)  # a bare campaign
    assert postback(tracker, status="accept")["status"] == "trash"


def test_mapper_reads_its_own_parameter(tracker: Tracker) -> None:
    put_campaign(tracker, statusMapper={"parameter": "goal", "values": {"sale": "accept"}})
    click(tracker)
    assert postback(tracker, goal="Sale", status="rejected")["status"] == "accept"


def test_rejected_postback_has_no_payout(tracker: Tracker) -> None:
    put_campaign(tracker)
    click(tracker)
    event = postback(tracker, status="rejected", payout="10", currency="USD")
    assert (event["status"], event["payout"], event["currency"]) == ("reject", None, None)


def test_postback_without_a_click_has_no_campaign_nor_payout(tracker: Tracker) -> None:
    put_campaign(tracker)
    event = postback(tracker, status="approved", payout="10")
    assert (event["campaignId"], event["status"], event["payout"]) == (None, "trash", None)


@pytest.mark.parametrize("payout", ["ten", "nan", "inf", ""])
def test_postback_payout_must_be_a_number(tracker: Tracker, payout: str) -> None:
    response = tracker.http.get(
        f"{tracker.url}/api/v2/track/postback",
        params={"clickId": CLICK, "payout": payout},
        timeout=5,
    )
    assert_error(response, 400, "payout")
    assert tracker.events() == []


def test_postback_currency_must_be_a_code(tracker: Tracker) -> None:
    response = tracker.http.get(
        f"{tracker.url}/api/v2/track/postback",
        params={"clickId": CLICK, "currency": "dollars"},
        timeout=5,
    )
    assert_error(response, 400, "currency")


# Campaigns


def test_put_campaign_creates_then_replaces(tracker: Tracker) -> None:
    created = put_campaign(tracker)
    assert created.status_code == 201
    assert created.json() == {
        "id": 42,
        "name": "LatAm Ring",
        "statusMapper": MAPPER,
        "cost": 10,
        "currency": "USD",
    }
    replaced = put_campaign(tracker, name="Renamed", statusMapper=None, cost=None, currency=None)
    assert replaced.status_code == 200
    fetched = tracker.http.get(f"{tracker.url}/api/v2/campaigns/42", timeout=5).json()
    assert fetched == {
        "id": 42,
        "name": "Renamed",
        "statusMapper": None,
        "cost": None,
        "currency": None,
    }


def test_get_unknown_campaign(tracker: Tracker) -> None:
    assert_error(tracker.http.get(f"{tracker.url}/api/v2/campaigns/9", timeout=5), 404, "campaign")


def test_campaign_id_in_path_must_be_positive_integer(tracker: Tracker) -> None:
    assert_error(
        tracker.http.get(f"{tracker.url}/api/v2/campaigns/abc", timeout=5), 400, "positive"
    )


def test_campaign_mapper_status_must_be_internal(tracker: Tracker) -> None:
    response = put_campaign(tracker, statusMapper={"parameter": "status", "values": {"ok": "paid"}})
    assert_error(response, 400, "accept, expect, reject, trash")


def test_campaign_mapper_needs_a_parameter(tracker: Tracker) -> None:
    response = put_campaign(tracker, statusMapper={"values": {}})
    assert_error(response, 400, "parameter")


def test_campaign_field_in_snake_case(tracker: Tracker) -> None:
    response = tracker.http.put(
        f"{tracker.url}/api/v2/campaigns/1", json={"status_mapper": MAPPER}, timeout=5
    )
    assert_error(response, 400, "status_mapper", "statusMapper")


def test_campaign_cost_must_not_be_negative(tracker: Tracker) -> None:
    assert_error(put_campaign(tracker, cost=-1), 400, "cost")


def test_invalid_campaign_is_not_stored(tracker: Tracker) -> None:
    put_campaign(tracker, currency="usdollar")
    assert tracker.http.get(f"{tracker.url}/api/v2/campaigns/42", timeout=5).status_code == 404


# Reading events


def test_events_filters_and_order(tracker: Tracker) -> None:
    other = str(uuid.uuid4())
    click(tracker)
    click(tracker, other, campaign_id=7)
    tracker.http.get(
        f"{tracker.url}/api/v2/track/lead?clickId={CLICK}", timeout=5
    ).raise_for_status()
    assert [e["type"] for e in tracker.events()] == ["click", "click", "lead"]
    assert [e["type"] for e in tracker.events(clickId=CLICK)] == ["click", "lead"]
    assert [e["clickId"] for e in tracker.events(campaignId=7)] == [other]
    assert [e["clickId"] for e in tracker.events(type="click")] == [CLICK, other]
    assert [e["type"] for e in tracker.events(clickId=CLICK, type="lead")] == ["lead"]
    event = tracker.events()[0]
    assert set(event) >= {
        "type",
        "clickId",
        "campaignId",
        "params",
        "status",
        "payout",
        "currency",
        "receivedAt",
    }


def test_events_pages_with_after_and_limit(tracker: Tracker) -> None:
    ids = [str(uuid.uuid4()) for _ in range(5)]
    for click_id in ids:
        click(tracker, click_id)
    url = f"{tracker.url}/api/v2/events"
    first = tracker.http.get(url, params={"limit": 3}, timeout=5).json()
    rest = tracker.http.get(url, params={"limit": 3, "after": first["next"]}, timeout=5).json()
    assert [e["clickId"] for e in first["events"] + rest["events"]] == ids
    assert rest["next"] is None


@pytest.mark.parametrize(
    "query", ["type=sale", "clickId=nope", "campaignId=-1", "limit=0", "limit=10001", "after=x"]
)
def test_events_with_invalid_filter(tracker: Tracker, query: str) -> None:
    assert_error(tracker.http.get(f"{tracker.url}/api/v2/events?{query}", timeout=5), 400)


# Limits and robustness


def test_body_over_64_kib_is_refused(tracker: Tracker) -> None:
    response = post_click(tracker, {"clickId": CLICK, "campaignId": 42, "pad": "x" * 65536})
    assert_error(response, 413, "64 KiB")
    assert tracker.events() == []


def test_chunked_body_over_64_kib_is_refused(tracker: Tracker) -> None:
    body = b'{"clickId": "%s", "campaignId": 42, "pad": "' % CLICK.encode() + b"x" * 70000 + b'"}'
    chunks = (body[i : i + 8192] for i in range(0, len(body), 8192))  # no Content-Length
    response = tracker.http.post(
        f"{tracker.url}/api/v2/track/click",
        data=chunks,
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert_error(response, 413)
    assert tracker.events() == []


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\xfe\x00", b"{", b'{"clickId": "%s"' % CLICK.encode(), b"[" * 5000, b"1e999999"],
    ids=["empty", "bad-utf", "open-brace", "unterminated", "deep-nesting", "huge-exponent"],
)
def test_garbage_bodies_get_a_4xx_never_a_500(tracker: Tracker, data: bytes) -> None:
    for path in ("click", "lead", "postback"):
        response = tracker.http.post(
            f"{tracker.url}/api/v2/track/{path}",
            data=data,
            headers={"Content-Type": "application/json"},
            timeout=5,
        )
        assert 400 <= response.status_code < 500, (path, data[:20], response.text)
        assert "error" in response.json()
    assert tracker.events() == []


def test_unknown_api_path_is_json_404(tracker: Tracker) -> None:
    assert_error(tracker.http.get(f"{tracker.url}/api/v2/track/sale", timeout=5), 404)


# Crafted input: a 4xx with a JSON error, never a 500, and nothing stored

SURROGATE = '"\\udfff"'  # a lone surrogate as JSON spells it: not text UTF-8 can encode
HUGE = "9" * 400  # far beyond SQLite's INTEGER and REAL
GIANT = "9" * 5000  # beyond what int() parses (4,300 digits)


def nested(levels: int) -> str:
    """A JSON value ``levels`` deep (arrays in arrays)."""
    return "[" * levels + "1" + "]" * levels


def send_raw(
    tracker: Tracker, method: str, path: str, body: str | None = None
) -> requests.Response:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    return tracker.http.request(
        method, f"{tracker.url}{path}", data=body, headers=headers, timeout=5
    )


def assert_refused(response: requests.Response, *words: str) -> None:
    assert 400 <= response.status_code < 500, response.text
    assert_error(response, response.status_code, *words)


CLICK_BODY = f'{{"clickId": "{CLICK}", "campaignId": 42, '


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (CLICK_BODY + f'"utm_content": {SURROGATE}}}', ["surrogate"]),
        (CLICK_BODY + f'{SURROGATE}: "x"}}', ["surrogate"]),
        (CLICK_BODY + '"tags": ["a", {"b": "\\ud800"}]}', ["surrogate"]),
        (CLICK_BODY + f'"d": {nested(975)}}}', ["32 levels"]),
        (CLICK_BODY + f'"d": {nested(32)}}}', ["32 levels"]),  # the body object is level 1
        (f'{{"clickId": "{CLICK}", "campaignId": {HUGE}}}', ["campaignId"]),
        (f'{{"clickId": "{CLICK}", "campaignId": "{GIANT}"}}', ["campaignId"]),
        (f'{{"clickId": "{CLICK}", "campaignId": {GIANT}}}', ["JSON"]),
        (CLICK_BODY + f'"eventId": {HUGE}}}', ["eventId"]),
    ],
    ids=[
        "surrogate-value",
        "surrogate-name",
        "surrogate-high-nested",
        "nested-975",
        "nested-33",
        "campaign-id-400-digits",
        "campaign-id-5000-digit-string",
        "campaign-id-5000-digits",
        "event-id-400-digits",
    ],
)
def test_click_refuses_crafted_input(tracker: Tracker, body: str, words: list[str]) -> None:
    assert_refused(send_raw(tracker, "POST", "/api/v2/track/click", body), *words)
    assert tracker.events() == []


def test_escaped_bytes_that_are_not_text_stay_escaped(tracker: Tracker) -> None:
    """A query's or form's percent-escapes that are not UTF-8 (a surrogate's) are kept as sent."""
    url = f"{tracker.url}/api/v2/track/lead"
    escaped = {"clickId": CLICK, "x": "%ED%B3%BF"}
    query = "&".join(f"{key}={value}" for key, value in escaped.items())
    assert tracker.http.get(f"{url}?{query}&eventId=1", timeout=5).status_code == 201
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert tracker.http.post(url, data=f"{query}&eventId=2", headers=form, timeout=5).ok

    assert [event["params"]["x"] for event in tracker.events()] == ["%ED%B3%BF"] * 2
    assert tracker.http.get(f"{tracker.url}/journeys/{CLICK}", timeout=5).status_code == 200


def test_json_nested_32_levels_deep_is_stored_and_shown(tracker: Tracker) -> None:
    click(tracker, d=json.loads(nested(31)))  # with the body object: 32 levels

    [event] = tracker.events()
    assert json.dumps(event["params"]["d"], separators=(",", ":")) == nested(31)
    for path in ("/", f"/journeys/{CLICK}"):
        assert tracker.http.get(f"{tracker.url}{path}", timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "words"),
    [
        ("POST", "/api/v2/track/lead", f'{{"clickId": "{CLICK}", "x": {SURROGATE}}}', ["surr"]),
        ("POST", "/api/v2/track/lead", f'{{"clickId": "{CLICK}", {SURROGATE}: 1}}', ["surr"]),
        ("POST", "/api/v2/track/lead", f'{{"clickId": "{CLICK}", "d": {nested(975)}}}', ["32"]),
        ("POST", "/api/v2/track/lead", f'{{"clickId": "{CLICK}", "eventId": {HUGE}}}', ["event"]),
        ("POST", "/api/v2/track/lead", f'{{"clickId": "{GIANT}"}}', ["UUID"]),
        ("GET", f"/api/v2/track/lead?clickId={CLICK}&eventId={GIANT}", None, ["eventId"]),
    ],
    ids=["surrogate-value", "surrogate-name", "nested-975", "event-id", "click-id", "query"],
)
def test_lead_refuses_crafted_input(
    tracker: Tracker, method: str, path: str, body: str | None, words: list[str]
) -> None:
    assert_refused(send_raw(tracker, method, path, body), *words)
    assert tracker.events() == []


POSTBACK = f"/api/v2/track/postback?clickId={CLICK}"


@pytest.mark.parametrize(
    ("method", "path", "body", "words"),
    [
        ("POST", POSTBACK, f'{{"clickId": "{CLICK}", "payout": {HUGE}}}', ["payout"]),
        ("POST", POSTBACK, f'{{"clickId": "{CLICK}", "payout": -{HUGE}}}', ["payout"]),
        ("POST", POSTBACK, f'{{"clickId": "{CLICK}", "payout": 1e300}}', ["payout"]),
        ("POST", POSTBACK, f'{{"clickId": "{CLICK}", "payout": 1000000000000}}', ["payout"]),
        ("GET", f"{POSTBACK}&payout={HUGE}", None, ["payout"]),
        ("GET", f"{POSTBACK}&payout=1e300", None, ["payout"]),
        ("GET", f"{POSTBACK}&payout=0.{GIANT}", None, ["payout"]),
        ("POST", POSTBACK, f'{{"clickId": "{CLICK}", "status": {SURROGATE}}}', ["surrogate"]),
        ("POST", POSTBACK, f'{{"clickId": "{CLICK}", "currency": {SURROGATE}}}', ["surrogate"]),
        ("POST", POSTBACK, f'{{"clickId": "{CLICK}", "d": {nested(975)}}}', ["32 levels"]),
    ],
    ids=[
        "payout-400-digits",
        "payout-minus-400-digits",
        "payout-1e300",
        "payout-10^12",
        "query-payout-400-digits",
        "query-payout-1e300",
        "query-payout-5000-decimals",
        "surrogate-status",
        "surrogate-currency",
        "nested-975",
    ],
)
def test_postback_refuses_crafted_input(
    tracker: Tracker, method: str, path: str, body: str | None, words: list[str]
) -> None:
    put_campaign(tracker)
    click(tracker)
    assert_refused(send_raw(tracker, method, path, body), *words)
    assert tracker.events(type="postback") == []


def test_payouts_and_costs_up_to_a_trillion_are_stored(tracker: Tracker) -> None:
    assert put_campaign(tracker, cost="999999999999.99").json()["cost"] == 999999999999.99
    click(tracker)
    assert postback(tracker, status="approved", payout="-999999999999")["payout"] == -999999999999


@pytest.mark.parametrize(
    ("method", "path", "body", "words"),
    [
        ("PUT", "/api/v2/campaigns/1", f'{{"cost": {HUGE}}}', ["cost"]),
        ("PUT", "/api/v2/campaigns/1", '{"cost": 1e300}', ["cost"]),
        ("PUT", "/api/v2/campaigns/1", f'{{"cost": "{HUGE}"}}', ["cost"]),
        ("PUT", "/api/v2/campaigns/1", f'{{"name": {SURROGATE}}}', ["surrogate"]),
        (
            "PUT",
            "/api/v2/campaigns/1",
            f'{{"statusMapper": {{"parameter": "s", "values": {{{SURROGATE}: "accept"}}}}}}',
            ["surrogate"],
        ),
        ("PUT", "/api/v2/campaigns/1", f'{{"statusMapper": {nested(975)}}}', ["32 levels"]),
        ("PUT", f"/api/v2/campaigns/{GIANT}", '{"name": "x"}', ["campaign id"]),
        ("PUT", f"/api/v2/campaigns/{2**63}", '{"name": "x"}', ["campaign id"]),
        ("GET", f"/api/v2/campaigns/{GIANT}", None, ["campaign id"]),
        ("GET", f"/api/v2/campaigns/{HUGE}", None, ["campaign id"]),
    ],
    ids=[
        "cost-400-digits",
        "cost-1e300",
        "cost-400-digit-string",
        "surrogate-name",
        "surrogate-mapper-value",
        "nested-975",
        "put-id-5000-digits",
        "put-id-2^63",
        "get-id-5000-digits",
        "get-id-400-digits",
    ],
)
def test_campaigns_refuse_crafted_input(
    tracker: Tracker, method: str, path: str, body: str | None, words: list[str]
) -> None:
    assert_refused(send_raw(tracker, method, path, body), *words)
    assert tracker.store.campaigns() == []


@pytest.mark.parametrize(
    "query",
    [
        f"limit={GIANT}",
        f"limit={HUGE}",
        f"after={GIANT}",
        f"after={2**63}",
        f"campaignId={GIANT}",
        "limit=\u0663",  # an Arabic-Indic three: a digit, not an ASCII one
        f"clickId={GIANT}",
    ],
)
def test_events_refuse_crafted_filters(tracker: Tracker, query: str) -> None:
    assert_refused(tracker.http.get(f"{tracker.url}/api/v2/events?{query}", timeout=5))


def test_ids_up_to_sqlites_largest_integer_are_accepted(tracker: Tracker) -> None:
    click(tracker, campaign_id=2**63 - 1)
    found = tracker.events(campaignId=2**63 - 1, limit=10_000)
    assert [event["campaignId"] for event in found] == [2**63 - 1]
    assert tracker.events(after=2**63 - 1) == []
