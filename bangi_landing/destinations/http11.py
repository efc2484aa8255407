"""A lean HTTP/1.1 client for delivery: one kept-alive connection, one request at a time.

Why not ``http.client``: delivery runs in the landing's own processes, beside
the pages, and per event ``http.client`` spent about 100 µs of Python on
building the request and, mostly, on parsing the answer's headers with the
``email`` package (a profile under load: ``bench/bench_load.py``). A
delivery needs much less of HTTP: a request whose head is prepared once per
URL, and an answer's status, its few headers that matter and a short body.
This module does that and no more, in a few dozen lines per part, and still
honours what a server may answer: ``1xx`` interim answers (skipped), a body
sized by ``Content-Length``, chunked or delimited by the connection's close,
``Connection: close`` and HTTP/1.0 (the connection is not reused), and a body
too large (read up to the limit, then the connection is dropped).

A :class:`Connection` belongs to one thread. Errors are ``OSError``
(``TimeoutError`` included) or :class:`ProtocolError`; the caller decides what
they mean for the event.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_HEAD = 64 * 1024  # status line and headers, at most
_NO_BODY = frozenset({204, 304})


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.x as this client reads it."""


@dataclass(frozen=True)
class Response:
    """An answer: its status, headers (names in lower case) and body (at most the limit read)."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request_head(
    method: str, host: str, target: str, headers: tuple[tuple[str, str], ...]
) -> bytes:
    """The request line and headers, without ``Content-Length``: made once per URL by the caller.

    A name or value that would end a line early (CR, LF) is a ``ValueError``:
    a header from the configuration must not smuggle in another.
    """
    parts = [method, host, target, *(part for header in headers for part in header)]
    if any("\r" in part or "\n" in part for part in parts):
        raise ValueError("a header or the URL holds a line break")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


class Connection:
    """One kept-alive connection to ``host``:``port`` (TLS with ``context``).

    :param connect_timeout: seconds to connect (and to finish the TLS handshake).
    :param read_timeout: seconds to wait, at most, for each part of an answer.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float,
        read_timeout: float,
        context: ssl.SSLContext | None = None,
    ) -> None:
        sock = socket.create_connection((host, port), timeout=connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if context is not None:
                sock = context.wrap_socket(sock, server_hostname=host)
            sock.settimeout(read_timeout)
        except BaseException:
            sock.close()
            raise
        self.sock: socket.socket | None = sock
        self.exchanges = 0  # answers read: once kept idle, the server may have closed it
        # Bytes received and not yet read are those of _buffer from _at on: answers are
        # read by moving _at, not by copying what is left after each (a pipelined
        # batch's hundred answers arrive in one receive).
        self._buffer = b""
        self._at = 0

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def exchange(self, head: bytes, body: bytes | None, *, limit: int) -> Response:
        """Send one request (``head`` from :func:`request_head`) and read its answer.

        :param limit: body bytes kept at most; past it the connection is closed.
        """
        [response] = self.pipeline([(head, body)], limit=limit)
        return response

    def pipeline(
        self, requests: Sequence[tuple[bytes, bytes | None]], *, limit: int
    ) -> Iterator[Response]:
        """Send ``requests`` in one write, then yield their answers in order (HTTP/1.1 pipelining).

        Fewer answers than requests come when the server closed the
        connection after one (``Connection: close``): it read no further, and
        the caller sends the rest again. A server that cannot pipeline answers
        the first and closes, or fails: see ``HttpDestination.request_all``.
        Each request is ``(head, body)``; ``body`` None sends none.
        """
        sock = self.sock
        if sock is None:
            raise ConnectionError("the connection is closed")
        # One write: a head and a body sent apart would meet Nagle and delayed ACKs,
        # and each request written apart costs a system call.
        sock.sendall(b"".join(_message(head, body) for head, body in requests))
        for head, _ in requests:
            if self.sock is None:
                return
            yield self._read_response(head.startswith(b"HEAD "), limit)

    def _read_response(self, to_head: bool, limit: int) -> Response:
        status, headers, version = self._read_head()
        while 100 <= status < 200:  # interim answers (100 Continue, 103 Early Hints): skip
            status, headers, version = self._read_head()
        keep = _keeps_alive(version, headers)
        if status in _NO_BODY or to_head:
            data = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            data = self._read_chunked(limit)
        elif (length := headers.get("content-length")) is not None:
            size = _content_length(length)
            data = self._read_exactly(min(size, limit))
            keep = keep and size <= limit
        else:  # the body ends when the server closes the connection
            data = self._read_to_close(limit)
            keep = False
        if len(data) >= limit:
            keep = False
        if not keep:
            self.close()
        self.exchanges += 1
        return Response(status, headers, data[:limit])

    # Reading

    def _receive(self) -> bytes:
        """The bytes not yet read, and more from the server."""
        assert self.sock is not None
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionResetError("the server closed the connection")
        self._buffer = self._buffer[self._at :] + data
        self._at = 0
        return self._buffer

    def _read_until(self, end_mark: bytes, too_long: str) -> bytes:
        """The bytes up to ``end_mark`` (which is read too); ``MAX_HEAD`` of them at most."""
        buffer, at = self._buffer, self._at
        while (end := buffer.find(end_mark, at)) < 0:
            if len(buffer) - at > MAX_HEAD:
                raise ProtocolError(too_long)
            buffer, at = self._receive(), 0
        self._at = end + len(end_mark)
        return buffer[at:end]

    def _read_head(self) -> tuple[int, dict[str, str], str]:
        """Status, headers and HTTP version of the next answer."""
        head = self._read_until(b"\r\n\r\n", "the answer's headers are too long")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit() or len(code) != 3:
            raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:40]!r}")
        headers: dict[str, str] = {}
        for line in lines:
            name, colon, value = line.partition(":")
            if not colon:
                raise ProtocolError("a header line without a colon")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return int(code), headers, version

    def _read_exactly(self, size: int) -> bytes:
        buffer, at = self._buffer, self._at
        while len(buffer) - at < size:
            buffer, at = self._receive(), 0
        self._at = at + size
        return buffer[at : at + size]

    def _read_line(self) -> bytes:
        return self._read_until(b"\r\n", "a chunk's size line is too long")

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        kept = 0
        while True:
            size_text = self._read_line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError("a chunk size that is not a number") from None
            if size == 0:
                while self._read_line():  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            if kept + size > limit:
                parts.append(self._read_exactly(limit - kept))
                return b"".join(parts)  # the rest is not read: the caller closes
            parts.append(self._read_exactly(size))
            kept += size
            if self._read_exactly(2) != b"\r\n":
                raise ProtocolError("a chunk not followed by CRLF")

    def _read_to_close(self, limit: int) -> bytes:
        assert self.sock is not None
        parts = [self._buffer[self._at :]]
        kept = len(parts[0])
        self._buffer, self._at = b"", 0
        while kept < limit and (data := self.sock.recv(65536)):
            parts.append(data)
            kept += len(data)
        return b"".join(parts)


def _message(head: bytes, body: bytes | None) -> bytes:
    if body is None:
        return head + b"\r\n"
    return b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body)


def _keeps_alive(version: str, headers: Mapping[str, str]) -> bool:
    connection = headers.get("connection")
    if connection is None:  # the usual answer: HTTP/1.1 keeps it, HTTP/1.0 does not
        return version != "HTTP/1.0"
    tokens = {token.strip() for token in connection.lower().split(",")}
    if version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def _content_length(value: str) -> int:
    if value.isdigit():  # the usual answer, parsed without the general case's sets
        return int(value)
    # Repeated identical values ("12, 12") are one length (RFC 9110, 8.6).
    values = {part.strip() for part in value.split(",")}
    if len(values) != 1 or not (text := values.pop()).isdigit():
        raise ProtocolError(f"an invalid Content-Length: {value[:40]!r}")
    return int(text)
