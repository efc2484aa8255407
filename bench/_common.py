"""Shared pieces of the benchmarks: loopback tracker stand-ins in their own processes, timing.

The stand-ins run in separate processes, as a real tracker would: in the
benchmark's process their HTTP parsing would compete for the GIL with the
pages being measured. ``sink`` is a threaded ``http.server`` (a delay per
request if asked); ``instant_tracker`` an asyncio one that answers at once
and counts what it got, for measuring the landing's side alone.
"""

from __future__ import annotations

import asyncio
import http.client
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class _SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real tracker behind a proxy
    disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart
    delay = 0.0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.delay:
            time.sleep(self.delay)
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST

    def log_message(self, format: str, *args: object) -> None:
        pass


def _run_sink(delay: float) -> None:
    _SinkHandler.delay = delay
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SinkHandler)
    server.daemon_threads = True
    print(server.server_port, flush=True)
    server.serve_forever()


@contextmanager
def sink(delay: float = 0.0) -> Iterator[str]:
    """The URL of a tracker stand-in (its own process) answering 201 after ``delay`` s."""
    process = subprocess.Popen(
        [sys.executable, __file__, str(delay)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield f"http://127.0.0.1:{process.stdout.readline().strip()}"
    finally:
        process.kill()
        process.wait()
        if process.stdout:
            process.stdout.close()


@contextmanager
def silent_tracker() -> Iterator[str]:
    """The URL of a tracker that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


class _InstantSink(asyncio.Protocol):
    """Answers each HTTP/1.1 request ``{}`` on a kept-alive connection; GET /count: the count."""

    received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            length = re.search(rb"content-length:\s*(\d+)", head)
            size = end + 4 + (int(length.group(1)) if length else 0)
            if len(self.buffer) < size:
                return
            self.buffer = self.buffer[size:]
            if head.startswith(b"get /count"):
                body = str(_InstantSink.received).encode()
            else:
                _InstantSink.received += 1
                body = b"{}"
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )


def _run_instant_sink(port: int) -> None:
    loop = asyncio.new_event_loop()
    loop.run_until_complete(loop.create_server(_InstantSink, "127.0.0.1", port, backlog=1024))
    loop.run_forever()


@contextmanager
def instant_tracker() -> Iterator[str]:
    """The URL of a tracker stand-in (its own process) answering every request at once.

    ``GET /count`` answers how many other requests it got.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, __file__, "--instant", str(port)])
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def post_each(url: str, path: str, content_type: str, bodies: Iterable[bytes]) -> float:
    """Seconds to POST each body (made as it goes) over one kept-alive ``http.client`` connection.

    The bare loop a delivery rate is compared with: what the stdlib alone
    does for the same requests, each answered 201.
    """
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    headers = {"Content-Type": content_type}
    start = time.perf_counter()
    for body in bodies:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 201
    took = time.perf_counter() - start
    connection.close()
    return took


def alternate(
    runs: dict[str, Callable[[], None]], *, batch: int, rounds: int, pause: float = 0.0
) -> dict[str, list[float]]:
    """Seconds per call of each function, one sample per round, timed in alternating batches.

    With ``pause``, each call comes that many seconds after the last, which
    are not timed: a response time at a steady rate rather than flat out, as
    the background work a call leaves (delivery) then has time to finish.
    """
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            samples[name].append(_timed(run, batch, pause) / batch)
    return samples


def _timed(run: Callable[[], None], calls: int, pause: float) -> float:
    """Seconds ``calls`` calls of ``run`` took, the pauses before each left out."""
    if not pause:
        start = time.perf_counter()
        for _ in range(calls):
            run()
        return time.perf_counter() - start
    took = 0.0
    for _ in range(calls):
        time.sleep(pause)
        start = time.perf_counter()
        run()
        took += time.perf_counter() - start
    return took


def paired_ratio(samples: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """The median over rounds of one run's time ÷ another's in the same round.

    Pairing by round cancels the machine's drift (another tenant, frequency
    changes), which moves both runs of a round alike.
    """
    return statistics.median(
        a / b for a, b in zip(samples[numerator], samples[denominator], strict=True)
    )


if __name__ == "__main__":
    if sys.argv[1] == "--instant":
        _run_instant_sink(int(sys.argv[2]))
    else:
        _run_sink(float(sys.argv[1]))
