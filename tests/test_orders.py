"""Orders reach the CPA network: a landing behind the middleware, a network stand-in on loopback."""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flask
import pytest
import requests
from click.testing import CliRunner

from bangi_landing import BangiLanding, ConfigurationError
from bangi_landing.cli import main
from bangi_landing.destinations import BangiTracker, NetworkOrders
from bangi_landing.events import Event
from bangi_landing.flask import Bangi
from bangi_landing.outbox import Outbox
from bangi_landing.retry import RetryPolicy
from bangi_landing.sealed import Sealer
from bangi_landing.sender import FORGET_INTERVAL, BackgroundSender
from bangi_landing.stores import ORDER_DELAY, Claim
from bangi_landing.tracker import network

from .conftest import SECRET, Tracker, serve_landing
from .landing import landing_app
from .utils import Clock, Recorder, Sink, eventually, form_click_ids, free_port, live_server

OFFER = {"offer_id": 77, "name": "{name}", "phone": "{phone}", "ip": "{ip}", "ua": "{userAgent}"}
NAME, PHONE = "Zelda Quixote", "+7 912 345-67-89"
# Retries within the test's patience; a network down for the burst pauses the destination.
FAST = RetryPolicy(first=0.05, longest=0.3)


@dataclass
class OrderLanding:
    url: str
    outbox: Outbox
    sender: BackgroundSender

    def submit(self, path: str = "/", **fields: str) -> tuple[str, requests.Response]:
        """A visitor's view of ``path``, then the order form's submit; the page's clickId."""
        with requests.Session() as browser:
            [click_id, _] = form_click_ids(browser.get(self.url + path, timeout=5).text)
            form = {"sub1": click_id, "name": NAME, "phone": PHONE, **fields}
            return click_id, browser.post(self.url + "/submit", data=form, timeout=5)


@contextmanager
def order_landing(tmp_path: Path, network: str, **options: Any) -> Iterator[OrderLanding]:
    """tests/landing.py forwarding orders to ``network``/orders through a SQLite outbox."""
    options = {"fields": OFFER, "body": "json", **options}
    orders = NetworkOrders(f"{network}/orders", **options)
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    sender = BackgroundSender([orders], outbox=outbox, retry=FAST)
    middleware = BangiLanding(landing_app, destinations=[orders], secret_key=SECRET, sender=sender)
    with live_server(middleware) as url:
        yield OrderLanding(url, outbox, sender)


