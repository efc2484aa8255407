"""The delivery client (destinations/http11.py and base.py) against real servers on loopback.

The bundled tracker under werkzeug, gunicorn (sync workers close after each
answer; gthread keeps the connection) and waitress takes a pipelined batch of
clicks, each once. Scripted servers (a socket that answers the test's own
bytes) give the answers a tracker rarely gives: chunked with extensions and
trailers, 1xx, 429, a body too large, HTTP/1.0, ``Connection: close`` in the
middle of a pipeline, a reset, silence, an idle connection closed, garbage.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from werkzeug.http import http_date

from bangi_landing.destinations import BangiTracker, DeliveryError
from bangi_landing.destinations import base as destinations_base
from bangi_landing.destinations.base import MAX_RESPONSE_BODY, HttpDestination, Request
from bangi_landing.destinations.http11 import Connection, Response
from bangi_landing.events import Event
from bangi_landing.tracker import create_app

from .utils import free_port, live_server, running, wait_for_port

SHORT = (1.0, 0.5)  # connect and read timeouts: a silent server fails fast
GUNICORN = [sys.executable, "-m", "gunicorn", "--no-control-socket", "--workers", "1"]
# name: the command line up to the address to bind (None: werkzeug, in this process)
TRACKER_SERVERS: dict[str, list[str] | None] = {
    "werkzeug": None,
    "gunicorn-sync": [*GUNICORN, "--worker-class", "sync", "--bind"],
    "gunicorn-gthread": [*GUNICORN, "--worker-class", "gthread", "--threads", "4", "--bind"],
    "waitress": [sys.executable, "-m", "waitress", "--threads", "4", "--listen"],
}
# werkzeug's development server answers HTTP/1.1 with "Connection: close", as gunicorn's sync
# workers do: a connection per request.
KEEPS_ALIVE = ["gunicorn-gthread", "waitress"]
CLOSES = ["werkzeug", "gunicorn-sync"]


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Connection]:
    """Every connection delivery opens during the test, in order."""
    made: list[Connection] = []

    class Counted(Connection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(destinations_base, "Connection", Counted)
    return made


# The bundled tracker under real servers


@contextmanager
def tracker_served(server: str, db: Path, log: Path) -> Iterator[str]:
    """The bundled tracker on ``db``, served by ``server`` on loopback; its URL."""
    command = TRACKER_SERVERS[server]
    if command is None:
        app = create_app(db)
        try:
            with live_server(app) as url:
                yield url
        finally:
            app.extensions["bangi_tracker"].close()
        return
    port = free_port()
    env = {**os.environ, "BANGI_TEST_TRACKER_DB": str(db)}
    with running([*command, f"127.0.0.1:{port}", "tests.tracker_wsgi:app"], env, log) as process:
        wait_for_port(port, process, log)
        yield f"http://127.0.0.1:{port}"


def clicks(count: int) -> list[Event]:
    return [Event("click", str(uuid.uuid4()), {"campaignId": 7}) for _ in range(count)]


def stored_event_ids(db: Path) -> list[str]:
    """The eventId of every event the tracker stored, with repeats if it stored any twice."""
    with sqlite3.connect(db) as store:
        return sorted(row[0] for row in store.execute("SELECT event_id FROM events"))


def ids(events: list[Event]) -> list[str]:
    return sorted(event.event_id for event in events)


@pytest.mark.slow
@pytest.mark.parametrize("server", KEEPS_ALIVE)
def test_batches_reach_the_tracker_once_each_over_one_kept_alive_connection(
    server: str, tmp_path: Path, opened: list[Connection]
) -> None:
    db = tmp_path / "tracker.sqlite3"
    first, second = clicks(50), clicks(50)
    with tracker_served(server, db, tmp_path / "server.log") as url:
        tracker = BangiTracker(url)
        assert tracker.deliver_all(first) == [None] * 50
        assert tracker.deliver_all(second) == [None] * 50  # the same connection, kept alive
        tracker.close()
    assert stored_event_ids(db) == ids(first + second)
    assert len(opened) == 1


@pytest.mark.slow
@pytest.mark.parametrize("server", CLOSES)
def test_a_tracker_that_closes_after_each_answer_gets_one_request_at_a_time(
    server: str, tmp_path: Path, opened: list[Connection]
) -> None:
    db = tmp_path / "tracker.sqlite3"
    first, second = clicks(50), clicks(20)
    with tracker_served(server, db, tmp_path / "server.log") as url:
        tracker = BangiTracker(url)
        # The pipelined batch: the server answers its first request and closes. An
        # event whose answer was lost with the connection is retryable, and is
        # sent again as the sender would.
        todo = first
        for _ in range(3):
            errors = tracker.deliver_all(todo)
            assert all(error is None or error.retryable for error in errors), errors
            todo = [event for event, error in zip(todo, errors, strict=True) if error]
        assert todo == []
        before = len(opened)
        # From then on, one request per connection: no batch is written to it again.
        assert tracker.deliver_all(second) == [None] * 20
        assert len(opened) - before == 20
    assert stored_event_ids(db) == ids(first + second)


# Scripted servers: the test's own bytes on a loopback socket


@pytest.fixture
def destination() -> Iterator[HttpDestination]:
    """A destination of the default timeouts; its kept-alive connections closed after the test."""
    destination = HttpDestination()
    yield destination
    destination.close()


class Peer:
    """The server's side of one connection: reads requests, sends what the script says."""

    def __init__(self, sock: socket.socket, number: int, server: Scripted) -> None:
        self.sock = sock
        self.number = number  # 1 for the first connection the server accepted
        self.server = server
        self.received: list[bytes] = []  # the request bodies that came on this connection
        self._buffer = b""

    def request(self, *, wait: bool = True) -> bytes | None:
        """The next request's body (by its Content-Length); None once the client closed.

        :param wait: False reads no more from the socket: None unless the
            request already arrived whole.
        """
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            if not (wait and self._receive()):
                return None
        length = 0
        for line in self._buffer[:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self._buffer) < end + 4 + length:
            if not (wait and self._receive()):
                return None
        body = self._buffer[end + 4 : end + 4 + length]
        self._buffer = self._buffer[end + 4 + length :]
        with self.server.lock:
            self.received.append(body)
            self.server.received.append(body)
        return body

    def answer(self, body: bytes, data: bytes) -> None:
        """Send ``data``, the answer to the request of ``body`` (recorded as answered)."""
        with self.server.lock:  # first: the client may act on the answer before sendall returns
            self.server.answered.append(body)
        self.sock.sendall(data)

    def reset(self) -> None:
        """Abort the connection: an RST, not a FIN (SO_LINGER with a zero timeout)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def _receive(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except OSError:
            return False
        self._buffer += data
        return bool(data)


Script = Callable[[Peer], None]


class Scripted:
    """A loopback server that runs ``script`` on each connection it accepts, then closes it."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        self.connections = 0
        self.received: list[bytes] = []  # request bodies, as they arrived
        self.answered: list[bytes] = []  # request bodies the script answered
        self.closed = threading.Event()  # set each time a script ends and its socket is closed
        self._threads: list[threading.Thread] = []
        self._peers: list[Peer] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:  # closed: the test is over
                return
            with self.lock:
                self.connections += 1
                peer = Peer(sock, self.connections, self)
                self._peers.append(peer)
            thread = threading.Thread(target=self._run, args=(peer,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self, peer: Peer) -> None:
        try:
            self.script(peer)
        except OSError:
            pass  # the client went away; what it got is what the test checks
        finally:
            peer.sock.close()
            self.closed.set()

    def per_connection(self) -> list[list[bytes]]:
        """The request bodies each connection brought, in the order they were accepted."""
        with self.lock:
            return [peer.received for peer in self._peers]

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._accepting.join(5)
        for peer in self._peers:  # a script waiting for a kept-alive client's next request
            with suppress(OSError):  # its script ended and closed it
                peer.sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)


