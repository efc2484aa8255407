"""What the tests share: apps served over a real socket on loopback (like whitenoise's
test utils), servers in real processes, tracker stand-ins, and small helpers."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from socketserver import BaseServer
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl
from wsgiref.simple_server import WSGIRequestHandler
from wsgiref.simple_server import make_server as wsgiref_make_server

from werkzeug.serving import make_server

from bangi_landing.events import Event

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

T = TypeVar("T")
ROOT = Path(__file__).parent.parent

# The field the middleware puts in a form, and the clickId it carries.
SUB1 = re.compile(r'<input type="hidden" name="sub1" value="([0-9a-f-]{36})"\s*/?>')


def form_click_ids(html: str) -> list[str]:
    return SUB1.findall(html)


# What the middleware adds: the field in forms, the clickId in links to link_hosts.
ADDED = re.compile(
    rb'<input type="hidden" name="sub1" value="[0-9a-f-]{36}"\s*/?>|[?&]clickId=[0-9a-f-]{36}'
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` in its own process group, its output in ``log``; killed if still running."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # A test run started in the background of a non-interactive shell (as CI may
            # run it) ignores SIGINT, and a child inherits that: waitress would never stop.
            preexec_fn=_default_signals,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited ({process.returncode}):\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}:\n{log.read_text()}")


def eventually(probe: Callable[[], T], timeout: float = 10) -> T:
    """The first truthy result of ``probe``; delivery is in the background."""
    deadline = time.monotonic() + timeout
    while not (result := probe()):
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)
    return result


class Recorder:
    """Collects events instead of sending them: these tests are about the WSGI protocol."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def submit(self, event: Event, *, durable: bool = False) -> bool:
        self.events.append(event)
        return True


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@contextmanager
def live_server(app: WSGIApplication, port: int = 0) -> Iterator[str]:
    """Yield the base URL (no trailing slash) of ``app`` served by a threaded server."""
    with _serving(make_server("127.0.0.1", port, app, threaded=True)) as url:
        yield url


@contextmanager
def silent_tracker() -> Iterator[str]:
    """The URL of a tracker that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(100)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


class Sink:
    """A tracker stand-in: records every request it gets, then answers as told.

    A request is recorded as soon as its body has arrived, before any
    ``delay``: like a real tracker, it may have the event although the client
    gave up waiting for the answer.
    """

    def __init__(self) -> None:
        self.status = 201
        self.statuses: dict[str, int] = {}  # eventIds answered with a status of their own
        self.headers: list[tuple[str, str]] = []
        self.body: bytes | None = None  # None: "{}", or a JSON error from 400 on
        self.delay = 0.0
        self.received: list[dict[str, object]] = []
        self.request_headers: list[dict[str, str]] = []  # of each request received, lowercase
        self.in_flight = self.most_in_flight = 0  # requests being answered at once
        self._changed = threading.Condition()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        if environ.get("CONTENT_TYPE") == "application/x-www-form-urlencoded":  # a network's API
            record = dict(parse_qsl(body.decode(), keep_blank_values=True))
        else:
            record = json.loads(body) if body else {}
        record["path"] = environ["PATH_INFO"]
        record["query"] = environ.get("QUERY_STRING", "")
        with self._changed:
            self.received.append(record)
            self.request_headers.append(
                {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k[:5] == "HTTP_"}
            )
            self._changed.notify_all()
            status = self.statuses.get(str(record.get("eventId")), self.status)
            headers, delay, answer = list(self.headers), self.delay, self.body
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(delay)
        with self._changed:
            self.in_flight -= 1
        start_response(f"{status} Sink", [("Content-Type", "application/json"), *headers])
        if answer is None:
            answer = b'{"error": "as told"}' if status >= 400 else b"{}"
        return [answer]

    def event_ids(self, path: str = "") -> list[str]:
        with self._changed:
            return [str(r["eventId"]) for r in self.received if r["path"].endswith(path)]  # type: ignore[union-attr]

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``count`` requests came in."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.received) >= count, timeout)


def raw_get(url: str, target: bytes) -> tuple[int, dict[str, Any]]:
    """GET ``target`` as these very bytes, which HTTP client libraries would normalise."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(b"GET %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n" % target)
        answer = b"".join(iter(lambda: connection.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def reference_server(app: WSGIApplication) -> Iterator[str]:
    """Like live_server, on the stdlib's wsgiref server, which passes wsgiref.validate."""
    with _serving(wsgiref_make_server("127.0.0.1", 0, app, handler_class=_QuietHandler)) as url:
        yield url


@contextmanager
def _serving(server: BaseServer) -> Iterator[str]:
    host, port = server.server_address[:2]
    # A short poll interval makes shutdown (and so each test) fast.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class ErrorsLogged(logging.Handler):
    """Collects the ERROR records of a logger it is added to."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
