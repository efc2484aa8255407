"""Bottle: examples/bottle_landing.py wrapped by bangi-landing, over HTTP to the bundled tracker."""

from __future__ import annotations

import requests

from examples.bottle_landing import create_app

from .conftest import Tracker
from .journey import CUSTOMER, land, order, tracked
from .utils import SUB1, live_server

AD = {"utm_source": "tiktok", "utm_campaign": "ring-launch", "ad_id": "42"}


def test_a_bottle_landing_reports_the_click_and_the_lead(tracker: Tracker) -> None:
    app = create_app(tracker_url=tracker.url, campaign_id=7, secret_key="bottle-test-secret-key")
    with live_server(app) as url, requests.Session() as visitor:
        click_id, _ = land(visitor, url, AD)
        order(visitor, url, click_id)
    click, _ = tracked(tracker.events, click_id, AD, campaign_id=7)
    assert click["params"]["landingPath"] == "/"
    assert len(tracker.events()) == 2


def test_a_rejected_order_is_no_lead_and_keeps_the_journey(tracker: Tracker) -> None:
    app = create_app(tracker_url=tracker.url, campaign_id=7, secret_key="bottle-test-secret-key")
    with live_server(app) as url, requests.Session() as visitor:
        click_id, _ = land(visitor, url, AD)
        rejected = visitor.post(
            f"{url}/submit", data={"sub1": click_id, "name": CUSTOMER["name"]}, timeout=10
        )
        assert rejected.status_code == 400
        assert SUB1.findall(rejected.text) == [click_id]  # the form again, same journey
        order(visitor, url, click_id)
    tracked(tracker.events, click_id, AD, campaign_id=7)
    assert [event["type"] for event in tracker.events()] == ["click", "lead"]