def on_disk(outbox: Outbox) -> bytes:
    """The outbox file and its WAL, as bytes."""
    wal = Path(f"{outbox.path}-wal")
    return outbox.path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_orders_wait_out_a_network_outage_and_arrive_exactly_once(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there yet: the network is down
    sink = Sink()
    with order_landing(tmp_path, f"http://127.0.0.1:{port}") as landing:
        submitted = []
        for _ in range(20):
            click_id, response = landing.submit()
            assert response.status_code == 200
            submitted.append(click_id)
        eventually(lambda: landing.outbox.counts() and landing.sender.stats.snapshot()["retried"])
        with live_server(sink, port):
            assert landing.sender.flush(20)
    by_click = Counter(str(order["sub1"]) for order in sink.received)
    assert by_click == Counter(submitted)  # every order, each once
    for order in sink.received:
        assert order["offer_id"] == 77
        assert (order["name"], order["phone"], order["ip"]) == (NAME, PHONE, "127.0.0.1")
        assert str(order["ua"]).startswith("python-requests")
    keys = [headers["idempotency-key"] for headers in sink.request_headers]
    assert len(set(keys)) == 20  # one per journey, for networks that de-duplicate on it


def test_a_double_submit_is_one_order(tmp_path: Path) -> None:
    sink = Sink()
    with (
        live_server(sink) as network,
        order_landing(tmp_path, network) as landing,
        requests.Session() as browser,
    ):
        [click_id, _] = form_click_ids(browser.get(landing.url + "/", timeout=5).text)
        form = {"sub1": click_id, "name": NAME, "phone": PHONE}
        for _ in range(2):  # twice at once, then once more after delivery
            browser.post(landing.url + "/submit", data=form, timeout=5).raise_for_status()
        assert landing.sender.flush(10)
        browser.post(landing.url + "/submit", data=form, timeout=5).raise_for_status()
        assert landing.sender.flush(10)
    assert [order["sub1"] for order in sink.received] == [click_id]


def test_a_rejected_form_makes_no_order_and_no_lead() -> None:
    recorder = Recorder()
    orders = NetworkOrders("http://127.0.0.1:1/orders", fields=OFFER)
    middleware = BangiLanding(
        landing_app, destinations=[orders], secret_key=SECRET, sender=recorder
    )
    with live_server(middleware) as url:
        data = {"sub1": "0" * 8 + "-0000-4000-8000-" + "0" * 12, "name": NAME, "fail": "1"}
        assert requests.post(f"{url}/submit", data=data, timeout=5).status_code == 400
        assert recorder.events == []
        del data["fail"]
        requests.post(f"{url}/submit", data=data, timeout=5).raise_for_status()
    lead, order = recorder.events
    assert (lead.kind, order.kind) == ("lead", "order")
    assert "name" not in lead.params  # the tracker never gets it
    assert list(order.params) == ["sealed"]
    assert Sealer(SECRET).open(order.params["sealed"])["fields"]["name"] == NAME


def test_personal_data_is_never_in_the_outbox_files_in_clear(tmp_path: Path) -> None:
    port = free_port()
    sink = Sink()
    with order_landing(tmp_path, f"http://127.0.0.1:{port}") as landing:
        for _ in range(3):
            landing.submit()
        eventually(lambda: landing.sender.stats.snapshot()["retried"])
        assert landing.outbox.counts()[landing.sender.destinations[0].key]["pending"] == 3
        waiting = on_disk(landing.outbox)
        with live_server(sink, port):
            assert landing.sender.flush(20)
        delivered = on_disk(landing.outbox)
    assert len(sink.received) == 3 and sink.received[0]["name"] == NAME  # the network has them
    for data in (waiting, delivered):
        for secret in (NAME, PHONE, "Zelda", "912 345"):
            assert secret.encode() not in data


def test_a_200_with_an_error_is_dead_at_once_with_the_networks_reason(tmp_path: Path) -> None:
    sink = Sink()
    sink.status = 200
    sink.body = f'{{"status": "error", "error": "phone {PHONE} already ordered"}}'.encode()
    with (
        live_server(sink) as network,
        order_landing(tmp_path, network, success=("status", "ok")) as landing,
    ):
        landing.submit()
        assert landing.sender.flush(10)
        [(_, reason, count)] = landing.outbox.dead_errors()
        shown = CliRunner().invoke(main, ["outbox", "status", "--outbox", str(landing.outbox.path)])
    assert count == len(sink.received) == 1  # not retried
    assert reason == "refused: phone <order field> already ordered"
    assert "1 dead" in shown.output and "already ordered" in shown.output
    assert PHONE not in shown.output


def test_a_4xx_is_dead_at_once(tmp_path: Path) -> None:
    sink = Sink()
    sink.status = 422
    with live_server(sink) as network, order_landing(tmp_path, network) as landing:
        landing.submit()
        assert landing.sender.flush(10)
        [(_, reason, count)] = landing.outbox.dead_errors()
    assert count == len(sink.received) == 1
    assert reason == "HTTP 422: as told"


def test_a_form_api_with_a_token_header_and_the_order_id_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NETWORK_TOKEN", "tok-123")
    sink = Sink()
    sink.status = 200
    sink.body = b'{"status": "ok", "order_id": 9001}'
    caplog.set_level(logging.INFO, logger="bangi_landing")
    options = {
        "body": "form",
        "fields": {"flow": "abc", "fio": "{name}", "tel": "{phone}", "city": "{city}"},
        "headers": {"X-Token": "{env:NETWORK_TOKEN}"},
        "success": ("status", "ok"),
        "order_id": "order_id",
    }
    with live_server(sink) as network, order_landing(tmp_path, network, **options) as landing:
        first, _ = landing.submit()
        landing.submit()
        assert landing.sender.flush(10)
    assert sink.received[0] == {
        "flow": "abc",
        "fio": NAME,
        "tel": PHONE,
        "city": "",  # no form sends it
        "sub1": first,  # the clickId goes as sub1 when the fields do not place it
        "path": "/orders",
        "query": "",
    }
    assert {headers["x-token"] for headers in sink.request_headers} == {"tok-123"}
    messages = [r.getMessage() for r in caplog.records]
    assert f"bangi-landing: order 9001 of journey {first} taken by {network}/orders" in messages
    assert sum("have no {city}" in m for m in messages) == 1  # once per macro name
    assert not any(PHONE in m or "tok-123" in m for m in messages)


def test_a_get_api_takes_the_fields_and_the_landing_urls_parameters_in_its_query(
    tmp_path: Path,
) -> None:
    sink = Sink()
    options: dict[str, Any] = {"method": "GET", "fields": {"n": "{name}", "src": "{source}"}}
    with live_server(sink) as network, order_landing(tmp_path, network, **options) as landing:
        click_id, _ = landing.submit("/?source=fb")  # the submit itself carries no query
        assert landing.sender.flush(10)
    [order] = sink.received
    assert order["query"] == f"n=Zelda+Quixote&src=fb&sub1={click_id}"


@pytest.mark.parametrize(
    ("url", "headers", "named"),
    [
        ("ftp://network.example/orders", None, "NetworkOrders url"),
        ("https://network.example/orders?t={env:UNSET_TOKEN}", None, "NetworkOrders url"),
        ("https://network.example/orders", {"X-Token": "{env:UNSET_TOKEN}"}, "headers['X-Token']"),
    ],
)
def test_bad_configuration_fails_at_start_up_naming_the_option(
    url: str, headers: dict[str, str] | None, named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named.replace("[", r"\[")):
        NetworkOrders(url, headers=headers)


def test_a_large_order_reaches_the_network_whole(tmp_path: Path) -> None:
    sink = Sink()
    note = "n" * 60_000  # sealed, past the tracker's 64 KiB limit: a lead would be cut
    options: dict[str, Any] = {"fields": {"note": "{note}"}}
    with live_server(sink) as network, order_landing(tmp_path, network, **options) as landing:
        landing.submit(note=note)
        assert landing.sender.flush(10)
    assert [order["note"] for order in sink.received] == [note]


def test_only_fields_that_are_not_personal_are_kept_from_the_landing_url() -> None:
    fields = {"name": "{name}", "tel": "{phone}", "s2": "{source}", "s3": "{utm_campaign}"}
    orders = NetworkOrders("https://network.example/orders", fields=fields)
    assert orders.journey_params == ("source", "utm_campaign")


def test_the_bundled_trackers_fake_network_gets_the_order_and_the_tracker_the_lead(
    tracker: Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bangi_landing")
    orders = NetworkOrders(
        f"{tracker.url}/network/orders",
        fields={"offer_id": "1001", "name": "{name}", "phone": "{phone}"},
        success=("status", "ok"),
        order_id="id",
    )
    with serve_landing(tracker, destinations=[orders]) as landing:  # the default outbox, sender
        [click_id, _] = form_click_ids(landing.get("/?source=fb").text)
        form = {"sub1": click_id, "name": NAME, "phone": PHONE}
        assert landing.post(data=form).status_code == 200
        [lead] = landing.events(type="lead")
    [order] = tracker.store.network_orders()
    assert order["clickId"] == click_id
    assert {k: order["params"][k] for k in ("offer_id", "name", "phone", "sub1")} == {
        "offer_id": "1001",
        "name": NAME,
        "phone": PHONE,
        "sub1": click_id,
    }
    assert lead["clickId"] == click_id and "name" not in lead["params"]
    taken = f"bangi-landing: order {order['id']} of journey {click_id} taken by"
    assert any(r.getMessage().startswith(taken) for r in caplog.records)


# The flat settings (BANGI_* variables, Flask config, Django settings)

FLAT = {
    "BANGI_ORDER_BODY": "json",
    "BANGI_ORDER_FIELDS": "offer_id:42, name:{name}, phone:{phone}",
    "BANGI_ORDER_HEADERS": "X-Token:{env:NETWORK_TOKEN}",
    "BANGI_ORDER_SUCCESS": "status:ok",
    "BANGI_ORDER_ID_FIELD": "order_id",
}


@pytest.mark.parametrize("given_as", ["environment", "flask config"])
def test_flat_settings_forward_orders(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    given_as: str,
) -> None:
    monkeypatch.setenv("NETWORK_TOKEN", "tok-456")
    monkeypatch.setenv("BANGI_OUTBOX", str(tmp_path / "outbox.sqlite3"))
    caplog.set_level(logging.INFO, logger="bangi_landing")
    sink = Sink()
    sink.status = 200
    sink.body = b'{"status": "ok", "order_id": "N-7"}'
    with live_server(sink) as network:
        settings = {**FLAT, "BANGI_ORDER_URL": f"{network}/orders", "BANGI_SECRET_KEY": SECRET}
        served: Any
        if given_as == "environment":
            for name, value in settings.items():
                monkeypatch.setenv(name, value)
            served = middleware = BangiLanding(landing_app)
        else:
            served = flask.Flask(__name__)
            served.config.update(settings)
            served.wsgi_app = landing_app  # type: ignore[method-assign]
            middleware = Bangi().init_app(served)
        [orders] = middleware.destinations
        sender, outbox = middleware.sender, getattr(middleware.sender, "outbox", None)
        assert isinstance(sender, BackgroundSender) and isinstance(outbox, Outbox)
        with live_server(served) as url:
            click_id, _ = OrderLanding(url, outbox, sender).submit()
            assert sender.flush(10)
        middleware.close()
    [order] = sink.received
    assert order == {
        "offer_id": "42",
        "name": NAME,
        "phone": PHONE,
        "sub1": click_id,
        "path": "/orders",
        "query": "",
    }
    assert sink.request_headers[0]["x-token"] == "tok-456"
    assert f"bangi-landing: order N-7 of journey {click_id} taken by" in caplog.text
    assert isinstance(orders, NetworkOrders) and orders.success == ("status", "ok")


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"BANGI_ORDER_URL": "ftp://network.example/orders"}, "BANGI_ORDER_URL"),
        ({"BANGI_ORDER_URL": "https://n.example/o?t={env:UNSET_TOKEN}"}, "BANGI_ORDER_URL"),
        (
            {"BANGI_ORDER_URL": "https://n.example/o", "BANGI_ORDER_HEADERS": "T:{env:UNSET_T}"},
            "BANGI_ORDER_HEADERS",
        ),
        ({"BANGI_ORDER_URL": "https://n.example/o", "BANGI_ORDER_SUCCESS": "ok"}, "_SUCCESS"),
        ({"BANGI_ORDER_URL": "https://n.example/o", "BANGI_ORDER_METHOD": "PUT"}, "_METHOD"),
        ({"BANGI_ORDER_FIELDS": "name:{name}"}, "BANGI_ORDER_FIELDS"),  # and no URL
    ],
)
def test_bad_flat_settings_fail_at_start_up_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], named: str
) -> None:
    monkeypatch.delenv("UNSET_TOKEN", raising=False)
    monkeypatch.delenv("UNSET_T", raising=False)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=named):
        BangiLanding(landing_app, secret_key=SECRET, sender=Recorder())


