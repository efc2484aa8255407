"""Delivery through the outbox: throughput against a bare client, memory with the tracker down.

    python bench/bench_delivery.py

1. Events delivered per second by one process, outbox on, to a fast loopback
   sink (its own process) ÷ a bare keep-alive ``http.client`` loop posting
   the same payloads to the same sink, alternating in one run.
2. The tracker down, 100,000 clicks submitted: resident memory growth, and
   how many the outbox holds afterwards.
3. A tracker that answers after 20 ms: events/s with one delivery thread and
   with four (the default).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))

from bangi_landing.destinations import BangiTracker
from bangi_landing.events import Event
from bangi_landing.outbox import Outbox
from bangi_landing.sender import BackgroundSender
from bench._common import post_each, sink


def clicks(n: int) -> list[Event]:
    return [
        Event("click", str(uuid.uuid4()), {"campaignId": 1, "source": "bench", "ad": "video-01"})
        for _ in range(n)
    ]


def bare_loop(url: str, events: list[Event]) -> float:
    """Seconds to POST every payload over one kept-alive connection."""
    bodies = (json.dumps(event.payload(), separators=(",", ":")).encode() for event in events)
    return post_each(url, "/api/v2/track/click", "application/json", bodies)


def through_outbox(url: str, events: list[Event], directory: Path, concurrency: int = 4) -> float:
    """Seconds from the first submit until the outbox has delivered every event."""
    outbox = Outbox(directory / f"{uuid.uuid4().hex}.sqlite3")
    sender = BackgroundSender([BangiTracker(url)], outbox=outbox, concurrency=concurrency)
    start = time.perf_counter()
    for event in events:
        sender.submit(event)
    while not sender.flush(60) or outbox.depth():
        pass
    took = time.perf_counter() - start
    assert sender.stats.snapshot()["sent"] == len(events)
    sender.close(0)  # its threads must not outlive the run, nor touch the file after it
    return took


def throughput_bench(n: int = 5000, rounds: int = 5) -> None:
    bare: list[float] = []
    boxed: list[float] = []
    with sink() as url, tempfile.TemporaryDirectory() as tmp:
        bare_loop(url, clicks(200))  # warm up both sides
        through_outbox(url, clicks(200), Path(tmp))
        for _ in range(rounds):
            bare.append(n / bare_loop(url, clicks(n)))
            boxed.append(n / through_outbox(url, clicks(n), Path(tmp)))
    b, o = statistics.median(bare), statistics.median(boxed)
    print(f"Delivery to a loopback sink, {n} events, median of {rounds} alternating runs:")
    print(f"  bare http.client loop   {b:8.0f} events/s")
    print(f"  through the outbox      {o:8.0f} events/s")
    print(f"  outbox ÷ bare = {o / b:.3f}  (target ≥ 0.8)")


def resident_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def tracker_down_bench(n: int = 100_000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        outbox = Outbox(Path(tmp) / "outbox.sqlite3")
        sender = BackgroundSender([BangiTracker("http://127.0.0.1:9")], outbox=outbox)
        sender.submit(clicks(1)[0])  # threads, connections and caches up before measuring
        sender.flush(10)
        before = resident_mb()
        peak = before
        start = time.perf_counter()
        for i in range(n // 1000):
            for event in clicks(1000):
                sender.submit(event)
            if i % 10 == 0:
                peak = max(peak, resident_mb())
        submitted = time.perf_counter() - start
        sender.flush(60)
        peak = max(peak, resident_mb())
        held = outbox.depth()
        stats = sender.stats.snapshot()
        sender.close(0)
    print(f"The tracker down, {n:,} clicks submitted in {submitted:.1f} s:")
    print(f"  resident memory {before:.1f} MB before, {peak:.1f} MB at most after:")
    print(f"  grew by {peak - before:.1f} MB  (target ≤ 30 MB)")
    print(f"  the outbox holds {held - 1:,} of them (+1 from warm-up); dropped {stats['dropped']}")


def distant_tracker_bench(n: int = 300, delay: float = 0.02) -> None:
    print(f"A distant tracker (answers after {delay * 1000:.0f} ms), {n} events:")
    with sink(delay=delay) as url, tempfile.TemporaryDirectory() as tmp:
        for concurrency in (1, 4):
            rate = n / through_outbox(url, clicks(n), Path(tmp), concurrency)
            print(f"  {concurrency} delivery thread(s)  {rate:6.0f} events/s")


if __name__ == "__main__":
    throughput_bench()
    tracker_down_bench()
    distant_tracker_bench()
