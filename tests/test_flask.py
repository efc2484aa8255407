"""The Flask extension on a real Flask app, served over HTTP, reporting to the bundled tracker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Blueprint, Flask, render_template_string, request

from bangi_landing import BangiLanding, ConfigurationError
from bangi_landing.core.journey import JourneyCookie
from bangi_landing.flask import Bangi
from bangi_landing.postgres import PostgresStore
from bangi_landing.sender import BackgroundSender

from .conftest import Tracker
from .postgres import Server
from .utils import SUB1, live_server

PAGE = """<!doctype html><title>Ring</title>
<p id="click">{{ bangi_click_id() }}</p>
<form id="placed" action="/order/submit" method="post">{{ bangi_hidden_field() }}\
<input name="phone"></form>
<form id="auto" action="/search"></form>"""

order = Blueprint("order", __name__, url_prefix="/order")


@order.post("/submit")
def submit() -> tuple[str, int]:
    return f"thanks {request.form.get('sub1')} {request.environ['bangi.click_id']}", 200


def make_app(tracker: Tracker, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        {
            "SECRET_KEY": "flask-secret-key-0123456789",
            "BANGI_TRACKER_URL": tracker.url,
            "BANGI_CAMPAIGN_ID": 5,
            "BANGI_SUBMIT_PATHS": ["/order/submit"],
            **config,
        }
    )

    @app.get("/")
    def index() -> str:
        return render_template_string(PAGE)

    app.register_blueprint(order)
    return app


def flush(app: Flask) -> None:
    sender = app.extensions["bangi_landing"].sender
    assert isinstance(sender, BackgroundSender)
    assert sender.flush(10)


@pytest.fixture
def served(tracker: Tracker) -> Iterator[tuple[Flask, str]]:
    app = make_app(tracker)
    Bangi(app)
    with live_server(app) as url:
        yield app, url


def test_extension_wraps_the_app_and_registers_itself(served: tuple[Flask, str]) -> None:
    app, _ = served
    assert isinstance(app.extensions["bangi_landing"], BangiLanding)
    assert app.wsgi_app is app.extensions["bangi_landing"]


def test_template_helpers_and_automatic_field(served: tuple[Flask, str], tracker: Tracker) -> None:
    app, url = served
    html = requests.get(url + "/", timeout=5).text
    flush(app)
    [click] = tracker.events()
    click_id = click["clickId"]
    assert click["campaignId"] == 5
    assert f'<p id="click">{click_id}</p>' in html
    field = f'<input type="hidden" name="sub1" value="{click_id}">'  # the helper's
    assert html.count(field) == 1
    assert f'method="post">{field}<input name="phone">' in html  # not doubled
    assert html.count(f'<input type="hidden" name="sub1" value="{click_id}" />') == 1  # injected


def test_blueprint_submit_path_reports_the_lead(
    served: tuple[Flask, str], tracker: Tracker
) -> None:
    app, url = served
    with requests.Session() as browser:
        browser.get(url + "/", timeout=5)
        flush(app)
        [click] = tracker.events()
        response = browser.post(
            url + "/order/submit", data={"sub1": click["clickId"], "offer": "1"}, timeout=5
        )
    assert response.text == f"thanks {click['clickId']} {click['clickId']}"
    flush(app)
    [lead] = tracker.events(type="lead")
    assert lead["clickId"] == click["clickId"]
    assert lead["params"]["offer"] == "1"


def test_init_app_in_a_factory(tracker: Tracker) -> None:
    bangi = Bangi()
    app = make_app(tracker)
    middleware = bangi.init_app(app)
    assert app.extensions["bangi_landing"] is middleware


def test_unset_keys_take_the_defaults(tracker: Tracker) -> None:
    app = make_app(tracker)
    middleware = Bangi(app).init_app(make_app(tracker))
    assert (middleware.field_name, middleware.cookie.max_age) == ("sub1", 30 * 24 * 3600)


def test_a_string_list_key_is_comma_separated(tracker: Tracker) -> None:
    app = make_app(tracker, BANGI_SUBMIT_PATHS="/order, /checkout", BANGI_LINK_HOSTS="shop.example")
    middleware = Bangi().init_app(app)
    assert middleware.submit_paths == {"/order", "/checkout"}
    assert middleware.link_hosts == ("shop.example",)


def test_a_missing_secret_names_the_config_keys(
    tracker: Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BANGI_SECRET_KEY", raising=False)
    app = make_app(tracker, SECRET_KEY=None)
    with pytest.raises(ConfigurationError) as raised:
        Bangi(app)
    assert 'app.config["SECRET_KEY"]' in str(raised.value)
    assert 'app.config["BANGI_SECRET_KEY"]' in str(raised.value)


ORDER_PAGE = """<!doctype html><title>Ring</title>
<form action="/order" method="post"><input name="name"><input name="phone">\
<input type="hidden" name="offer" value="ring"><button>Order</button></form>"""


def order_landing(tracker: Tracker, **config: Any) -> Flask:
    """A site whose order form posts to /order, as existing sites' forms do."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="flask-secret-key-0123456789",
        BANGI_TRACKER_URL=tracker.url,
        BANGI_CAMPAIGN_ID=5,
        **config,
    )
    app.add_url_rule("/", "index", lambda: ORDER_PAGE)
    app.add_url_rule("/order", "order", lambda: "<p>Thank you.</p>", methods=["POST"])
    return app