@contextmanager
def scripted(script: Script) -> Iterator[Scripted]:
    server = Scripted(script)
    try:
        yield server
    finally:
        server.close()


def answer(body: bytes = b"{}", status: str = "200 OK", *headers: str) -> bytes:
    """An HTTP/1.1 answer of ``body`` sized by Content-Length, with ``headers``."""
    head = "".join(f"{header}\r\n" for header in headers)
    return b"HTTP/1.1 %s\r\n%sContent-Length: %d\r\n\r\n%s" % (
        status.encode(),
        head.encode(),
        len(body),
        body,
    )


def echo(peer: Peer) -> None:
    """Answer each request, kept alive, with its own body."""
    while (body := peer.request()) is not None:
        peer.answer(body, answer(body))


def posts(url: str, count: int) -> list[Request]:
    return [
        Request("POST", f"{url}/events", b'{"n": %d}' % n, "application/json") for n in range(count)
    ]


def bodies(outcomes: list[Response | DeliveryError]) -> list[bytes]:
    assert all(isinstance(outcome, Response) for outcome in outcomes), outcomes
    return [outcome.body for outcome in outcomes if isinstance(outcome, Response)]


def sent(requests: list[Request]) -> list[bytes]:
    return [request.body or b"" for request in requests]


def failure(outcome: Response | DeliveryError) -> DeliveryError:
    assert isinstance(outcome, DeliveryError), outcome
    return outcome


