"""The PostgreSQL outbox beside the SQLite one (issue 17).

    python bench/bench_postgres.py

Starts a throwaway PostgreSQL cluster on loopback (``tests/postgres.py``, the
tests' own helper: Debian's server programs, run as ``postgres`` under root).

1. A lead's write on the request path (``add`` with the request's timeout):
   p50 and p99, SQLite beside PostgreSQL.
2. Events per second delivered from a PostgreSQL outbox by one process to a
   fast loopback sink ÷ a bare keep-alive ``http.client`` loop (target ≥ 0.8).
3. A tracker 50 ms away: events per second drained from one PostgreSQL backlog
   by two sender processes ("hosts") ÷ by one (target ≥ 1.8).
4. A backlog of 100,000 events drained to a fast sink: seconds and the
   delivering process's memory growth, both stores.
"""

from __future__ import annotations

import multiprocessing
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
from bangi_landing.postgres import PostgresStore
from bangi_landing.sender import BackgroundSender
from bangi_landing.stores import Store
from bench._common import sink
from bench.bench_delivery import bare_loop, clicks, resident_mb
from tests.postgres import Server, postgres_server


def write_latency(store: Store, n: int = 2000) -> tuple[float, float]:
    """p50 and p99 in ms of writing one lead as the request thread does."""
    took = []
    for _ in range(n):
        lead = Event("lead", str(uuid.uuid4()), {"offer": "7"})
        start = time.perf_counter()
        store.add([lead], ["bangi http://127.0.0.1:1/"], max_age=86400, timeout=0.5)
        took.append((time.perf_counter() - start) * 1000)
    took.sort()
    return statistics.median(took), took[int(0.99 * len(took))]


def latency_bench(server: Server, tmp: Path) -> None:
    print("A lead's write on the request path, 2,000 writes:")
    for name, store in (
        ("SQLite", Outbox(tmp / "latency.sqlite3")),
        ("PostgreSQL", PostgresStore(server.url)),
    ):
        write_latency(store, 100)  # connections and caches up
        p50, p99 = write_latency(store)
        print(f"  {name:<11} p50 {p50:.3f} ms   p99 {p99:.3f} ms")
        store.close()


def drain(store: Store, url: str, count: int) -> float:
    """Seconds for one sender to deliver ``count`` waiting events."""
    sender = BackgroundSender([BangiTracker(url)], outbox=store)
    start = time.perf_counter()
    sender.start()
    while store.depth():
        time.sleep(0.01)
    took = time.perf_counter() - start
    assert sender.stats.snapshot()["sent"] >= count * 0.99 or count == 0
    sender.close()
    return took


def fill(store: Store, url: str, n: int) -> None:
    key = BangiTracker(url).key
    for start in range(0, n, 1000):
        store.add(clicks(min(1000, n - start)), [key], max_age=86400)


def throughput_bench(server: Server, n: int = 5000, rounds: int = 5) -> None:
    bare: list[float] = []
    boxed: list[float] = []
    with sink() as url:
        bare_loop(url, clicks(200))
        for _ in range(rounds):
            bare.append(n / bare_loop(url, clicks(n)))
            store = PostgresStore(server.url)
            server.empty()
            # As a landing does it: submitted, written by the writer, delivered.
            sender = BackgroundSender([BangiTracker(url)], outbox=store)
            start = time.perf_counter()
            for event in clicks(n):
                sender.submit(event)
            while not sender.flush(60) or store.depth():
                pass
            boxed.append(n / (time.perf_counter() - start))
            sender.close()
    b, o = statistics.median(bare), statistics.median(boxed)
    print(f"Delivery to a loopback sink, {n} events, median of {rounds} alternating runs:")
    print(f"  bare http.client loop        {b:8.0f} events/s")
    print(f"  through a PostgreSQL outbox  {o:8.0f} events/s")
    print(f"  outbox ÷ bare = {o / b:.3f}  (target ≥ 0.8)")


def _host(database: str, url: str, start: multiprocessing.synchronize.Event) -> None:
    start.wait()
    store = PostgresStore(database)
    sender = BackgroundSender([BangiTracker(url)], outbox=store)
    sender.start()
    while store.depth():
        time.sleep(0.01)
    sender.close()


def hosts_bench(server: Server, n: int = 1500, delay: float = 0.05) -> None:
    print(f"A tracker {delay * 1000:.0f} ms away, a backlog of {n} events in PostgreSQL:")
    rates = {}
    context = multiprocessing.get_context("spawn")
    with sink(delay=delay) as url:
        for hosts in (1, 2):
            server.empty()
            fill(PostgresStore(server.url), url, n)
            start = context.Event()
            processes = [
                context.Process(target=_host, args=(server.url, url, start)) for _ in range(hosts)
            ]
            for process in processes:
                process.start()
            time.sleep(2)  # the processes are up and waiting
            began = time.perf_counter()
            start.set()
            for process in processes:
                process.join()
            rates[hosts] = n / (time.perf_counter() - began)
            print(f"  {hosts} host(s)  {rates[hosts]:6.0f} events/s")
    print(f"  two ÷ one = {rates[2] / rates[1]:.2f}  (target ≥ 1.8)")


def backlog_bench(server: Server, tmp: Path, n: int = 100_000) -> None:
    print(f"Draining a backlog of {n:,} events to a loopback sink:")
    with sink() as url:
        for name, store in (
            ("SQLite", Outbox(tmp / "backlog.sqlite3")),
            ("PostgreSQL", PostgresStore(server.url)),
        ):
            server.empty()
            fill(store, url, n)
            before = resident_mb()
            took = drain(store, url, n)
            print(
                f"  {name:<11} {took:6.1f} s ({n / took:,.0f} events/s),"
                f" memory +{resident_mb() - before:.1f} MB"
            )
            store.close()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tempfile.mkdtemp(prefix="bangi-postgres-"))
        with postgres_server(directory) as server:
            latency_bench(server, Path(tmp))
            throughput_bench(server)
            hosts_bench(server)
            backlog_bench(server, Path(tmp))