def test_the_sender_deletes_dead_orders_personal_data_after_their_retention(
    tmp_path: Path,
) -> None:
    clock = Clock(time.time())  # the rows' own times are the events' real ones
    sink = Sink()
    sink.status = 422  # the network and the tracker refuse: both events are dead at once
    with live_server(sink) as network:
        orders = NetworkOrders(f"{network}/orders", keep_dead=1.5 * FORGET_INTERVAL)
        orders.use_sealer(Sealer(SECRET))
        outbox = Outbox(tmp_path / "outbox.sqlite3", clock=clock)
        tracker = BangiTracker(network)
        sender = BackgroundSender([orders, tracker], outbox=outbox, clock=clock, retry=FAST)
        click_id = str(uuid.uuid4())
        sealed = Sealer(SECRET).seal({"fields": {"name": NAME}})
        for event in (Event("order", click_id, {"sealed": sealed}), Event("lead", click_id, {})):
            assert sender.submit(event, durable=True)

        def settle(seconds: float) -> dict[str, dict[str, int]]:
            clock.now += seconds
            sender.wake()
            assert sender.flush(5)
            return outbox.counts()

        dead = {"pending": 0, "dead": 1}
        assert settle(ORDER_DELAY) == {orders.key: dead, tracker.key: dead}
        # The sender looks hourly: within its retention, the dead order is kept.
        assert settle(FORGET_INTERVAL) == {orders.key: dead, tracker.key: dead}
        # Past it, the order is gone, personal data and all; the tracker's lead stays.
        assert settle(FORGET_INTERVAL) == {tracker.key: dead}
        sender.close()