def test_pipelined_requests_are_answered_in_order_over_one_connection(
    destination: HttpDestination,
) -> None:
    with scripted(echo) as server:
        requests = posts(server.url, 20)
        assert bodies(destination.request_all(requests)) == sent(requests)
        assert server.connections == 1


def chunked_echo(peer: Peer) -> None:
    """Each answer chunked: a chunk per byte, with extensions, then trailers."""
    while (body := peer.request()) is not None:
        chunks = b"".join(
            b'%x;ext=%d;q="a;b"\r\n%s\r\n' % (1, n, body[n : n + 1]) for n in range(len(body))
        )
        peer.answer(
            body,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunks
            + b"0;last\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n",
        )


def test_chunked_answers_with_extensions_and_trailers(destination: HttpDestination) -> None:
    with scripted(chunked_echo) as server:
        requests = posts(server.url, 3)
        assert bodies(destination.request_all(requests)) == sent(requests)
        assert bodies(destination.request_all(requests[:1])) == sent(requests[:1])
        assert server.connections == 1  # the trailers were read to their end: kept alive


def interim_then_echo(peer: Peer) -> None:
    while (body := peer.request()) is not None:
        interim = (
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        )
        peer.answer(body, interim + answer(body, "201 Created"))


def test_interim_answers_are_skipped(destination: HttpDestination) -> None:
    with scripted(interim_then_echo) as server:
        requests = posts(server.url, 3)
        outcomes = destination.request_all(requests)
        assert bodies(outcomes) == sent(requests)
        assert {outcome.status for outcome in outcomes if isinstance(outcome, Response)} == {201}
        assert server.connections == 1


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [("120", 120.0, 120.0), ("in ten minutes", 590.0, 600.0)],
)
def test_429_is_retryable_after_the_servers_wish(
    destination: HttpDestination, retry_after: str, low: float, high: float
) -> None:
    value = http_date(time.time() + 600) if retry_after == "in ten minutes" else retry_after

    def busy(peer: Peer) -> None:
        while (body := peer.request()) is not None:
            error = b'{"error": "slow down"}'
            peer.answer(body, answer(error, "429 Too Many Requests", f"Retry-After: {value}"))

    with scripted(busy) as server:
        for outcome in destination.request_all(posts(server.url, 2)):
            error = failure(outcome)
            assert error.retryable and error.status == 429
            assert error.retry_after is not None and low <= error.retry_after <= high
            assert "slow down" in str(error)
        assert server.connections == 1  # the error's body was read: the connection kept


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_over_the_limit_is_cut_and_its_connection_not_reused(
    destination: HttpDestination, framing: str
) -> None:
    huge = b"x" * (MAX_RESPONSE_BODY + 1000)
    chunks = b"".join(b"400\r\n%s\r\n" % huge[n : n + 1024] for n in range(0, len(huge), 1024))
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%s0\r\n\r\n" % chunks

    def large_then_echo(peer: Peer) -> None:
        while (body := peer.request()) is not None:
            if peer.number > 1:
                peer.answer(body, answer(body))
            else:
                peer.answer(body, chunked if framing == "chunked" else answer(huge))

    with scripted(large_then_echo) as server:
        first = posts(server.url, 1)
        [large] = destination.request_all(first)
        assert isinstance(large, Response) and large.body == huge[:MAX_RESPONSE_BODY]
        requests = posts(server.url, 2)
        assert bodies(destination.request_all(requests)) == sent(requests)
        # Not even tried on the first connection, where the rest of the body waits.
        assert server.per_connection() == [sent(first), sent(requests)]


