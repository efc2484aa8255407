"""CPU per delivered event: the ways of posting events to a kept-alive loopback tracker.

    python bench/bench_transport.py

Why the destinations use their own HTTP/1.1 client, and pipeline: the sender
threads share the GIL and the cores with the pages, so every microsecond
they spend per event is taken from them. Rows: requests, the stdlib's
``http.client``, ``BangiTracker.deliver`` (one request at a time) and
``BangiTracker.deliver_all`` (batches of 25, pipelined).
"""

from __future__ import annotations

import http.client
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).parent.parent))

import requests

from bangi_landing.destinations import BangiTracker
from bangi_landing.events import Event
from bench._common import instant_tracker

N = 5000
BATCH = 25


def main() -> None:
    event = Event("click", "8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1", {"campaignId": 1})
    body = event.body()
    headers = {"Content-Type": "application/json"}
    with instant_tracker() as tracker_url, requests.Session() as session:
        target = tracker_url + "/api/v2/track/click"
        connection = http.client.HTTPConnection(urlsplit(tracker_url).netloc, timeout=10)

        def with_requests(count: int) -> None:
            for _ in range(count):
                session.post(target, data=body, headers=headers, timeout=(3, 10))

        def with_http_client(count: int) -> None:
            for _ in range(count):
                connection.request("POST", "/api/v2/track/click", body=body, headers=headers)
                connection.getresponse().read()

        tracker = BangiTracker(tracker_url)

        def one_at_a_time(count: int) -> None:
            for _ in range(count):
                tracker.deliver(event)

        def pipelined(count: int) -> None:
            for _ in range(count // BATCH):
                assert tracker.deliver_all([event] * BATCH) == [None] * BATCH

        runs: dict[str, Callable[[int], None]] = {
            "requests.Session": with_requests,
            "http.client": with_http_client,
            "BangiTracker.deliver": one_at_a_time,
            f"deliver_all ({BATCH})": pipelined,
        }
        results = {}
        for name, send in runs.items():
            send(200)
            cpu, wall = time.thread_time(), time.perf_counter()
            send(N)
            results[name] = ((time.thread_time() - cpu) / N, (time.perf_counter() - wall) / N)
    print(f"One POST per event to a loopback sink, {N} events, this thread's CPU:")
    for name, (cpu, wall) in results.items():
        print(f"  {name:22s} {cpu * 1e6:7.1f} µs CPU   {wall * 1e6:7.1f} µs wall")


if __name__ == "__main__":
    main()
