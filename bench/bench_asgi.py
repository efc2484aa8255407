"""The ASGI door's cost on a Starlette landing, and the event loop while leads come in.

    python bench/bench_asgi.py

1. Wrapped ÷ bare time per request for a Starlette landing page rendered from
   a Jinja2 template (the demo's page), in-process: the ASGI app called
   directly with recorded send/receive, alternating batches in one run. A
   returning visitor (valid cookie) and a new visitor (a click, handed to a
   sender that drops it). Medians over 60 rounds of the round's wrapped ÷ bare.
2. Event-loop lag under uvicorn-style load: a 1 ms ticker task on the loop
   while 50 leads a second are submitted through the door with the outbox on
   (each lead an fsync, off the loop); the largest delay of a tick, p99 and max.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent))

from jinja2 import Environment, FileSystemLoader
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from bangi_landing.asgi import BangiLandingASGI
from bench._common import paired_ratio
from bench.bench_middleware import CountingSender

SECRET = "bench-secret-key-0123456789"
TEMPLATES = Path(__file__).parent.parent / "demo_site" / "templates"


def landing() -> Starlette:
    """A Starlette landing: the demo's order page from its template, and an order endpoint."""
    jinja = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True)
    template = jinja.get_template("index.html")
    context = {"url_for": lambda *args, **kwargs: "/", "bangi_hidden_field": lambda: ""}

    async def index(request: Request) -> Response:
        return HTMLResponse(template.render(**context, click_id=""))

    async def order(request: Request) -> Response:
        await request.body()
        return HTMLResponse("<p>Thank you</p>")

    return Starlette(routes=[Route("/", index), Route("/order", order, methods=["POST"])])


def scope(path: str, query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None,
          method: str = "GET") -> dict[str, Any]:  # fmt: skip
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers or [],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def call(app: Any, request: dict[str, Any], body: bytes = b"") -> None:
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        pass

    await app(dict(request), receive, send)


async def ratio_bench() -> None:
    bare = landing()
    wrapped = BangiLandingASGI(
        landing(), tracker_url="http://127.0.0.1:9", campaign_id=1, secret_key=SECRET,
        sender=CountingSender(),
    )  # fmt: skip
    cookie = wrapped.cookie.header("8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1", secure=False)
    new = scope("/", b"source=facebook&ad_name=video-01")
    returning = {**new, "headers": [(b"cookie", cookie.split(";", 1)[0].encode())]}
    runs = {
        "bare, new": (bare, new),
        "wrapped, new": (wrapped, new),
        "bare, returning": (bare, returning),
        "wrapped, returning": (wrapped, returning),
    }
    for app, request in runs.values():  # warm up
        for _ in range(200):
            await call(app, request)
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(60):
        for name, (app, request) in runs.items():
            start = time.perf_counter()
            for _ in range(100):
                await call(app, request)
            samples[name].append((time.perf_counter() - start) / 100)
    print("1. Starlette landing page (a Jinja2 template), ASGI app called in-process:")
    for name, seconds in samples.items():
        print(f"  {name:20s} {statistics.median(seconds) * 1e6:8.1f} µs/request")
    for visitor, target in (("returning", 1.15), ("new", 1.25)):
        ratio = paired_ratio(samples, f"wrapped, {visitor}", f"bare, {visitor}")
        print(f"  {visitor} visitor: wrapped ÷ bare = {ratio:.3f}  (target ≤ {target})")


async def lag_bench(seconds: float = 10.0, leads_per_second: int = 50) -> None:
    wrapped = BangiLandingASGI(
        landing(), tracker_url="http://127.0.0.1:9", campaign_id=1, secret_key=SECRET
    )  # the outbox on, the tracker down: every lead is written (and synced) and kept
    lags: list[float] = []
    stop = time.monotonic() + seconds

    async def ticker() -> None:
        while time.monotonic() < stop:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - before - 0.001)

    async def leads() -> None:
        headers = [(b"content-type", b"application/x-www-form-urlencoded")]
        pending: set[asyncio.Task[None]] = set()
        n = 0
        while time.monotonic() < stop:
            click_id = f"8f1b5c6e-7a3d-4d20-a7f1-{n:012d}"
            body = f"sub1={click_id}&offer=ring&name=Ana".encode()
            request = scope("/order", headers=headers, method="POST")
            task = asyncio.ensure_future(call(wrapped, request, body))
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
            await asyncio.sleep(1 / leads_per_second)

    await asyncio.gather(ticker(), leads())
    await asyncio.sleep(0.5)  # the last leads' writes
    depth = wrapped.sender.depth()  # type: ignore[attr-defined]
    p99 = statistics.quantiles(lags, n=100)[98]
    print(f"2. Event-loop lag, a 1 ms ticker while {leads_per_second} leads/s are submitted:")
    worst = max(lags)
    print(f"  ticks {len(lags)}, p99 lag {p99 * 1e3:.2f} ms (target ≤ 5), max {worst * 1e3:.2f} ms")
    print(f"  leads in the outbox: {depth}")


if __name__ == "__main__":
    tmp = tempfile.mkdtemp()
    os.environ["BANGI_OUTBOX"] = str(Path(tmp) / "outbox.sqlite3")
    try:
        asyncio.run(ratio_bench())
        asyncio.run(lag_bench())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
