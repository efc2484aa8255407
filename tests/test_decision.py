"""The core's decision, as a table: every row of the README's "What happens on each request".

From a request's journey and a response's status and headers,
``LandingCore.decide`` says which events are reported, whether the journey
cookie is set and whether the body gets the clickId in its forms. Every door
asks the same question, so this table holds for WSGI, ASGI and Django alike.
"""

from __future__ import annotations

from typing import Any

import pytest

from bangi_landing.core import Journey, LandingCore

from .utils import Recorder

CLICK_ID = "8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1"
HTML = {"content-type": "text/html; charset=utf-8"}

core = LandingCore(
    tracker_url="http://127.0.0.1:9",
    campaign_id=1,
    secret_key="decision-secret-key",
    sender=Recorder(),
)


def journey(source: str, *, submit: bool = False, save: bool = True) -> Journey:
    return Journey(CLICK_ID, source, (), save, submit, {"offer": "1"} if submit else None)  # type: ignore[arg-type]


# (what happens, method, journey, status, response headers) -> (events, set cookie, rewrite)
ROWS: list[tuple[str, str, Journey, int, dict[str, str], tuple[tuple[str, ...], bool, bool]]] = [
    ("a new visitor's page view is the click", "GET", journey("new"), 200, HTML,
     (("click",), True, True)),
    ("XHTML is a page too", "GET", journey("new"), 200,
     {"content-type": "application/xhtml+xml"}, (("click",), True, True)),
    ("a returning visitor's page: no second click, the field", "GET",
     journey("cookie", save=False), 200, HTML, ((), False, True)),
    ("a clickId from the URL continues the journey: no click, the cookie", "GET",
     journey("url"), 200, HTML, ((), True, True)),
    ("HEAD makes no click and gets no field", "HEAD", journey("new"), 200, HTML,
     ((), False, False)),
    ("a redirect makes no click", "GET", journey("new"), 302, HTML, ((), False, False)),
    ("an error page makes no click", "GET", journey("new"), 404, HTML, ((), False, False)),
    ("a journey's error page still gets the field", "GET", journey("cookie", save=False), 404,
     HTML, ((), False, True)),
    ("an asset makes no click", "GET", journey("new"), 200, {"content-type": "text/css"},
     ((), False, False)),
    ("JSON makes no click", "GET", journey("new"), 200, {"content-type": "application/json"},
     ((), False, False)),
    ("an attachment is no page view", "GET", journey("new"), 200,
     {**HTML, "content-disposition": 'attachment; filename="a.html"'}, ((), False, False)),
    ("a compressed page is a click, its body untouched", "GET", journey("new"), 200,
     {**HTML, "content-encoding": "gzip"}, (("click",), True, False)),
    ("UTF-16 is a click, its body untouched", "GET", journey("new"), 200,
     {"content-type": "text/html; charset=utf-16"}, (("click",), True, False)),
    ("a stateful encoding is not rewritten", "GET", journey("cookie", save=False), 200,
     {"content-type": "text/html; charset=iso-2022-jp"}, ((), False, False)),
    ("204 and 304 have no body to rewrite", "GET", journey("cookie", save=False), 304, HTML,
     ((), False, False)),
    ("a submit the app accepts is the lead", "POST", journey("form", submit=True), 200, HTML,
     (("lead",), True, True)),
    ("a submit answered by a redirect is the lead too", "POST", journey("form", submit=True), 303,
     {}, (("lead",), True, False)),
    ("a submit the app rejects is no lead, the form again with its field", "POST",
     journey("cookie", submit=True, save=False), 400, HTML, ((), False, True)),
    ("a POST that is no submit makes no click", "POST", journey("new"), 200, HTML,
     ((), False, False)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "journey_", "code", "headers", "expected"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_the_decision_for_each_kind_of_request_and_response(
    method: str,
    journey_: Journey,
    code: int,
    headers: dict[str, str],
    expected: tuple[tuple[str, ...], bool, bool],
) -> None:
    meta: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": "/", "QUERY_STRING": ""}
    decision = core.decide(meta, journey_, code, headers)
    kinds = tuple(event.kind for event in decision.events)
    assert (kinds, decision.set_cookie, decision.rewrite) == expected