def test_a_form_posting_to_order_is_the_lead_with_no_configuration(tracker: Tracker) -> None:
    app = order_landing(tracker)
    Bangi(app)
    with live_server(app) as url, requests.Session() as browser:
        [click_id] = SUB1.findall(browser.get(url + "/", timeout=5).text)
        form = {"sub1": click_id, "name": "Ana", "phone": "+55 11 99999 0000", "offer": "ring"}
        assert browser.post(url + "/order", data=form, timeout=5).status_code == 200
        flush(app)
    [lead] = tracker.events(type="lead")
    assert lead["clickId"] == click_id
    assert lead["params"]["offer"] == "ring"
    assert lead["params"]["withheldFields"] == ["name", "phone"]


def test_with_submit_paths_elsewhere_the_same_post_warns_once(
    tracker: Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    app = order_landing(tracker, BANGI_SUBMIT_PATHS=["/submit"])
    Bangi(app)
    with live_server(app) as url, requests.Session() as browser:
        [click_id] = SUB1.findall(browser.get(url + "/", timeout=5).text)
        for _ in range(3):
            browser.post(url + "/order", data={"sub1": click_id, "offer": "ring"}, timeout=5)
        flush(app)
    assert tracker.events(type="lead") == []
    [warning] = [r for r in caplog.records if "BANGI_SUBMIT_PATHS" in r.getMessage()]
    assert warning.levelname == "WARNING" and "/order" in warning.getMessage()


def test_keyword_options_win_over_config(tracker: Tracker) -> None:
    app = make_app(tracker)
    Bangi(app, campaign_id=9)
    assert app.extensions["bangi_landing"].campaign_id == 9


def test_secret_key_comes_from_the_app_when_not_configured(
    tracker: Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BANGI_SECRET_KEY", raising=False)
    Bangi(make_app(tracker))  # SECRET_KEY is long enough
    with pytest.raises(ConfigurationError, match="secret_key"):
        Bangi(make_app(tracker, SECRET_KEY="short"))


@pytest.mark.parametrize("app_key", [None, "flask-secret-key-0123456789"])
def test_secret_key_from_the_environment_alone(
    tracker: Tracker, monkeypatch: pytest.MonkeyPatch, app_key: str | None
) -> None:
    # BANGI_SECRET_KEY set, no BANGI_SECRET_KEY in the config: the variable is the key,
    # whether the app has a SECRET_KEY of its own or not.
    monkeypatch.setenv("BANGI_SECRET_KEY", "env-secret-key-0123456789")
    app = make_app(tracker, SECRET_KEY=app_key)
    middleware = Bangi().init_app(app)
    _, value = middleware.cookie.new_journey()
    signed_with_env = JourneyCookie("env-secret-key-0123456789", name=middleware.cookie.name)
    assert signed_with_env.load({"HTTP_COOKIE": f"{middleware.cookie.name}={value}"})


def test_hidden_field_escapes_the_field_name(tracker: Tracker) -> None:
    app = make_app(tracker, BANGI_FIELD_NAME='x"><script>')
    Bangi(app)
    with app.test_request_context("/"):
        field = render_template_string("{{ bangi_hidden_field() }}")
    assert "<script>" not in field
    assert "&#34;&gt;&lt;script&gt;" in field


def test_altercpa_and_the_relay_from_config_and_a_crm_hook(tracker: Tracker) -> None:
    app = make_app(
        tracker,
        BANGI_ALTERCPA_URL="https://pro.example.com",
        BANGI_ALTERCPA_TOKEN="pro-token",
        BANGI_ALTERCPA_CLICK_PARAM="pcid",
        BANGI_RELAY_PATH="/postback",
        BANGI_RELAY_SECRET="relay-secret-0123456789",
        BANGI_RELAY_STATUSES={"paid": "accept"},
    )
    bangi = Bangi(app)

    @app.post("/crm/<click_id>")
    def crm(click_id: str) -> str:
        return bangi.report_status(click_id, "reject", extras={"why": "fake"}).event_id

    middleware = app.extensions["bangi_landing"]
    assert [d.key for d in middleware.destinations] == [
        f"bangi {tracker.url}/", "altercpa https://pro.example.com"
    ]  # fmt: skip
    assert middleware.journey_params == ("pcid",)
    with live_server(app) as url:
        click_id = "8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1"
        relayed = requests.get(
            f"{url}/postback",
            params={"secret": "relay-secret-0123456789", "clickId": click_id, "status": "paid"},
            timeout=5,
        )
        assert relayed.status_code == 202
        assert requests.post(f"{url}/crm/{click_id}", timeout=5).status_code == 200
    flush(app)
    assert [e["params"]["status"] for e in tracker.events(type="postback")] == ["accept", "reject"]


def test_a_postgresql_url_in_bangi_outbox_selects_that_store(
    tracker: Tracker, postgres: Server
) -> None:
    middleware = Bangi().init_app(make_app(tracker, BANGI_OUTBOX=postgres.url))
    sender = middleware.sender
    assert isinstance(sender, BackgroundSender) and isinstance(sender.outbox, PostgresStore)
    assert sender.outbox.url == postgres.url
