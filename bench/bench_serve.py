"""Requests per second of ``bangi-landing serve`` ÷ a plain static server of the same files.

    python bench/bench_serve.py [--seconds 2] [--rounds 9] [--connections 8]

A file landing (a 12 KiB page with its order form, a stylesheet, a 40 KiB
image) is served by two processes side by side, both on waitress with 8
threads: ``bangi-landing serve`` (events to a loopback tracker stand-in in a
process of its own) and werkzeug's ``SharedDataMiddleware`` over the same
folder, with no tracking. A load generator on loopback (keep-alive
connections, one thread each, in this process) requests one URL for a few
seconds at each server in turn; each round gives the ratio of the two rates,
and the figure is the median ratio over the rounds (pairing by round cancels
the machine's drift). Three URLs: the page for a returning visitor (journey
cookie sent), the page for a new visitor (no cookie: each request is a click,
and a cookie set), and the image.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))

from bench._common import sink

ROOT = Path(__file__).parent.parent
SECRET = "bench-secret-key-0123456789"
THREADS = 8


def make_landing(folder: Path) -> None:
    (folder / "img").mkdir(parents=True)
    text = "lorem ipsum dolor sit amet " * 12
    paragraphs = "".join(f"<p>Benefit {n}: {text}</p>" for n in range(30))
    (folder / "index.html").write_text(
        '<!doctype html><html><head><meta charset="utf-8"><title>Ring</title>'
        '<link rel="stylesheet" href="style.css"></head><body>'
        f'<img src="img/hero.png" alt="">{paragraphs}'
        '<form action="order.php" method="post"><input name="name"><input name="phone">'
        "<button>Order</button></form></body></html>"
    )
    (folder / "style.css").write_text("body { font: 16px sans-serif; }\n" * 100)
    (folder / "img" / "hero.png").write_bytes(os.urandom(40 * 1024))
    (folder / "success.html").write_text("<!doctype html><p>Thank you!</p>")


def static_app(folder: str):  # type: ignore[no-untyped-def]
    """The same files with no tracking: werkzeug's static server, ``/`` as index.html."""
    from werkzeug.middleware.shared_data import SharedDataMiddleware

    def index(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]

    shared = SharedDataMiddleware(index, {"/": folder})

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        if environ.get("PATH_INFO") == "/":
            environ["PATH_INFO"] = "/index.html"
        return shared(environ, start_response)

    return app


@contextmanager
def server(command: list[str], port: int, env: dict[str, str]) -> Iterator[None]:
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                connection.request("GET", "/style.css")
                connection.getresponse().read()
                connection.close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"{command} did not start") from None
                time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rate(port: int, path: str, cookie: str | None, seconds: float, connections: int) -> float:
    """Requests per second over ``connections`` keep-alive connections for ``seconds``."""
    counts = [0] * connections
    stop = time.monotonic() + seconds
    headers = {"Cookie": cookie} if cookie else {}

    def load(slot: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < stop:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            assert response.status == 200, response.status
            counts[slot] += 1
        connection.close()

    threads = [threading.Thread(target=load, args=(slot,)) for slot in range(connections)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - start)


def journey_cookie(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", "/")
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.getheader("Set-Cookie", "").split(";")[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    try:
        make_landing(folder / "site")
        serve_port, static_port = free_port(), free_port()
        with sink() as tracker:
            env = {
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "BANGI_TRACKER_URL": tracker,
                "BANGI_CAMPAIGN_ID": "1",
                "BANGI_SECRET_KEY": SECRET,
                "BANGI_OUTBOX": str(folder / "outbox.sqlite3"),
            }
            serve = [sys.executable, "-m", "bangi_landing", "serve", str(folder / "site")]
            serve += ["--port", str(serve_port), "--threads", str(THREADS)]
            static = [
                sys.executable,
                "-c",
                "import sys, waitress; from bench.bench_serve import static_app;"
                f" waitress.serve(static_app(sys.argv[1]), port={static_port},"
                f" threads={THREADS}, _quiet=True)",
                str(folder / "site"),
            ]
            with server(serve, serve_port, env), server(static, static_port, env):
                cookie = journey_cookie(serve_port)
                cases = {
                    "page, returning visitor": ("/", cookie),
                    "page, new visitor (a click each)": ("/", None),
                    "image (40 KiB)": ("/img/hero.png", None),
                }
                print(
                    f"{args.rounds} rounds of {args.seconds:g} s per server,"
                    f" {args.connections} connections, waitress with {THREADS} threads"
                )
                print(f"{'URL':<34} {'serve req/s':>12} {'static req/s':>13} {'ratio':>7}")
                for name, (path, sent_cookie) in cases.items():
                    ratios, served, plain = [], [], []
                    for _ in range(args.rounds):
                        a = rate(serve_port, path, sent_cookie, args.seconds, args.connections)
                        b = rate(static_port, path, None, args.seconds, args.connections)
                        served.append(a)
                        plain.append(b)
                        ratios.append(a / b)
                    print(
                        f"{name:<34} {statistics.median(served):>12.0f}"
                        f" {statistics.median(plain):>13.0f} {statistics.median(ratios):>7.2f}"
                    )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
