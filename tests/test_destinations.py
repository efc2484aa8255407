"""AlterCPA Pro and postback URL templates, against a real loopback server that answers as told."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from bangi_landing.destinations import AlterCPAPro, DeliveryError, PostbackTemplates
from bangi_landing.destinations.base import public_url
from bangi_landing.events import Event, journey_event_id

from .utils import Sink, live_server

CLICK = "8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1"
TOKEN = "s1te-t0ken/with+odd chars"
QUOTED_TOKEN = "s1te-t0ken%2Fwith%2Bodd%20chars"


@pytest.fixture
def sink() -> Iterator[tuple[Sink, str]]:
    sink = Sink()
    sink.status, sink.body = 200, b'{"status": "ok", "id": 1}'
    with live_server(sink) as url:
        yield sink, url


def lead(journey: dict[str, str] | None = None) -> Event:
    return Event(
        "lead", CLICK, {"offer": "7"}, journey_event_id("lead", CLICK), journey=journey or {}
    )


def status(value: str, journey: dict[str, str] | None = None) -> Event:
    return Event("postback", CLICK, {"status": value, "payout": 10}, journey=journey or {})


# AlterCPA Pro: the seed's table, byte for byte


def test_a_lead_is_click_json_with_the_seeds_parameters_in_order(sink: tuple[Sink, str]) -> None:
    server, url = sink
    AlterCPAPro(url, TOKEN).deliver(lead({"click": "PRO123"}))
    [call] = server.received
    assert call["path"] == "/api/site/click.json"
    assert call["query"] == f"token={QUOTED_TOKEN}&click=PRO123&exto={CLICK}"


@pytest.mark.parametrize(
    ("ours", "pro"),
    [("expect", "hold"), ("accept", "approve"), ("reject", "cancel"), ("trash", "trash"),
     ("approve", "approve"), ("hold", "hold")],
)  # fmt: skip
def test_statuses_are_status_json_with_auto_1(sink: tuple[Sink, str], ours: str, pro: str) -> None:
    server, url = sink
    AlterCPAPro(url + "/", TOKEN).deliver(status(ours, {"click": "PRO123"}))
    [call] = server.received
    assert call["path"] == "/api/site/status.json"
    assert call["query"] == (f"token={QUOTED_TOKEN}&click=PRO123&status={pro}&auto=1&exto={CLICK}")


def test_values_are_url_encoded(sink: tuple[Sink, str]) -> None:
    server, url = sink
    AlterCPAPro(url, "t", click_param="cid").deliver(lead({"cid": "a&b=c d/é"}))
    assert server.received[0]["query"] == f"token=t&click=a%26b%3Dc%20d%2F%C3%A9&exto={CLICK}"


def test_a_journey_without_pros_click_id_sends_nothing_logged_once(
    sink: tuple[Sink, str], caplog: pytest.LogCaptureFixture
) -> None:
    server, url = sink
    pro = AlterCPAPro(url, TOKEN)
    with caplog.at_level(logging.INFO, logger="bangi_landing"):
        pro.deliver(lead())
        pro.deliver(status("accept", {"other": "x"}))
    assert server.received == []
    [line] = [r.getMessage() for r in caplog.records]
    assert "without AlterCPA Pro's click id" in line and "'click'" in line


def refusal(sink: tuple[Sink, str], status: int, body: bytes) -> DeliveryError:
    """What delivering a lead to Pro raises when Pro answers ``status`` with ``body``."""
    server, url = sink
    server.status, server.body = status, body
    with pytest.raises(DeliveryError) as caught:
        AlterCPAPro(url, TOKEN).deliver(lead({"click": "PRO123"}))
    return caught.value


def test_pro_takes_no_clicks() -> None:
    assert AlterCPAPro("https://pro.example.com", TOKEN).kinds == {"lead", "postback"}


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b'{"status": "error", "error": "bad token s1te-t0ken/with+odd chars"}'),
        (200, b'{"status": "error"}'),
        (403, b"Forbidden"),
    ],
)
def test_an_error_answer_is_a_wrong_token_never_retried_and_redacted(
    sink: tuple[Sink, str], status: int, body: bytes
) -> None:
    error = refusal(sink, status, body)
    assert not error.retryable
    message = str(error)
    assert "site token is wrong" in message
    assert TOKEN not in message and QUOTED_TOKEN not in message


@pytest.mark.parametrize(("status", "body"), [(503, b"down"), (200, b"<html>proxy</html>")])
def test_server_errors_and_garbage_are_retried(
    sink: tuple[Sink, str], status: int, body: bytes
) -> None:
    error = refusal(sink, status, body)
    assert error.retryable
    assert TOKEN not in str(error)


def test_the_token_stays_out_of_the_outbox_key_and_repr() -> None:
    pro = AlterCPAPro("https://pro.example.com/", TOKEN)
    assert pro.key == "altercpa https://pro.example.com"
    assert TOKEN not in repr(pro)


# Postback URL templates


def test_templates_fill_macros_url_encoded(sink: tuple[Sink, str]) -> None:
    server, url = sink
    templates = PostbackTemplates(
        {
            "lead": url + "/pb?cid={clickId}&e={eventId}&offer={offer}&src={source}&none={nope}",
            "postback": url + "/pb?cid={clickId}&s={status}&sum={payout}",
        }
    )
    event = lead({"source": "fb ads&co"})
    templates.deliver(event)
    templates.deliver(status("accept"))
    first, second = server.received
    assert first["query"] == (f"cid={CLICK}&e={event.event_id}&offer=7&src=fb%20ads%26co&none=")
    assert second["query"] == f"cid={CLICK}&s=accept&sum=10"
    assert templates.kinds == {"lead", "postback"}
    assert templates.journey_params == ("nope", "offer", "source")


def test_templates_are_checked_up_front() -> None:
    with pytest.raises(ValueError, match="per event kind"):
        PostbackTemplates({"sale": "https://n.example/pb"})
    with pytest.raises(ValueError, match="http"):
        PostbackTemplates({"lead": "ftp://n.example/pb"})


def test_a_templates_key_names_the_host_but_not_its_secrets() -> None:
    templates = PostbackTemplates({"lead": "https://u:pw@n.example/pb?key=SECRET&c={clickId}"})
    assert templates.key.startswith("postback n.example ")
    assert "SECRET" not in templates.key and "pw" not in templates.key
    assert "SECRET" not in repr(templates)


# Where a failed request went, for the log: never a query or credentials


def test_public_url_keeps_scheme_host_port_and_path_only() -> None:
    assert public_url("https://u:pw@n.example/pb/lead?key=SECRET&c=1#x") == (
        "https://n.example:443/pb/lead"
    )
    assert public_url("http://[::1]:8080") == "http://[::1]:8080/"


def test_a_failed_postback_names_its_url_without_the_query(sink: tuple[Sink, str]) -> None:
    server, url = sink
    server.status = 503
    templates = PostbackTemplates({"lead": url + "/pb/{clickId}?key=SECRET&cid={clickId}"})
    with pytest.raises(DeliveryError) as caught:
        templates.deliver(lead())
    assert caught.value.url == f"{url}/pb/{CLICK}"
    assert "SECRET" not in str(caught.value)
