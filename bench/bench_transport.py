"""CPU per delivered event: requests against a kept-alive http.client connection.

    python bench/bench_transport.py

Why the destinations use the stdlib: the sender thread shares the GIL with the
pages, so every microsecond it spends per event is taken from them.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))

import requests

from bangi_landing.destinations import BangiTracker
from bangi_landing.events import Event
from bench._common import sink

N = 2000


def main() -> None:
    event = Event("click", "8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1", {"campaignId": 1})
    body = json.dumps(event.payload()).encode()
    with sink() as tracker_url, requests.Session() as session:
        target = tracker_url + "/api/v2/track/click"

        def with_requests() -> None:
            session.post(
                target, data=body, headers={"Content-Type": "application/json"}, timeout=(3, 10)
            ).raise_for_status()

        tracker = BangiTracker(tracker_url)
        results = {}
        for name, send in (
            ("requests.Session", with_requests),
            ("BangiTracker", lambda: tracker.deliver(event)),
        ):
            for _ in range(100):
                send()
            cpu, wall = time.thread_time(), time.perf_counter()
            for _ in range(N):
                send()
            results[name] = ((time.thread_time() - cpu) / N, (time.perf_counter() - wall) / N)
    print(f"One POST per event to a loopback sink, {N} events, this thread's CPU:")
    for name, (cpu, wall) in results.items():
        print(f"  {name:18s} {cpu * 1e6:7.1f} µs CPU   {wall * 1e6:7.1f} µs wall")
    ratio = results["requests.Session"][0] / results["BangiTracker"][0]
    print(f"  requests costs {ratio:.1f}x the CPU")


if __name__ == "__main__":
    main()
