"""A small landing app with every kind of response the middleware must tell apart."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

from werkzeug.wrappers import Request, Response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

PAGE = """<!doctype html>
<html><head><title>Ring <form> sale</title>
<script>var html = "<form action='/x'>";</script></head>
<body><!-- <form id="commented"> -->
<form id="order" action="/submit" method="post"><input name="name"><input name="phone"></form>
<textarea><form id="in-textarea"></textarea>
<form id="search" action="/search"></form>
<p>clickId seen by the app: {click_id}</p>
</body></html>"""

HELPER_PAGE = (
    '<form action="/submit" method="post">'
    '<input type="hidden" name="sub1" value="{click_id}"></form>'
)


def landing_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    with Request(environ) as request:  # closes parsed uploads
        return _respond(request)(environ, start_response)


def _respond(request: Request) -> Response:
    environ = request.environ
    click_id = environ.get("bangi.click_id", "")
    path = request.path
    if path == "/submit" and request.method == "POST":
        received = request.get_data()
        status = 400 if request.form.get("fail") or b'"fail"' in received else 200
        response = Response(received, status=status, content_type="text/plain")
        response.headers["X-Received-Length"] = str(len(received))
    elif path == "/style.css":
        response = Response("body{}", content_type="text/css")
    elif path == "/api":
        response = Response(json.dumps({"ok": True}), content_type="application/json")
    elif path == "/redirect":
        response = Response("", status=302, headers={"Location": "/"})
    elif path == "/missing":
        response = Response("<html>not found <form></form></html>", 404, content_type="text/html")
    elif path == "/download":
        response = Response(PAGE, content_type="text/html")
        response.headers["Content-Disposition"] = 'attachment; filename="page.html"'
    elif path == "/gzip":
        response = Response(gzip.compress(PAGE.encode()), content_type="text/html")
        response.headers["Content-Encoding"] = "gzip"
    elif path == "/utf16":
        response = Response(PAGE.encode("utf-16"), content_type="text/html; charset=utf-16")
    elif path == "/helper":
        response = Response(HELPER_PAGE.format(click_id=click_id), content_type="text/html")
    elif path == "/cached":
        response = Response(PAGE, content_type="text/html")
        response.headers["Cache-Control"] = "public, max-age=600, s-maxage=600"
        response.headers["Vary"] = "Accept-Encoding"
        response.headers["ETag"] = '"abc"'
    elif path == "/repeated":
        response = Response(PAGE, content_type="text/html")
        response.headers.add("Cache-Control", "public")
        response.headers.add("Cache-Control", "max-age=60")
        response.headers.add("Vary", "Accept-Encoding")
        response.headers.add("Vary", "Accept-Language")
    elif path == "/links":
        response = Response(
            '<a href="https://shop.example/buy?x=1">buy</a><a href="https://other.example/">o</a>',
            content_type="text/html",
        )
    else:
        response = Response(PAGE.format(click_id=click_id), content_type="text/html")
    return response
