"""Run WSGI apps on real threaded servers until Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

from werkzeug.serving import BaseWSGIServer, make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


@dataclass(frozen=True)
class Site:
    name: str
    app: WSGIApplication
    host: str
    port: int


def serve(
    sites: Sequence[Site],
    *,
    echo: Callable[[str], object] = print,
    ready: Callable[[], None] = lambda: None,
) -> None:
    """Serve every site on its own threaded server; return after a clean shutdown.

    Port 0 picks a free port; the printed URL has the real one, which is how
    tests find a server they started as a subprocess.
    """
    servers: list[BaseWSGIServer] = []
    try:
        for site in sites:
            servers.append(make_server(site.host, site.port, site.app, threaded=True))
        threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in servers]
        for thread in threads:
            thread.start()
        for site, server in zip(sites, servers, strict=True):
            echo(f"{site.name}: http://{_url_host(site.host)}:{server.server_port}/")
        ready()
        _wait_for_stop_signal()
        echo("Shutting down.")
        for server in servers:
            server.shutdown()
        for thread in threads:
            thread.join()
    finally:
        for server in servers:
            server.server_close()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _wait_for_stop_signal() -> None:
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # A timed wait keeps the main thread responsive to signals on every platform.
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
