"""PEP 3333 on both sides of the middleware, for every shape a WSGI app can take."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any
from wsgiref.validate import validator

import pytest
import requests
from werkzeug.middleware.lint import LintMiddleware
from werkzeug.test import Client, create_environ, run_wsgi_app

from bangi_landing import BangiLanding

from .utils import Recorder, reference_server

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

PAGE = b'<html><body><form action="/submit" method="post"><input name="q"></form></body></html>'
HTML = [("Content-Type", "text/html; charset=utf-8")]


def list_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [*HTML, ("Content-Length", str(len(PAGE)))])
    return [PAGE]


def declared_length_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
    # Like Flask and Django: the whole body in one chunk, its length declared.
    start_response("200 OK", [*HTML, ("Content-Length", str(len(PAGE)))])
    yield PAGE


def generator_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", HTML)  # called only when first iterated
    yield PAGE[:20]
    yield b""
    yield PAGE[20:]


def byte_chunks_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", HTML)
    for i in range(len(PAGE)):
        yield PAGE[i : i + 1]


def write_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    write = start_response("200 OK", HTML)
    write(PAGE[:30])
    write(PAGE[30:60])
    return [PAGE[60:]]


def exc_info_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", HTML)
    try:
        raise ValueError("the page failed after its headers were chosen")
    except ValueError:
        start_response("500 Internal Server Error", HTML, sys.exc_info())
    return [b"<html><form></form> error</html>"]


class ClosingBody:
    closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield PAGE

    def close(self) -> None:
        ClosingBody.closed = True


def closing_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", HTML)
    return ClosingBody()


def submit_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def fetch(app: WSGIApplication, method: str = "GET", path: str = "/", **kwargs: Any) -> Any:
    """Make one request like a server would: read the whole body, then close it."""
    response = Client(app).open(path, method=method, **kwargs)
    response.body = response.get_data()
    response.close()
    return response


def middleware(app: WSGIApplication, recorder: Recorder, **options: Any) -> BangiLanding:
    return BangiLanding(
        app,
        tracker_url="http://127.0.0.1:9",
        campaign_id=1,
        secret_key="conformance-secret-key",
        sender=recorder,
        **options,
    )


def wrap(app: WSGIApplication, recorder: Recorder, **options: Any) -> WSGIApplication:
    """The middleware between two validators: PEP 3333 checked on both sides."""
    return validator(middleware(validator(app), recorder, **options))


APPS: dict[str, tuple[WSGIApplication, str]] = {
    "list": (list_app, "200"),
    "declared-length": (declared_length_app, "200"),
    "generator": (generator_app, "200"),
    "one-byte-chunks": (byte_chunks_app, "200"),
    "write-callable": (write_app, "200"),
    "closing-body": (closing_app, "200"),
}


@pytest.mark.parametrize("name", APPS)
def test_validated_on_both_sides_and_rewritten(name: str) -> None:
    app, _ = APPS[name]
    recorder = Recorder()
    response = fetch(wrap(app, recorder))
    body = response.body
    assert response.status_code == 200
    injected = re.compile(rb'<input type="hidden" name="sub1" value="[0-9a-f-]{36}" />')
    assert len(injected.findall(body)) == 1
    assert injected.sub(b"", body) == PAGE
    assert [event.kind for event in recorder.events] == ["click"]
    # A page whose length the app declared, whole in one chunk, keeps a (new, exact)
    # Content-Length; a streamed one goes out without, its length unknown in advance.
    declared = name in ("list", "declared-length")
    assert response.headers.get("Content-Length") == (str(len(body)) if declared else None)


def test_a_one_chunk_list_comes_back_as_a_list() -> None:
    recorder = Recorder()
    wrapped = middleware(list_app, recorder)
    headers: list[tuple[str, str]] = []

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any) -> Any:
        headers.extend(response_headers)

    app_iter = wrapped(create_environ("/"), start_response)
    assert isinstance(app_iter, list) and len(app_iter) == 1
    assert app_iter[0].count(b'name="sub1"') == 1
    assert dict(headers)["Content-Length"] == str(len(app_iter[0]))


def test_body_past_the_declared_length_is_cut_as_a_server_would() -> None:
    # PEP 3333: a server stops iterating once Content-Length bytes have come, so
    # behind any server this app's page ends after the first <form>. Wrapped, it
    # ends there too, with the rewritten page's own Content-Length.
    closed = []

    def lying_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [*HTML, ("Content-Length", "6")])
        try:
            yield b"<form>"
            yield b"<form></form>"
        finally:
            closed.append(True)

    response = fetch(wrap(lying_app, Recorder()))
    field = rb'<input type="hidden" name="sub1" value="[0-9a-f-]{36}" />'
    assert re.fullmatch(rb"<form>" + field, response.body)
    assert closed == [True]


class Tracked:
    """An app's body that records how it was read and closed."""

    def __init__(self, chunks: list[bytes], *, fail: bool = False) -> None:
        self.chunks, self.fail, self.closes = chunks, fail, 0

    def __iter__(self) -> Iterator[bytes]:
        if self.fail:
            raise OSError("the page's file went away")
        yield from self.chunks

    def close(self) -> None:
        self.closes += 1