@pytest.mark.parametrize(
    "answer_of",
    [
        lambda body: b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
        lambda body: answer(body, "200 OK", "Connection: close"),
    ],
    ids=["http/1.0", "connection-close"],
)
def test_a_connection_the_server_does_not_keep_is_closed_and_not_reused(
    destination: HttpDestination,
    answer_of: Callable[[bytes], bytes],
) -> None:
    client_closed: list[int] = []

    def once_then_wait(peer: Peer) -> None:
        body = peer.request()
        assert body is not None
        peer.answer(body, answer_of(body))
        # The server leaves the connection open: the client must close it itself.
        if peer.request() is None:
            client_closed.append(peer.number)

    with scripted(once_then_wait) as server:
        for request in posts(server.url, 3):
            assert bodies(destination.request_all([request])) == sent([request])
        assert server.connections == 3
    assert sorted(client_closed) == [1, 2, 3]


def test_an_http10_body_ends_with_the_connection(destination: HttpDestination) -> None:
    def until_close(peer: Peer) -> None:
        body = peer.request()
        assert body is not None
        peer.answer(body, b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)

    with scripted(until_close) as server:
        requests = posts(server.url, 2)
        assert bodies(destination.request_all(requests)) == sent(requests)
        assert server.connections == 2


def test_connection_close_mid_pipeline_sends_the_rest_again_each_answered_once(
    destination: HttpDestination,
) -> None:
    def close_after_two(peer: Peer) -> None:
        for number in range(2 if peer.number == 1 else 1_000_000):
            body = peer.request()
            if body is None:
                return
            last = peer.number == 1 and number == 1
            peer.answer(body, answer(body, "200 OK", *(["Connection: close"] if last else [])))

    with scripted(close_after_two) as server:
        requests = posts(server.url, 6)
        assert bodies(destination.request_all(requests)) == sent(requests)
        assert server.answered == sent(requests)  # each once, in order
        assert server.connections == 2  # the rest on a new connection, kept alive


@pytest.mark.parametrize("hang_up", ["fin", "rst"])
def test_a_server_that_closes_after_each_answer_gets_one_request_per_connection(
    destination: HttpDestination, hang_up: str
) -> None:
    def one_per_connection(peer: Peer) -> None:
        body = peer.request()
        if body is not None:
            peer.answer(body, answer(body, "200 OK", "Connection: close"))
        if hang_up == "fin":
            while peer.request() is not None:  # what else came, until the client hangs up
                pass
        else:  # at once, with pipelined requests unread, as gunicorn's sync workers do
            while peer.request(wait=False) is not None:
                pass
            peer.reset()

    with scripted(one_per_connection) as server:
        requests = posts(server.url, 6)
        assert bodies(destination.request_all(requests)) == sent(requests)
        more = posts(server.url, 2)
        assert bodies(destination.request_all(more)) == sent(more)
        assert server.answered == sent(requests + more)
        # The first connection got the whole batch; every later one a single request.
        first, *later = server.per_connection()
        assert first[0] == requests[0].body
        assert later == [[body] for body in sent(requests[1:] + more)]
        if hang_up == "fin":
            assert first == sent(requests)


