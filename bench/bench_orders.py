"""Forwarding orders: what it adds to a submit, and how fast orders reach a network.

    python bench/bench_orders.py

1. A submit's time with order forwarding on ÷ off: the demo landing's order
   POST, in-process, each a new journey, the outbox on (in a temporary
   directory) and delivering in the background to loopback stand-ins (their
   own processes) of the tracker and, when on, of the network. On, each submit
   also seals the customer's fields and writes the order with the lead, in the
   same transaction. Alternating batches in one run, the ratio the median over
   rounds of the round's on ÷ off: one submit every 350 ms (each delivered
   before the next, as on most landings), and flat out (the deliveries of
   earlier submits competing with each one).
2. Orders per second delivered by one process through the outbox to a fast
   loopback network ÷ a bare keep-alive ``http.client`` loop posting the same
   orders (the same form bodies) to the same stand-in, alternating in one run.
"""

from __future__ import annotations

import io
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).parent.parent))

from werkzeug.test import create_environ

from bangi_landing import BangiLanding
from bangi_landing.destinations import NetworkOrders
from bangi_landing.events import ORDER, Event
from bangi_landing.outbox import Outbox
from bangi_landing.sealed import Sealer
from bangi_landing.sender import BackgroundSender
from bangi_landing.stores import ORDER_DELAY
from bench._common import alternate, paired_ratio, post_each, sink
from demo_site import create_app

SECRET = "bench-secret-key-0123456789"
FIELDS = {"offer_id": "1001", "name": "{name}", "phone": "{phone}", "ip": "{ip}"}
IP = "203.0.113.7"
CUSTOMER = {"name": "Ana Lima", "phone": "+55 11 99999 0000"}


def submit_caller(tracker: str, network: str | None, directory: Path) -> Callable[[], None]:
    """One new journey's order POST to the wrapped demo landing, per call."""
    landing = create_app(secret_key=SECRET)
    middleware = BangiLanding(
        landing.wsgi_app,
        tracker_url=tracker,
        campaign_id=1,
        secret_key=SECRET,
        outbox=directory / f"{uuid.uuid4().hex}.sqlite3",
        **({"order_url": f"{network}/orders", "order_fields": FIELDS} if network else {}),
    )

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        return None

    def call() -> None:
        body = urlencode({"sub1": str(uuid.uuid4()), **CUSTOMER}).encode()
        environ = create_environ(
            "/submit?source=facebook",
            method="POST",
            data=body,
            content_type="application/x-www-form-urlencoded",
        )
        environ["wsgi.input"] = io.BytesIO(body)
        answer = middleware(environ, start_response)
        for _ in answer:
            pass
        close = getattr(answer, "close", None)
        if close:
            close()

    call.middleware = middleware  # type: ignore[attr-defined]
    return call


def submit_bench(batch: int = 5, rounds: int = 20, pause: float = 0.35) -> None:
    with (
        sink() as tracker,
        sink() as network,
        tempfile.TemporaryDirectory() as tmp,
    ):
        runs = {
            "forwarding off": submit_caller(tracker, None, Path(tmp)),
            "forwarding on": submit_caller(tracker, network, Path(tmp)),
        }
        for run in runs.values():  # warm up: connections, caches, the outbox files
            for _ in range(30):
                run()
        paced = alternate(runs, batch=batch, rounds=rounds, pause=pause)
        flat_out = alternate(runs, batch=20, rounds=40)
        for run in runs.values():
            run.middleware.close(10)  # type: ignore[attr-defined]
    print("A submit (a new journey's order POST), alternating rounds:")
    for title, samples in (
        (f"one every {pause * 1e3:.0f} ms (each delivered before the next)", paced),
        ("flat out (delivery competing with the submits)", flat_out),
    ):
        print(f"  {title}:")
        for name, seconds in samples.items():
            print(f"    {name:15s} {statistics.median(seconds) * 1e3:7.2f} ms/submit")
        ratio = paired_ratio(samples, "forwarding on", "forwarding off")
        print(f"    on ÷ off = {ratio:.3f}  (target ≤ 1.10)")


def orders(n: int, sealer: Sealer) -> list[Event]:
    """``n`` orders as the landing makes them: the fields, IP and User-Agent sealed."""
    made = []
    for _ in range(n):
        sealed = sealer.seal({"fields": CUSTOMER, "ip": IP, "userAgent": "bench"})
        made.append(Event(ORDER, str(uuid.uuid4()), {"sealed": sealed}))
    return made


def bare_loop(url: str, events: list[Event]) -> float:
    """Seconds to POST every order's form over one kept-alive connection."""
    bodies = (
        urlencode({**FIELDS, **CUSTOMER, "ip": IP, "sub1": event.click_id}).encode()
        for event in events
    )
    return post_each(url, "/orders", "application/x-www-form-urlencoded", bodies)


def through_outbox(url: str, events: list[Event], directory: Path, sealer: Sealer) -> float:
    """Seconds from when the orders are due until the outbox has delivered every one.

    An order, like a lead, is due ``ORDER_DELAY`` after it is written (time for
    its journey's click to be written first): a fixed wait before the first
    order, not part of the rate, so it is left out.
    """
    destination = NetworkOrders(f"{url}/orders", fields=FIELDS)
    destination.use_sealer(sealer)
    outbox = Outbox(directory / f"{uuid.uuid4().hex}.sqlite3")
    sender = BackgroundSender([destination], outbox=outbox)
    start = time.perf_counter()
    for event in events:
        sender.submit(event)
    while not sender.flush(60) or outbox.depth():
        pass
    took = time.perf_counter() - start - ORDER_DELAY
    assert sender.stats.snapshot()["sent"] == len(events)
    sender.close(0)
    return took


def throughput_bench(n: int = 3000, rounds: int = 5) -> None:
    sealer = Sealer(SECRET)
    bare: list[float] = []
    boxed: list[float] = []
    with sink() as url, tempfile.TemporaryDirectory() as tmp:
        bare_loop(url, orders(200, sealer))  # warm up both sides
        through_outbox(url, orders(200, sealer), Path(tmp), sealer)
        for _ in range(rounds):
            bare.append(n / bare_loop(url, orders(n, sealer)))
            boxed.append(n / through_outbox(url, orders(n, sealer), Path(tmp), sealer))
    b, o = statistics.median(bare), statistics.median(boxed)
    print(f"Orders to a loopback network, {n} orders, median of {rounds} alternating runs:")
    print(f"  bare http.client loop   {b:8.0f} orders/s")
    print(f"  through the outbox      {o:8.0f} orders/s")
    print(f"  outbox ÷ bare = {o / b:.3f}  (target ≥ 0.8)")


if __name__ == "__main__":
    submit_bench()
    throughput_bench()
