"""Shared pieces of the benchmarks: a loopback tracker stand-in in its own process, timing.

The stand-in runs in a separate process, as a real tracker would: in the
benchmark's process its HTTP parsing would compete for the GIL with the pages
being measured.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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
    _run_sink(float(sys.argv[1]))