def serve(body: Tracked, length: int) -> Iterable[bytes]:
    """The middleware's answer, as a server gets it, for a page with this body."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [*HTML, ("Content-Length", str(length))])
        return body

    return middleware(app, Recorder())(create_environ("/"), lambda *args: None)


def test_a_declared_length_body_in_one_piece_is_read_closed_and_served_as_a_list() -> None:
    body = Tracked([PAGE])
    app_iter = serve(body, len(PAGE))
    assert isinstance(app_iter, list) and body.closes == 1
    assert app_iter[0].count(b'name="sub1"') == 1


def test_a_declared_length_body_in_pieces_keeps_every_piece_and_closes_once() -> None:
    body = Tracked([PAGE[:10], PAGE[10:40], PAGE[40:]])
    app_iter = serve(body, len(PAGE))
    served = b"".join(app_iter)
    assert body.closes == 0  # the server closes it, through the middleware
    app_iter.close()  # type: ignore[attr-defined]
    assert body.closes == 1
    field = rb'<input type="hidden" name="sub1" value="[0-9a-f-]{36}" />'
    assert re.sub(field, b"", served) == PAGE


def test_a_body_that_fails_when_read_is_closed_and_the_error_raised() -> None:
    body = Tracked([PAGE], fail=True)
    with pytest.raises(OSError, match="went away"):
        serve(body, len(PAGE))
    assert body.closes == 1


def test_close_is_called() -> None:
    ClosingBody.closed = False
    fetch(wrap(closing_app, Recorder()))
    assert ClosingBody.closed


def test_exc_info_after_headers_serves_the_error_page_untouched() -> None:
    # werkzeug's test client re-raises any exc_info; the reference server follows PEP 3333.
    recorder = Recorder()
    with reference_server(wrap(exc_info_app, recorder)) as url:
        response = requests.get(url + "/", timeout=5)
    assert response.status_code == 500
    assert response.content == b"<html><form></form> error</html>"
    assert recorder.events == []


@pytest.mark.parametrize(
    ("sub1", "options"),
    [("not-a-uuid", {"submit_paths": ["/submit"]}), ("0b0e3a4c-2c47-4b8e-9d0c-7f1e2d3c4b5a", {})],
)
def test_submit_body_is_handed_over_intact(sub1: str, options: dict[str, Any]) -> None:
    recorder = Recorder()
    data = f"sub1={sub1}&offer=1&".encode() + b"x=%FF&" * 100
    response = fetch(
        wrap(submit_app, recorder, **options),
        "POST",
        "/submit",
        data=data,
        content_type="application/x-www-form-urlencoded",
    )
    assert response.body == data
    assert [event.kind for event in recorder.events] == ["lead"]


def test_chunked_submit_over_the_limit_is_replayed_whole() -> None:
    recorder = Recorder()
    wrapped = middleware(
        submit_app_streaming, recorder, max_submit_size=10, submit_paths=["/submit"]
    )
    data = b"offer=1&pad=" + b"y" * 100
    environ = create_environ(
        "/submit",
        method="POST",
        input_stream=io.BytesIO(data),
        content_type="application/x-www-form-urlencoded",
    )
    del environ["CONTENT_LENGTH"]  # a chunked upload: the server says only that it ends
    environ["wsgi.input_terminated"] = True
    app_iter, status, _ = run_wsgi_app(wrapped, environ)
    body = b"".join(app_iter)
    assert (status, body) == ("200 OK", data)
    assert recorder.events[0].params == {}


def submit_app_streaming(
    environ: WSGIEnvironment, start_response: StartResponse
) -> Iterable[bytes]:
    stream = environ["wsgi.input"]
    body = stream.readline() + stream.read(7) + stream.read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


@pytest.mark.parametrize("name", APPS)
def test_werkzeug_lint_finds_nothing(name: str, recwarn: pytest.WarningsRecorder) -> None:
    app, _ = APPS[name]
    fetch(LintMiddleware(middleware(LintMiddleware(app), Recorder())))
    assert not recwarn.list


def test_werkzeug_lint_sees_close_called(recwarn: pytest.WarningsRecorder) -> None:
    ClosingBody.closed = False
    fetch(LintMiddleware(middleware(LintMiddleware(closing_app), Recorder())))
    assert ClosingBody.closed
    assert not recwarn.list


def test_werkzeug_lint_finds_nothing_in_exc_info_after_headers(
    recwarn: pytest.WarningsRecorder,
) -> None:
    recorder = Recorder()
    linted = LintMiddleware(middleware(LintMiddleware(exc_info_app), recorder))
    with reference_server(linted) as url:
        response = requests.get(url + "/", timeout=5)
    assert response.status_code == 500
    assert response.content == b"<html><form></form> error</html>"
    assert recorder.events == []
    assert not recwarn.list
