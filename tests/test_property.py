"""The whole middleware over random requests and responses, PEP 3333 checked on both sides.

Whatever a visitor sends and whatever the app answers, the middleware never
raises and logs no error, the app gets the request body byte for byte, the
visitor gets the app's status and, once the injected fields are taken out,
the app's bytes.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from wsgiref.validate import validator

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import create_environ, run_wsgi_app

from bangi_landing import BangiLanding

from .utils import ADDED, ErrorsLogged, Recorder

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

SECRET = "property-secret-key-0123"
CLICK_ID = str(uuid.UUID(int=7, version=4))

texts = st.text(st.characters(codec="utf-8"), max_size=30)
html_pieces = st.sampled_from(
    [
        b"<form>",
        b'<form action="/submit" method="post">',
        b"</form>",
        b"<input name=sub1>",
        b"<svg><form></svg>",
        b"<!-- <form> -->",
        b"<script>'<form>'</script>",
        b"<textarea><form></textarea>",
        b'<a href="https://shop.example/x">',
        b"<p>text</p>",
        b"\xff\xfe",
        "é<form>".encode(),
    ]
)
bodies = st.lists(st.one_of(html_pieces, st.binary(max_size=20)), max_size=8).map(b"".join)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    method = draw(st.sampled_from(["GET", "POST", "HEAD", "PUT"]))
    query = "&".join(
        f"{quote(k)}={quote(v)}"
        for k, v in draw(
            st.lists(st.tuples(st.sampled_from(["clickId", "source", "email", "x"]), texts))
        )
    )
    if draw(st.booleans()):
        query += f"&clickId={CLICK_ID}"
    cookie = draw(
        st.sampled_from(
            ["", "bangi_journey=garbage", "theme=\xe9t\xe9; bangi_journey=a.b", "x=\xff"]
        )
    )
    content_type = draw(
        st.sampled_from(
            [
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
                "application/json",
                "text/plain",
                "",
            ]
        )
    )
    field = draw(st.sampled_from([CLICK_ID, "not-a-uuid", ""]))
    body = draw(
        st.one_of(
            st.binary(max_size=200),
            st.just(f"sub1={field}&offer=1&name=Ana".encode()),
            st.just(f'{{"sub1": "{field}", "nested": {{"phone": "+1 555 0100"}}}}'.encode()),
        )
    )
    return {
        "method": method,
        "path": draw(st.sampled_from(["/", "/submit", "/order", "/a%20b"])),
        "query": query,
        "cookie": cookie,
        "content_type": content_type,
        "body": body if method in ("POST", "PUT") else b"",
    }


@st.composite
def responses(draw: st.DrawFn) -> dict[str, Any]:
    body = draw(bodies)
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
    chunks = [body[i:j] for i, j in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    headers = []
    content_type = draw(
        st.sampled_from(
            [
                "text/html",
                "text/html; charset=utf-8",
                "text/html; charset=utf-16",
                "text/css",
                "application/octet-stream",
            ]
        )
    )
    headers.append(("Content-Type", content_type))  # PEP 3333 wants one on every page
    if draw(st.booleans()):
        headers.append(("Content-Length", str(len(body))))
    return {
        "status": draw(st.sampled_from(["200 OK", "204 No Content", "302 Found", "404 Not Found"])),
        "headers": headers,
        "chunks": chunks,
        "generator": draw(st.booleans()),
    }


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=requests(), response=responses())
def test_any_request_and_response_pass_through_intact(
    request: dict[str, Any], response: dict[str, Any]
) -> None:
    received: list[bytes] = []
    status = response["status"]
    no_body = status.startswith(("204", "304"))
    chunks = [] if no_body else response["chunks"]
    headers = [h for h in response["headers"] if not (no_body and h[0] == "Content-Length")]
    if no_body:
        headers = [h for h in headers if h[0] != "Content-Type"]

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        received.append(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))

        def generate() -> Iterator[bytes]:
            start_response(status, headers)
            yield from chunks

        if response["generator"]:
            return generate()
        start_response(status, headers)
        return chunks

    middleware = BangiLanding(
        validator(app),
        tracker_url="http://127.0.0.1:9",
        campaign_id=1,
        secret_key=SECRET,
        sender=Recorder(),
        link_hosts=["shop.example"],
    )
    errors = ErrorsLogged()  # per example, so hypothesis can find the one
    logger = logging.getLogger("bangi_landing")
    logger.addHandler(errors)
    try:
        environ = create_environ(
            request["path"],
            method=request["method"],
            query_string=request["query"],
            input_stream=io.BytesIO(request["body"]),
            content_length=len(request["body"]),
            content_type=request["content_type"] or None,
            headers={"Cookie": request["cookie"]} if request["cookie"] else None,
        )
        app_iter, got_status, _ = run_wsgi_app(validator(middleware), environ)
        try:
            body = b"".join(app_iter)
        finally:
            app_iter.close()  # type: ignore[attr-defined]
    finally:
        logger.removeHandler(errors)
    assert errors.records == []
    assert received == [request["body"]]
    assert got_status == status
    if request["method"] != "HEAD":
        assert ADDED.sub(b"", body) == b"".join(chunks)
