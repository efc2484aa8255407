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
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple
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


class Request(NamedTuple):
    """One HTTP request a destination makes."""

    method: str
    url: str
    body: bytes | None = None
    content_type: str | None = None
    headers: Mapping[str, str] | None = None


Outcome = Response | DeliveryError  # a 2xx answer, or why the request did not succeed


class HttpDestination:
    """Sends requests with explicit connect and read timeouts over kept-alive connections.

    Connections belong to one thread and one process: a forked child or a
    second thread opens its own.

    :meth:`request_all` pipelines (HTTP/1.1): it writes a batch of requests at
    once and reads the answers in order, which costs the landing a fraction of
    the CPU of one request at a time (``bench/bench_transport.py``). A server
    that answers a pipelined batch with ``Connection: close``, or fails in
    the middle of one, gets one request at a time from then on (per thread);
    the requests it did not answer are sent again, so only a destination that
    takes a request twice as once (the Bangi tracker, by eventId) uses it.
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
        [outcome] = self.request_all([Request(method, url, body, content_type, headers)])
        if isinstance(outcome, DeliveryError):
            raise outcome
        return outcome

    def request_all(self, requests: Sequence[Request]) -> list[Outcome]:
        """Send ``requests``, pipelined per server; their outcomes, in order. Never raises.

        A failure is a :class:`DeliveryError` naming the request's URL.
        """
        outcomes: list[Outcome | None] = [None] * len(requests)
        by_server: dict[tuple[str, str, int | None], list[tuple[int, bytes, bytes | None]]] = {}
        for index, request in enumerate(requests):
            try:
                server, head, body = _prepare(request)
            except DeliveryError as error:
                outcomes[index] = error
            else:
                by_server.setdefault(server, []).append((index, head, body))
        for server, prepared in by_server.items():
            self._send(server, prepared, outcomes)
        done: list[Outcome] = []
        for outcome, request in zip(outcomes, requests, strict=True):
            assert outcome is not None  # _send gives each request its outcome
            if isinstance(outcome, DeliveryError):
                outcome.url = public_url(request.url)
            done.append(outcome)
        return done

    def _send(
        self,
        server: tuple[str, str, int | None],
        prepared: list[tuple[int, bytes, bytes | None]],
        outcomes: list[Outcome | None],
    ) -> None:
        """Deliver ``prepared`` requests to one server, filling in their ``outcomes``."""
        local = self._connections()
        todo = prepared
        stale_retried = False
        while todo:
            batch = todo[:1] if server in local.one_at_a_time else todo
            try:
                connection = self._connection(server)
            except DeliveryError as error:  # cannot connect: none of them is sent
                for index, _, _ in todo:
                    outcomes[index] = error
                return
            answered = 0
            try:
                pipelined = [(head, body) for _, head, body in batch]
                for response in connection.pipeline(pipelined, limit=MAX_RESPONSE_BODY):
                    outcomes[batch[answered][0]] = _outcome(response)
                    answered += 1
            except TimeoutError:
                connection.close()
                # After a read timeout the outcome is unknown; retrying is safe
                # because the event keeps its eventId. The rest wait for another pass.
                for index, _, _ in todo[answered:]:
                    outcomes[index] = DeliveryError("timed out", retryable=True)
                return
            except (OSError, ProtocolError) as error:
                connection.close()
                if not answered and connection.exchanges and not stale_retried:
                    stale_retried = True
                    continue  # the server closed an idle kept-alive connection: once more
                outcomes[todo[answered][0]] = DeliveryError(
                    f"connection failed: {type(error).__name__}", retryable=True
                )
                answered += 1
            if answered < len(batch):
                local.one_at_a_time.add(server)  # it closed, or failed, mid-batch
            todo = todo[answered:]

    def close(self) -> None:
        """Close this thread's kept-alive connections (a later request opens new ones).

        A destination kept for the process's life need not: its connections
        end with it. One dropped earlier would leave its sockets to the
        garbage collector (a ``ResourceWarning``).
        """
        connections = self._connections().connections
        for connection in connections.values():
            connection.close()
        connections.clear()

    def _connections(self) -> Any:
        """This thread's connections, and the servers it sends one request at a time."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.pid = os.getpid()  # a forked child must not share the parent's sockets
            local.connections = {}
            local.one_at_a_time = set()
        return local

    def _connection(self, server: tuple[str, str, int | None]) -> Connection:
        """This thread's open connection to ``server``, or a new one."""
        connections = self._connections().connections
        connection: Connection | None = connections.get(server)
        if connection is not None and connection.sock is not None:
            return connection
        scheme, host, port = server
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
        connections[server] = connection
        return connection


def _prepare(request: Request) -> tuple[tuple[str, str, int | None], bytes, bytes | None]:
    """The server a request goes to, its prepared head, and its body."""
    headers = tuple(request.headers.items()) if request.headers else ()
    # A URL with a query is made per event (a postback, an order sent by GET, which
    # holds the customer's fields): not kept in the cache.
    make = _make_head if "?" in request.url else _head
    server, head = make(request.method, request.url, request.content_type, headers)
    body = request.body
    if body is None and request.method in _WITH_BODY:
        body = b""  # says "no body" with Content-Length: 0, as servers expect of a POST
    return server, head, body


def _make_head(
    method: str, url: str, content_type: str | None, extra: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str, int | None], bytes]:
    """The server and the request's head: the same for every event a destination posts."""
    scheme, host, port, target = _split(url)
    headers = {"User-Agent": _USER_AGENT, **dict(extra)}
    if content_type:
        headers["Content-Type"] = content_type
    try:
        host_header = _host_header(scheme, host, port)
        head = request_head(method, host_header, target, tuple(headers.items()))
    except ValueError as error:  # a line break or a non-Latin-1 character in a header
        raise DeliveryError(f"invalid request: {error}", retryable=False) from None
    return (scheme, host, port), head


_head = lru_cache(maxsize=64)(_make_head)


def _outcome(response: Response) -> Outcome:
    """A 2xx answer as it is; any other as the DeliveryError it means."""
    status = response.status
    if 200 <= status < 300:
        return response
    retryable = status in (408, 429) or (status >= 500 and status not in _PERMANENT_5XX)
    return DeliveryError(
        f"HTTP {status}: {_error_text(response)}",
        retryable=retryable,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        status=status,
    )


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


def _split(url: str) -> tuple[str, str, int | None, str]:
    """Scheme, host, port and request target."""
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
