"""The CPU a landing's processes spend per request under sustained load (issue 18).

    python bench/bench_load.py [--rounds N] [--seconds S] [--store sqlite|postgres|both]

The demo landing (its 4 KB Flask page) under gunicorn, 2 sync workers, loaded
by ``wrk`` with 8 connections; the tracker is an instant sink on loopback in
its own process. For each run the CPU of the gunicorn processes (master and
workers, every thread: ``/proc/PID/stat``) is read before the load and again
once delivery has settled (the sink has stopped receiving), and divided by the
requests ``wrk`` saw answered. Runs alternate within a round (one gunicorn
each, started afresh; every other round in the reverse order), and each ratio
is the median over rounds (5 by default) of the round's run ÷ the round's bare
page, since this machine is shared and noisy. A
returning visitor is compared with the bare page given the same Cookie header
(the app parses it too, for its own session).

The rows split a new visitor's cost:

* ``drop``: the middleware, events handed to a sender that drops them: the page path;
* ``store``: the outbox on, the tracker refusing connections: + writing events;
* ``deliver``: the outbox on and delivering: + sending (a click the tracker
  takes in time is never written: see ``sender._Carried``).

Targets: a new visitor (``deliver``) at most 1.30 times bare, a returning one ≤ 1.10.
Needs ``wrk`` (Debian's package) and gunicorn; ``--store postgres`` starts a
throwaway PostgreSQL cluster (``tests/postgres.py``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import instant_tracker, wait_for_port  # noqa: E402
from tests.utils import free_port  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RUNS = {  # name: (BENCH_MODE, visitor)
    "bare": ("bare", "new"),
    "bare, returning": ("bare", "returning"),  # the same Cookie header: the app parses it too
    "returning": ("deliver", "returning"),
    "new, drop": ("drop", "new"),
    "new, store": ("store", "new"),
    "new, deliver": ("deliver", "new"),
}
TARGETS = {"returning": 1.10, "new, deliver": 1.30}
BASELINES = {"returning": "bare, returning"}  # else "bare"


def received(tracker: str) -> int:
    return int(requests.get(f"{tracker}/count", timeout=5).text)


# The landing under gunicorn, and what its processes spent.


@contextmanager
def gunicorn(mode: str, tracker: str, outbox: str) -> Iterator[tuple[str, int]]:
    """The demo landing in ``mode`` under 2 sync workers: its URL and the master's pid."""
    port = free_port()
    env = {
        **os.environ,
        "BENCH_MODE": mode,
        "BENCH_TRACKER": tracker,
        "BENCH_OUTBOX": outbox,
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}"]
    process = subprocess.Popen(
        [*command, "--log-level", "warning", "bench._load_app:app"], env=env, cwd=ROOT
    )
    try:
        wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def cpu_seconds(master: int) -> float:
    """User and system CPU of ``master`` and its children so far (all their threads)."""
    pids = [master]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == master:  # the parent's pid
                pids.append(int(entry.name))
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def wrk(url: str, seconds: float, cookie: str | None) -> int:
    """Requests answered in ``seconds`` of load by 8 connections (none may fail)."""
    command = ["wrk", "-t", "2", "-c", "8", "-d", f"{seconds:g}s"]
    if cookie:
        command += ["-H", f"Cookie: {cookie}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk saw failures:\n{output}")
    match = re.search(r"(\d+) requests in", output)
    assert match, output
    return int(match.group(1))


def settle(tracker: str, mode: str, expected: int) -> None:
    """Until delivery is over: the sink got ``expected`` events and nothing more comes."""
    if mode != "deliver":
        time.sleep(0.5)  # the writer's gathering and write; nothing is delivered
        return
    last, still = -1, 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        count = received(tracker)
        still = still + 1 if count == last else 0
        if count >= expected and still >= 3:
            return
        last = count
        time.sleep(0.1)
    raise RuntimeError(f"delivery did not settle: {last} of {expected} events")


def journey_cookie(tracker: str, outbox: str) -> str:
    """A returning visitor's Cookie header (every run shares the secret key)."""
    with gunicorn("drop", tracker, outbox) as (url, _):
        cookies = requests.get(url, timeout=5).cookies
        return "; ".join(f"{name}={value}" for name, value in cookies.items())


def one_run(
    name: str, tracker: str, refused: str, outbox: str, seconds: float, returning: str
) -> float:
    """CPU seconds per request of one run."""
    mode, visitor = RUNS[name]
    with gunicorn(mode, refused if mode == "store" else tracker, outbox) as (url, master):
        cookie = returning if visitor == "returning" else None
        wrk(url, 1, cookie)  # warm up: imports, page cache, connections
        settle(tracker, mode, 0)
        start_events, start_cpu = received(tracker), cpu_seconds(master)
        served = wrk(url, seconds, cookie)
        expected = start_events + (served if visitor == "new" else 0)
        settle(tracker, mode, expected)
        return (cpu_seconds(master) - start_cpu) / served


def compare(store: str, outbox_for, rounds: int, seconds: float) -> None:  # type: ignore[no-untyped-def]
    samples: dict[str, list[float]] = {name: [] for name in RUNS}
    with instant_tracker() as tracker:
        refused = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        returning = journey_cookie(tracker, outbox_for())
        for round_ in range(rounds):
            # Every other round backwards: the machine's drift within a round
            # (a few percent) weighs on both sides of each ratio in turn.
            for name in RUNS if round_ % 2 == 0 else reversed(RUNS):
                run = one_run(name, tracker, refused, outbox_for(), seconds, returning)
                samples[name].append(run)
            print(
                f"  round {round_ + 1}: "
                + ", ".join(f"{name} {samples[name][-1] * 1e6:.0f}" for name in RUNS),
                flush=True,
            )
    print(f"{store} outbox: CPU per request (median of {rounds} rounds), ÷ bare (paired)")
    for name, values in samples.items():
        bare = samples[BASELINES.get(name, "bare")]
        ratio = statistics.median(a / b for a, b in zip(values, bare, strict=True))
        target = f"  (≤ {TARGETS[name]})" if name in TARGETS else ""
        print(f"  {name:14s} {statistics.median(values) * 1e6:7.0f} µs   {ratio:.3f}{target}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    args = parser.parse_args()
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if args.store in ("sqlite", "both"):
            files = iter(range(1_000_000))
            compare(
                "SQLite",
                lambda: str(directory / f"outbox-{next(files)}.sqlite3"),
                args.rounds,
                args.seconds,
            )
        if args.store in ("postgres", "both"):
            from tests.postgres import postgres_server

            # Not under the root-only temporary folder: the server runs as postgres.
            cluster = Path(tempfile.mkdtemp(prefix="bangi-postgres-"))
            stack.callback(shutil.rmtree, cluster, ignore_errors=True)
            server = stack.enter_context(postgres_server(cluster))
            names = iter(range(1_000_000))
            compare(
                "PostgreSQL",
                lambda: server.database(f"bench_{next(names)}"),
                args.rounds,
                args.seconds,
            )


if __name__ == "__main__":
    main()
