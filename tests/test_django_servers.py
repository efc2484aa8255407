"""The Django project in real servers: gunicorn (WSGI) and uvicorn (ASGI), the same journey.

A visitor lands from an ad, orders through the CSRF-protected form and gets
the thank-you page; the tracker gets the click and the lead, once each.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import requests

from .conftest import Tracker
from .journey import CUSTOMER, ORDER_FORM, tracked
from .utils import SUB1, free_port, running, wait_for_port

AD = {"utm_source": "django-server", "ad_name": "video-02"}
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')

SERVERS = {
    "gunicorn": [sys.executable, "-m", "gunicorn", "--no-control-socket", "--workers", "2",
                 "tests.django_project.wsgi:application", "--bind"],
    "uvicorn": [sys.executable, "-m", "uvicorn", "tests.django_project.asgi:application",
                "--host", "127.0.0.1", "--port"],
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("server", SERVERS)
def test_a_visitor_lands_and_orders_through_csrf(
    server: str, tracker: Tracker, tmp_path: Path
) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}" if server == "gunicorn" else str(port)
    env = {
        **os.environ,
        "BANGI_TRACKER_URL": tracker.url,
        "BANGI_OUTBOX": str(tmp_path / "outbox.sqlite3"),
        "DJANGO_SETTINGS_MODULE": "tests.django_project.settings",
    }
    log = tmp_path / "server.log"
    with running([*SERVERS[server], address], env, log) as process:
        wait_for_port(port, process, log)
        url = f"http://127.0.0.1:{port}"
        with requests.Session() as visitor:
            page = visitor.get(url + "/", params=AD, timeout=10)
            [click_id] = ORDER_FORM.findall(page.text)
            assert SUB1.findall(page.text) == [click_id]
            [token] = CSRF.findall(page.text)
            form = {"csrfmiddlewaretoken": token, "sub1": click_id, "offer": "aurora-ring"}
            thanks = visitor.post(url + "/order/", data={**form, **CUSTOMER}, timeout=10)
            assert thanks.status_code == 200 and thanks.url == f"{url}/thanks/"
            refused = requests.post(url + "/order/", data=form, timeout=10)  # no CSRF cookie
            assert refused.status_code == 403
        tracked(tracker.events, click_id, AD, campaign_id=42)
        assert len(tracker.events(type="lead")) == 1
    assert "Traceback" not in log.read_text(), log.read_text()
