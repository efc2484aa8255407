"""What every HTTP destination shares: kept-alive connections, timeouts, outcome rules.

Delivery speaks HTTP/1.1 through ``http11``, a client made for it, rather
than requests or ``http.client``: the CPU it spends per event is taken from
the pages the same process serves (``bench/bench_transport.py`` compares them).
"""

from __future__ import annotations

import http.client
import os
import ssl
import threading
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from werkzeug.http import parse_date

from ..events import EVENT_KINDS, EventKind
from .http11 import Connection, ProtocolError, Response, request_head

# Connect fast or give up; a tracker that accepted the connection may take longer.
DEFAULT_TIMEOUT = (3.05, 10.0)
MAX_RESPONSE_BODY = 64 * 1024
# 501 Not Implemented and 505 HTTP Version Not Supported will not change on retry.
_PERMANENT_5XX = frozenset({501, 505})
_USER_AGENT = "bangi-landing"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class DeliveryError(Exception):
    """A delivery that did not succeed.

    ``retryable`` says whether the same request may succeed later;
    ``retry_after`` is the server's own wish (seconds), when it gave one;
    ``status`` the HTTP status, when there was an answer; ``url`` where the
    request went, for logs: scheme, host, port and path, never a query or
    credentials (see :func:`public_url`).
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        status: int | None = None,
        url: str | None = None,
    ):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.url = url

    def reworded(self, message: str, **changes: Any) -> DeliveryError:
        """This error with another message (and any other field changed)."""
        fields = {
            "retryable": self.retryable,
            "retry_after": self.retry_after,
            "status": self.status,
            "url": self.url,
        }
        return DeliveryError(message, **{**fields, **changes})


class HttpDestination:
    """Sends requests with explicit connect and read timeouts over kept-alive connections.

    Connections belong to one thread and one process: a forked child or a
    second thread opens its own.
    """

    name = "http"
    kinds: frozenset[EventKind] = frozenset(EVENT_KINDS)
    journey_params: tuple[str, ...] = ()

    def __init__(self, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self._local = threading.local()

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send one request; return a 2xx response or raise DeliveryError (naming ``url``)."""
        try:
            return self._request(method, url, body, content_type, headers)
        except DeliveryError as error:
            error.url = public_url(url)
            raise

    def _request(
        self,
        method: str,
        url: str,
        body: bytes | None,
        content_type: str | None,
        extra: Mapping[str, str] | None,
    ) -> Response:
        scheme, host, port, target = _split(url)
        headers = {"User-Agent": _USER_AGENT, **(extra or {})}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            host_header = _host_header(scheme, host, port)
            head = request_head(method, host_header, target, tuple(headers.items()))
        except ValueError as error:  # a line break or a non-Latin-1 character in a header
            raise DeliveryError(f"invalid request: {error}", retryable=False) from None
        if body is None and method in _WITH_BODY:
            body = b""  # says "no body" with Content-Length: 0, as servers expect of a POST
        while True:
            connection = self._connection(scheme, host, port)
            try:
                response = connection.exchange(head, body, limit=MAX_RESPONSE_BODY)
                break
            except TimeoutError:
                connection.close()
                # After a read timeout the outcome is unknown; retrying is safe
                # because the event keeps its eventId.
                raise DeliveryError("timed out", retryable=True) from None
            except (OSError, ProtocolError) as error:
                connection.close()
                if connection.exchanges:
                    continue  # the server closed an idle kept-alive connection: once more
                raise DeliveryError(
                    f"connection failed: {type(error).__name__}", retryable=True
                ) from None
        status = response.status
        if 200 <= status < 300:
            return response
        retryable = status in (408, 429) or (status >= 500 and status not in _PERMANENT_5XX)
        raise DeliveryError(
            f"HTTP {status}: {_error_text(response)}",
            retryable=retryable,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            status=status,
        )

    def _connection(self, scheme: str, host: str, port: int | None) -> Connection:
        """This thread's open connection to the server, or a new one."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.pid = os.getpid()  # a forked child must not share the parent's sockets
            local.connections = {}
        key = (scheme, host, port)
        connection: Connection | None = local.connections.get(key)
        if connection is not None and connection.sock is not None:
            return connection
        connect_timeout, read_timeout = self.timeout
        try:
            connection = Connection(
                host,
                port or _DEFAULT_PORTS.get(scheme, 80),
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                context=_tls_context() if scheme == "https" else None,
            )
        except OSError as error:
            retry = DeliveryError(f"connection failed: {type(error).__name__}", retryable=True)
            raise retry from None
        local.connections[key] = connection
        return connection


def public_url(url: str) -> str:
    """``url`` fit for a log line: scheme, host, port and path; no credentials, query or fragment.

    The port is always shown (``https://example.com:443/path``): a wrong one is
    a common mistake. A query may hold a token (AlterCPA Pro's site token, a
    network's key in a postback template), so it is left out whole.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # a port that is not a number: say nothing of it
        port = None
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}{parts.path or '/'}"


def _host_header(scheme: str, host: str, port: int | None) -> str:
    name = f"[{host}]" if ":" in host else host
    return name if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{name}:{port}"


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """The system's trusted certificates, loaded once per process."""
    return ssl.create_default_context()


@lru_cache(maxsize=256)
def _split(url: str) -> tuple[str, str, int | None, str]:
    """Scheme, host, port and request target: a destination posts to the same few URLs."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname or "", parts.port, target


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    when = parse_date(value)
    return max(0.0, when.timestamp() - time.time()) if when else None


def _error_text(response: Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return http.client.responses.get(response.status, "")
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])[:200]
    return http.client.responses.get(response.status, "")