def test_a_reset_mid_response_is_a_retryable_connection_failure() -> None:
    def reset_mid_body(peer: Peer) -> None:
        body = peer.request()
        assert body is not None
        peer.sock.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"par')
        time.sleep(0.1)  # the head and a part of the body arrive first
        peer.reset()

    with scripted(reset_mid_body) as server:
        [outcome] = HttpDestination(timeout=SHORT).request_all(posts(server.url, 1))
        error = failure(outcome)
        assert error.retryable and str(error).startswith("connection failed")
        assert server.received == sent(posts(server.url, 1))  # sent once, not again


def silent(peer: Peer) -> None:
    """Never answer; end when the client gives up and closes."""
    while peer.request() is not None:
        pass


def test_a_read_timeout_fails_every_unanswered_request_as_retryable() -> None:
    with scripted(silent) as server:
        started = time.monotonic()
        outcomes = HttpDestination(timeout=SHORT).request_all(posts(server.url, 3))
        assert time.monotonic() - started < 5  # a read timeout of half a second
        for outcome in outcomes:
            error = failure(outcome)
            assert error.retryable and str(error) == "timed out"
        assert server.closed.wait(5)  # the client closed the connection it gave up on


def test_bangi_tracker_times_out_on_a_silent_server() -> None:
    with scripted(silent) as server:
        [error] = BangiTracker(server.url, timeout=SHORT).deliver_all(clicks(1))
        assert error is not None and error.retryable and str(error) == "timed out"


def test_an_idle_connection_the_server_closed_is_retried_once_on_a_fresh_one(
    destination: HttpDestination,
) -> None:
    def one_then_close(peer: Peer) -> None:
        # No "Connection: close": the client believes the connection kept alive.
        body = peer.request()
        if body is not None:
            peer.answer(body, answer(body))

    with scripted(one_then_close) as server:
        first, second = posts(server.url, 2)
        assert bodies(destination.request_all([first])) == sent([first])
        assert server.closed.wait(5)  # the request goes to a closed connection (FIN or RST)
        assert bodies(destination.request_all([second])) == sent([second])
        assert server.connections == 2


def test_a_server_that_closes_every_connection_at_once_fails_after_one_retry() -> None:
    def hang_up(peer: Peer) -> None:
        peer.request()

    with scripted(hang_up) as server:
        [outcome] = HttpDestination(timeout=SHORT).request_all(posts(server.url, 1))
        error = failure(outcome)
        assert error.retryable and str(error).startswith("connection failed")
        assert server.connections == 1  # a fresh connection is not retried


@pytest.mark.parametrize(
    "garbage",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 OK 200\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\n{}",
    ],
    ids=["status-line", "status-code", "header", "chunk-size", "content-length"],
)
def test_garbage_is_a_retryable_protocol_failure(garbage: bytes) -> None:
    def garble(peer: Peer) -> None:
        body = peer.request()
        assert body is not None
        peer.answer(body, garbage)
        peer.request()  # until the client hangs up

    with scripted(garble) as server:
        [outcome] = HttpDestination(timeout=SHORT).request_all(posts(server.url, 1))
        error = failure(outcome)
        assert error.retryable and str(error) == "connection failed: ProtocolError"
        assert server.closed.wait(5)  # the client dropped the connection


@pytest.mark.parametrize(
    "headers",
    [{"X-Token": "a\r\nX-Admin: 1"}, {"X-Token\nX-Admin": "1"}, {"X-Token": "a\rb"}],
)
def test_a_line_break_in_a_configured_header_fails_for_good_and_sends_nothing(
    destination: HttpDestination,
    headers: dict[str, str],
) -> None:
    with scripted(echo) as server:
        request = Request("POST", f"{server.url}/events", b"{}", "application/json", headers)
        good = Request("POST", f"{server.url}/events", b"[]", "application/json")
        bad, fine = destination.request_all([request, good])
        error = failure(bad)
        assert not error.retryable and "line break" in str(error)
        assert isinstance(fine, Response)
        assert server.received == [b"[]"]  # the other request went; the bad one did not
