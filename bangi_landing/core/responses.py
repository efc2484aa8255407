"""What the middleware needs to know of a response, and the headers a journey's response gets.

A landing serves the same few responses over and over (the page, its
assets, the thank-you redirect), with the same status and headers each time.
So what a status line and header list mean, and how they change when the
page gets the clickId, is worked out once per distinct response and
remembered (:class:`ResponseShapes`): a page view costs a dict lookup, not
header parsing.
"""

from __future__ import annotations

import codecs
import threading
from collections.abc import Mapping
from functools import lru_cache
from typing import NamedTuple

from werkzeug.datastructures import ResponseCacheControl
from werkzeug.http import dump_header, parse_cache_control_header, parse_options_header

__all__ = ["HTML_TYPES", "ResponseShape", "ResponseShapes", "classify", "private", "vary_on_cookie"]

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
WATCHED = ("content-type", "content-encoding", "content-disposition", "content-length")

Headers = list[tuple[str, str]]
RawHeaders = list[tuple[bytes, bytes]]  # ASGI's: lowercase names, latin-1 bytes


class ResponseShape(NamedTuple):
    """One response's status and headers, read, and its headers as a journey's response."""

    code: int
    page: bool  # an HTML document, not an attachment: a landing page view when 2xx
    rewritable: bool  # a page whose body the rewriter can read
    length: int  # Content-Length, or -1
    rewritten: Headers  # the headers when the body gets the clickId (without Set-Cookie)
    kept: Headers  # the headers when only the cookie is set (without Set-Cookie)
    raw_rewritten: RawHeaders  # the same two, as ASGI sends them
    raw_kept: RawHeaders


class ResponseShapes:
    """Remembers the shape of each distinct (status, headers); thread-safe.

    Bounded: when ``max_size`` distinct responses have been seen (an app whose
    headers differ per response, a session cookie say), it starts afresh.
    """

    def __init__(self, max_size: int = 256) -> None:
        self.max_size = max_size
        self._shapes: dict[tuple[object, ...], ResponseShape] = {}
        self._lock = threading.Lock()

    def get(self, status: str, headers: Headers) -> ResponseShape:
        """The shape of a WSGI response: its status line and header list."""
        key = (status, *headers)
        try:
            shape = self._shapes.get(key)
        except TypeError:  # headers as lists: valid WSGI, but no dict key
            return shape_of(status, headers)
        if shape is None:
            shape = self._remember(key, shape_of(status, headers))
        return shape

    def get_raw(self, status: int, headers: RawHeaders) -> ResponseShape:
        """The shape of an ASGI response: its status code and raw headers, read as latin-1."""
        key = (status, *headers)
        try:
            shape = self._shapes.get(key)
        except TypeError:  # headers as lists
            shape, key = None, ()
        if shape is None:
            decoded = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]
            shape = shape_of(str(status), decoded)
            if key:
                self._remember(key, shape)
        return shape

    def _remember(self, key: tuple[object, ...], shape: ResponseShape) -> ResponseShape:
        with self._lock:
            if len(self._shapes) >= self.max_size:
                self._shapes.clear()
            self._shapes[key] = shape
        return shape


def shape_of(status: str, headers: Headers) -> ResponseShape:
    code = int(status[:3])
    found: dict[str, str] = {}
    kept: Headers = []
    rewritten: Headers = []
    vary = cache_control = ""
    for name, value in headers:
        lower = name.lower()
        if lower in WATCHED:
            found[lower] = value
        if lower == "cache-control":  # repeated headers combine, as if comma-joined
            cache_control = f"{cache_control}, {value}" if cache_control else value
            continue
        kept.append((name, value))
        if lower == "vary":
            vary = f"{vary}, {value}" if vary else value
        elif lower == "content-length":
            pass  # the body grows by the fields
        elif lower == "etag" and not value.startswith("W/"):
            rewritten.append((name, "W/" + value))  # same meaning, different bytes
        else:
            rewritten.append((name, value))
    # One visitor's clickId must never reach another from a shared cache.
    kept.append(("Cache-Control", private(cache_control)))
    rewritten += [("Vary", vary_on_cookie(vary)), ("Cache-Control", private(cache_control))]
    page, rewritable = classify(code, found)
    length = found.get("content-length", "")
    return ResponseShape(
        code,
        page,
        rewritable,
        int(length) if length.isascii() and length.isdigit() else -1,
        rewritten,
        kept,
        _raw(rewritten),
        _raw(kept),
    )


def _raw(headers: Headers) -> RawHeaders:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def classify(code: int, found: Mapping[str, str]) -> tuple[bool, bool]:
    """Whether a response is an HTML page, and whether its body can get the clickId.

    :param found: the response's ``content-type``, ``content-encoding`` and
        ``content-disposition`` headers (lowercase names).
    """
    mimetype, charset = _content_type(found.get("content-type", ""))
    page = mimetype in HTML_TYPES and not _is_attachment(found.get("content-disposition"))
    rewritable = (
        page
        and code not in (204, 304)
        and found.get("content-encoding", "identity").lower() == "identity"
        and _ascii_compatible(charset)
    )
    return page, rewritable


@lru_cache(maxsize=256)
def _content_type(value: str) -> tuple[str, str]:
    mimetype, options = parse_options_header(value)
    return mimetype, options.get("charset", "utf-8")


@lru_cache(maxsize=256)
def _is_attachment(value: str | None) -> bool:
    return bool(value) and parse_options_header(value)[0] == "attachment"


@lru_cache(maxsize=64)
def _ascii_compatible(charset: str) -> bool:
    """Whether markup bytes of this charset are ASCII (so the rewriter can read them).

    They are when every byte below 0x80 means its ASCII character: not in
    UTF-16 or UTF-32 (which fail the "<form>" test), nor in the stateful
    encodings, nor in a charset Python does not know (ISO-2022-CN).
    """
    # Stateful encodings write ASCII text as ASCII, yet their bytes below 0x80
    # are not always ASCII, so "<form>" may be the bytes of other characters:
    # ISO-2022-JP puts kanji in ASCII bytes after an escape, and so do the
    # rest of the ISO-2022 family, HZ and UTF-7.  As Python names them
    # (lookup() maps every alias, "csISO2022JP" or "hz-gb-2312", to one).
    # Browsers decode ISO-2022-JP statefully, ISO-2022-KR and HZ as the WHATWG
    # "replacement" encoding (the whole body one U+FFFD), and know no UTF-7.
    stateful = ("iso2022", "hz", "utf-7")
    try:
        name = codecs.lookup(charset).name
        return not name.startswith(stateful) and "<form>".encode(name) == b"<form>"
    except (LookupError, UnicodeError):
        return False


@lru_cache(maxsize=256)
def vary_on_cookie(vary: str) -> str:
    """``Vary`` with ``Cookie`` added: a rewritten page differs per visitor."""
    names = [name.strip() for name in vary.split(",") if name.strip()]
    if "*" in names or any(name.lower() == "cookie" for name in names):
        return vary
    return dump_header([*names, "Cookie"])


@lru_cache(maxsize=256)
def private(value: str) -> str:
    """``Cache-Control`` that keeps the response out of shared caches, its other rules kept."""
    if not value:
        return "private"
    cache_control = parse_cache_control_header(value, cls=ResponseCacheControl)
    cache_control.public = False
    cache_control.s_maxage = None
    if not cache_control.no_store:
        cache_control.private = True
    return cache_control.to_header()