def test_outbox_status_judges_orders_only_when_told_the_order_url(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    made_in_code = "orders http://127.0.0.1:7/orders"  # a NetworkOrders passed in Python
    Outbox(path).add([Event("order", str(uuid.uuid4()), {})], [made_in_code], max_age=9e9)
    tracker = {"BANGI_TRACKER_URL": "http://127.0.0.1:9"}

    def status(env: dict[str, str]) -> str:
        shown = CliRunner().invoke(main, ["outbox", "status", "--outbox", str(path)], env=env)
        assert shown.exit_code == 0, shown.output
        return shown.output

    assert "not used" not in status(tracker)  # the tracker's settings say nothing of orders
    elsewhere = {**tracker, "BANGI_ORDER_URL": "http://127.0.0.1:8/orders?t={env:TOKEN}"}
    assert f"{made_in_code}: 1 pending, 0 dead  [not used by" in status(elsewhere)
    here = {**tracker, "BANGI_ORDER_URL": "http://127.0.0.1:7/orders?t={env:TOKEN}"}
    assert "not used" not in status(here)  # its key needs no token


def test_a_network_that_hangs_holds_no_submit_and_its_retries_are_one_order(
    tracker: Tracker, tmp_path: Path
) -> None:
    # The bundled fake network takes each order, then answers after the sender gave up.
    tracker.app.config.update({network.FAILURE: "timeout", network.STALL: 3.0})
    options: dict[str, Any] = {"timeout": (1.0, 1.0), "success": ("status", "ok")}
    with order_landing(tmp_path, f"{tracker.url}/network", **options) as landing:
        submitted = []
        for _ in range(4):
            started = time.monotonic()
            click_id, response = landing.submit()
            # Generous: far below the network's 3 s, which a submit never waits for.
            assert response.status_code == 200 and time.monotonic() - started < 1.0
            submitted.append(click_id)
        eventually(lambda: tracker.store.count_network_orders() == 4, timeout=10)
        tracker.app.config[network.FAILURE] = "ok"  # back: the retries get their answers
        assert landing.sender.flush(30)
        assert landing.outbox.counts() == {}
    orders = tracker.store.network_orders()
    assert sorted(order["clickId"] for order in orders) == sorted(submitted)  # each once


class CountingOutbox(Outbox):
    """The SQLite outbox, noting the kinds of each write's events."""

    writes: list[list[str]]

    def add(self, events: Sequence[Event], *args: Any, **kwargs: Any) -> list[tuple[str, Claim]]:
        self.writes.append([event.kind for event in events])
        return super().add(events, *args, **kwargs)


def test_a_submits_lead_and_order_are_one_write(tmp_path: Path) -> None:
    outbox = CountingOutbox(tmp_path / "outbox.sqlite3")
    outbox.writes = []
    orders = NetworkOrders("http://127.0.0.1:9/orders", fields=OFFER)
    sender = BackgroundSender([orders, BangiTracker("http://127.0.0.1:9")], outbox=outbox)
    middleware = BangiLanding(
        landing_app, destinations=[orders], campaign_id=1, secret_key=SECRET, sender=sender
    )
    with live_server(middleware) as url:
        OrderLanding(url, outbox, sender).submit()
        durable = [kinds for kinds in outbox.writes if "click" not in kinds]
    sender.close(0)
    assert durable == [["lead", "order"]]  # one transaction, one sync to disk
