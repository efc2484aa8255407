"""Run WSGI apps on real threaded servers until Ctrl-C or SIGTERM."""

from __future__ import annotations

import logging
import re
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from werkzeug._internal import _log  # the request log's logger, set up as werkzeug does
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # what stops a server: Ctrl-C, systemd

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


@dataclass(frozen=True)
class Site:
    """A named app bound to its socket (port 0 becomes a free port here)."""

    name: str
    server: BaseWSGIServer

    @classmethod
    def bind(
        cls, name: str, app: WSGIApplication, host: str, port: int, *, log_as: str | None = None
    ) -> Site:
        """:param log_as: begin each line of the site's request log with this, as in
        ``landing | 127.0.0.1 - - [...] "GET / HTTP/1.1" 200 -``: for sites sharing a log."""
        handler = WSGIRequestHandler if log_as is None else _named_request_log(log_as)
        return cls(name, make_server(host, port, app, threaded=True, request_handler=handler))

    @property
    def url(self) -> str:
        host = self.server.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.server.server_port}"


def _named_request_log(name: str) -> type[WSGIRequestHandler]:
    class NamedRequestHandler(WSGIRequestHandler):
        def log(self, type: str, message: str, *args: Any) -> None:
            # werkzeug's own line, with the site's name in front.
            address = self.address_string().replace("%", "%%")  # an IPv6 scope has a %
            line = f"{name} | {address} - - [{self.log_date_time_string()}] {message}"
            _log(type, line, *args)

    return NamedRequestHandler


class RedactSecrets(logging.Filter):
    """Blanks the values of secret URL parameters in log lines (the request log's URLs).

    A relay's ``secret`` and an AlterCPA site ``token`` travel in query strings,
    which werkzeug's request log prints whole.
    """

    PATTERN = re.compile(r"(?i)([?&](?:secret|token|key|password)=)[^&\s\"]*")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.PATTERN.sub(r"\1<redacted>", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def serve(sites: Sequence[Site], *, echo: Callable[[str], object] = print) -> None:
    """Serve every site until SIGINT or SIGTERM, then shut down cleanly and return.

    The printed URLs have the real ports, which is how tests find servers
    they started on port 0. Secret URL parameters are redacted from the request log.
    """
    logging.getLogger("werkzeug").addFilter(RedactSecrets())
    threads = [threading.Thread(target=site.server.serve_forever, daemon=True) for site in sites]
    with stop_signal() as stop:
        try:
            for thread in threads:
                thread.start()
            for site in sites:
                echo(f"{site.name}: {site.url}/")
            # A timed wait keeps the main thread responsive to signals on every platform.
            while not stop.wait(0.5):
                pass
            echo("Shutting down.")
            for site in sites:
                site.server.shutdown()
            for thread in threads:
                thread.join()
        finally:
            for site in sites:
                site.server.server_close()


@contextmanager
def stop_signal() -> Iterator[threading.Event]:
    """An event SIGINT and SIGTERM set, handled from before the URLs are printed.

    Whoever stops the process as soon as it has read them gets a clean shutdown,
    not the default handler's abrupt exit.
    """
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
