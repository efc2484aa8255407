"""Several processes of one server sharing a listening socket: ``serve --workers N``.

waitress is one process with threads. For several, the parent binds the
socket, then forks the workers, each of which builds its own app (its own
sender threads and outbox connection: neither survives a fork) and serves
the inherited socket; the kernel hands each connection to one of them. The
parent serves nothing: it restarts a worker that dies, and on SIGINT or
SIGTERM stops them all and waits for them. POSIX only (``os.fork``).

Chosen over running gunicorn: the same server, with the same options (the
trusted proxy, the body limit), in one process or several, and no extra
dependency. gunicorn remains an option for the app itself
(``bangi_landing.files:create_app``).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable

BOOT_FAILED = 3  # a worker's exit status when it could not build its app or server
STOP_TIMEOUT = 15.0  # seconds a worker has to finish its requests before it is killed


class WorkerBootError(RuntimeError):
    """A worker could not start; every worker was stopped."""


def listen(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket on ``host`` (a name, an IPv4 or IPv6 address) and ``port``."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    return socket.create_server(address[:2], family=family, backlog=backlog)


def run(
    workers: int,
    work: Callable[[], None],
    stop: threading.Event,
    echo: Callable[[str], object],
) -> None:
    """Keep ``workers`` processes running ``work()`` until ``stop`` is set, then end them.

    ``work`` runs in each child and returns when the child gets SIGINT or
    SIGTERM; an exception from it is printed and ends that child with
    ``BOOT_FAILED``.

    :raises WorkerBootError: a worker ended with ``BOOT_FAILED`` (the others are stopped).
    """
    children: set[int] = set()

    def start() -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            status = 0
            try:
                work()
            except BaseException:
                traceback.print_exc()
                status = BOOT_FAILED
            finally:
                os._exit(status)  # never back into the parent's code
        children.add(pid)
        echo(f"Worker {pid} started")

    try:
        for _ in range(workers):
            start()
        while not stop.wait(0.5):  # timed: the main thread stays responsive to signals
            while children and (ended := os.waitpid(-1, os.WNOHANG))[0]:
                pid, status = ended
                children.discard(pid)
                if os.waitstatus_to_exitcode(status) == BOOT_FAILED:
                    raise WorkerBootError(f"worker {pid} could not start (see above)")
                echo(f"Worker {pid} ended ({_how(status)}); starting another")
                start()
    finally:
        _stop(children)


def _how(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"


def _stop(children: set[int]) -> None:
    """SIGTERM each child; SIGKILL those still running after ``STOP_TIMEOUT``."""
    for pid in children:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while children:
        pid, _ = os.waitpid(-1, os.WNOHANG)
        if pid:
            children.discard(pid)
        elif time.monotonic() > deadline:
            for pid in children:
                os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
        else:
            time.sleep(0.05)
