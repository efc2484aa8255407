"""The request-path cost of BangiLanding on the demo landing, and pages with a slow tracker.

    python bench/bench_middleware.py

1. Wrapped ÷ bare time per request for the demo landing page, in-process,
   alternating batches in one run: a returning visitor (valid cookie) and a new
   visitor (a click is reported). A hands events to a sender that drops them;
   B writes them to the outbox (on, in a temporary directory) with the tracker
   down; C also delivers them, from the same process, to a fast loopback sink.
   Ratios are medians over 60 rounds of the round's wrapped ÷ bare. A also
   has a split test's rows (variants on: a new visitor's variant drawn, a
   returning one's read from the cookie).
2. p99 page latency with a tracker that answers after 2 s, and one that never
   answers, ÷ p99 with an instant tracker, outbox on.
"""

from __future__ import annotations

import atexit
import copy
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))

from werkzeug.test import create_environ

from bangi_landing import BangiLanding
from bangi_landing.core.page_cache import PageCache
from bangi_landing.sender import BackgroundSender
from bench._common import alternate, paired_ratio, silent_tracker, sink
from demo_site import create_app

SECRET = "bench-secret-key-0123456789"


def make_caller(app, environ_template):  # type: ignore[no-untyped-def]
    def start_response(status, headers, exc_info=None):  # type: ignore[no-untyped-def]
        return None

    def call() -> None:
        environ = dict(environ_template)
        environ["wsgi.input"] = io.BytesIO()
        body = app(environ, start_response)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close:
            close()

    return call


class CountingSender:
    """Takes events and only counts them: what a page pays to hand one over, and no more."""

    def __init__(self) -> None:
        self.count = 0

    def submit(self, event: object, *, durable: bool = False) -> bool:
        self.count += 1
        return True


def wrapped_app(tracker_url: str, sender=None, **options):  # type: ignore[no-untyped-def]
    landing = create_app(secret_key=SECRET)
    middleware = BangiLanding(
        landing.wsgi_app,
        tracker_url=tracker_url,
        campaign_id=1,
        secret_key=SECRET,
        sender=sender,
        **options,
    )
    return landing, middleware


CLICK_ID = "8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1"


def compare(middleware: BangiLanding, title: str, split: BangiLanding | None = None) -> None:
    """The rows of one section; with ``split`` (a landing with variants), its rows too."""
    bare = create_app(secret_key=SECRET)
    cookie = middleware.cookie.header(CLICK_ID, secure=False)
    new = create_environ("/?source=facebook&ad_name=video-01")
    returning = {**new, "HTTP_COOKIE": cookie.split(";", 1)[0]}
    # The same middleware with its page cache off: every view rewrites the page.
    uncached = copy.copy(middleware)
    uncached.pages = PageCache(max_bytes=0)
    runs = {
        "bare, new": make_caller(bare.wsgi_app, new),
        "wrapped, new": make_caller(middleware, new),
        "bare, returning": make_caller(bare.wsgi_app, returning),
        "wrapped, returning": make_caller(middleware, returning),
        "no page cache, ret.": make_caller(uncached, returning),
    }
    if split is not None:
        split_cookie = split.cookie.header(CLICK_ID, secure=False, variant="b")
        split_returning = {**new, "HTTP_COOKIE": split_cookie.split(";", 1)[0]}
        runs["variants, new"] = make_caller(split, new)
        runs["variants, returning"] = make_caller(split, split_returning)
    for run in runs.values():  # warm up
        for _ in range(50):
            run()
    samples = alternate(runs, batch=100, rounds=60)
    print(title)
    for name, seconds in samples.items():
        print(f"  {name:20s} {statistics.median(seconds) * 1e6:8.1f} µs/request")
    for row, label in (("wrapped", ""), ("variants", ", variants on")):
        for visitor, target in (("returning", 1.10), ("new", 1.15)):
            if f"{row}, {visitor}" in samples:
                ratio = paired_ratio(samples, f"{row}, {visitor}", f"bare, {visitor}")
                print(f"  {visitor} visitor{label}: wrapped ÷ bare = {ratio:.3f}  (≤ {target})")
    ratio = paired_ratio(samples, "no page cache, ret.", "bare, returning")
    print(f"  returning visitor, page cache off: wrapped ÷ bare = {ratio:.3f}")


def ratio_bench() -> None:
    _, counting = wrapped_app("http://127.0.0.1:9", CountingSender())
    _, split = wrapped_app("http://127.0.0.1:9", CountingSender(), variants={"a": 50, "b": 50})
    compare(
        counting, "A. Request path (events handed over and dropped), demo page, in-process:", split
    )
    # Nothing listens on port 9: the destination is paused and the events wait
    # in the outbox, so what is measured is the outbox's cost to the pages.
    _, writing = wrapped_app("http://127.0.0.1:9")
    compare(writing, "B. Request path with the outbox on (every click written to it):")
    with sink() as tracker_url:
        _, delivering = wrapped_app(tracker_url)
        compare(delivering, "C. And delivered to a tracker process, from the same process:")
        sender = delivering.sender
        assert isinstance(sender, BackgroundSender)
        sender.flush(60)
        print(f"  events: {sender.stats.snapshot()}")


def page_latencies(app, environ, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    call = make_caller(app, environ)
    latencies = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - start)
    return latencies


def p99(app, environ, n: int) -> float:  # type: ignore[no-untyped-def]
    return statistics.quantiles(page_latencies(app, environ, n), n=100)[98]


def slow_tracker_bench() -> None:
    n = 10_000
    environ = create_environ("/?source=facebook")  # every request is a new visitor: a click
    with sink() as instant, sink(delay=2.0) as slow, silent_tracker() as silent:
        trackers = {"instant": instant, "answers after 2 s": slow, "never answers": silent}
        apps = {name: wrapped_app(url)[1] for name, url in trackers.items()}
        latencies: dict[str, list[float]] = {name: [] for name in apps}
        for app in apps.values():
            p99(app, environ, 200)  # warm up
        for _ in range(n // 100):  # alternate in batches so drift hits all three alike
            for name, app in apps.items():
                latencies[name].extend(page_latencies(app, environ, 100))
    results = {name: statistics.quantiles(values, n=100)[98] for name, values in latencies.items()}
    print(f"p99 page latency over {n} new-visitor page views each, alternating:")
    for name, seconds in results.items():
        ratio = seconds / results["instant"]
        print(f"  {name:18s} {seconds * 1e6:8.1f} µs   ÷ instant = {ratio:.3f}  (target ≤ 1.05)")


if __name__ == "__main__":
    tmp = tempfile.mkdtemp()
    atexit.register(shutil.rmtree, tmp)  # registered first, so it runs after the senders' flush
    os.environ["BANGI_OUTBOX"] = str(Path(tmp) / "outbox.sqlite3")  # the default sender's
    ratio_bench()
    slow_tracker_bench()
