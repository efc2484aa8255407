from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from bangi_landing import BangiLanding
from bangi_landing.sender import BackgroundSender
from bangi_landing.tracker import TrackerStore, create_app
from bangi_landing.tracker.altercpa import TOKENS_ENV

from .landing import landing_app
from .postgres import PostgresUnavailable, Server, postgres_server
from .utils import ErrorsLogged, live_server


@pytest.fixture(autouse=True)
def _outbox_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The default outbox is per user; a test must never leave events there (nor a spool).
    monkeypatch.setenv("BANGI_OUTBOX", str(tmp_path / "outbox.sqlite3"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture(scope="session")
def postgres() -> Iterator[Server]:
    """A PostgreSQL server of this test session (tests/postgres.py), started on first use.

    Where PostgreSQL is not installed the tests that need it skip, except in
    CI (``$CI`` set), where they fail: CI installs it (tests/install-services.sh).
    """
    # Not under pytest's tmp folder: it is root's only, and the server runs as postgres.
    directory = Path(tempfile.mkdtemp(prefix="bangi-postgres-"))
    try:
        with postgres_server(directory) as server:
            yield server
    except PostgresUnavailable as error:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is needed in CI and could not start: {error}")
        pytest.skip(f"PostgreSQL could not start: {error}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_altercpa_tokens_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own site tokens must not change what a test's tracker accepts.
    monkeypatch.delenv(TOKENS_ENV, raising=False)


@pytest.fixture(autouse=True)
def _errors_fail_the_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """The middleware fails open for its users, never for its tests: an error it logs
    fails the test that caused it, unless the test is marked ``logs_errors``."""
    errors = ErrorsLogged()
    logger = logging.getLogger("bangi_landing")
    logger.addHandler(errors)
    try:
        yield
    finally:
        logger.removeHandler(errors)
    if errors.records and request.node.get_closest_marker("logs_errors") is None:
        first = errors.records[0]
        pytest.fail(
            f"bangi-landing logged {len(errors.records)} error(s), the first:"
            f" {first.getMessage()}\n{logging.Formatter().formatException(first.exc_info)}"
            if first.exc_info
            else f"bangi-landing logged {len(errors.records)} error(s): {first.getMessage()}"
        )


@pytest.fixture(autouse=True)
def _senders_end_with_their_test(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every sender a test makes is closed after it: no thread of one test retries, logs
    or touches files during the next."""
    made: list[BackgroundSender] = []
    original = BackgroundSender.__init__

    def init(self: BackgroundSender, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(BackgroundSender, "__init__", init)
    yield
    for sender in made:
        sender.close(0)


@pytest.fixture(autouse=True)
def _quiet_werkzeug() -> None:
    # The dev server logs every request; keep test output for what failed.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


@dataclass
class Tracker:
    url: str
    app: Flask
    store: TrackerStore
    http: requests.Session

    def events(self, **filters: object) -> list[dict[str, object]]:
        response = self.http.get(f"{self.url}/api/v2/events", params=filters, timeout=5)
        response.raise_for_status()
        events: list[dict[str, object]] = response.json()["events"]
        return events


def new_click(tracker: Tracker, campaign_id: int = 1, **params: Any) -> str:
    """A click of a fresh clickId, recorded by the tracker's API; its clickId."""
    click_id = str(uuid.uuid4())
    response = tracker.http.post(
        f"{tracker.url}/api/v2/track/click",
        json={"clickId": click_id, "campaignId": campaign_id, **params},
        timeout=5,
    )
    assert response.status_code == 201, response.text
    return click_id


@pytest.fixture
def tracker_options() -> dict[str, Any]:
    """Keyword arguments of ``create_app`` for ``tracker``: override or parametrize to configure."""
    return {}


@pytest.fixture
def tracker(tmp_path: Path, tracker_options: dict[str, Any]) -> Iterator[Tracker]:
    """The bundled tracker on a real loopback socket, with a fresh database."""
    app = create_app(tmp_path / "tracker.sqlite3", **tracker_options)
    store = app.extensions["bangi_tracker"]
    with live_server(app) as url, requests.Session() as http:
        yield Tracker(url, app, store, http)
    store.close()


# A landing (tests/landing.py) behind the middleware, reporting to the tracker

SECRET = "test-secret-key-0123456789"


@dataclass
class Landing:
    url: str
    middleware: BangiLanding
    tracker: Tracker
    browser: requests.Session

    def get(self, path: str = "/", **kwargs: Any) -> requests.Response:
        return self.browser.get(self.url + path, timeout=5, **kwargs)

    def post(self, path: str = "/submit", **kwargs: Any) -> requests.Response:
        return self.browser.post(self.url + path, timeout=5, **kwargs)

    def events(self, **filters: object) -> list[dict[str, Any]]:
        sender = self.middleware.sender
        assert isinstance(sender, BackgroundSender)
        assert sender.flush(10)
        return self.tracker.events(**filters)

    @property
    def cookie(self) -> str | None:
        return self.browser.cookies.get("bangi_journey")


def wrap(tracker: Tracker, **options: Any) -> BangiLanding:
    return BangiLanding(
        landing_app, tracker_url=tracker.url, campaign_id=42, secret_key=SECRET, **options
    )


@contextmanager
def serve_landing(tracker: Tracker, **options: Any) -> Iterator[Landing]:
    """tests/landing.py wrapped with ``options``, on a real loopback socket."""
    middleware = wrap(tracker, **options)
    with live_server(middleware) as url, requests.Session() as browser:
        yield Landing(url, middleware, tracker, browser)


@pytest.fixture
def landing(tracker: Tracker) -> Iterator[Landing]:
    with serve_landing(tracker, link_hosts=["shop.example"]) as landing:
        yield landing
