"""Events: what the middleware reports, fixed at creation so every retry is the same event.

An event is checked once, before it enters the outbox (:func:`clean_event`):
whatever a visitor sent, every destination can take it, so no event is
refused, or retried for a day, for what it holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import operator
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal["click", "lead", "postback", "order"]
# What a tracker takes. An order (the customer's fields, sealed: see sealed.py) goes
# only to a destination that names it in its kinds (destinations.NetworkOrders).
EVENT_KINDS: tuple[EventKind, ...] = ("click", "lead", "postback")
ORDER: EventKind = "order"

logger = logging.getLogger("bangi_landing")

# The bundled tracker's body limit (tracker/app.py's MAX_BODY): a payload over
# it is refused 413, for good.
MAX_PAYLOAD_BYTES = 64 * 1024
# Containers nested deeper than this (the event's own parameters are level 1)
# are dropped: no form makes them, and a tracker need not store them.
MAX_DEPTH = 8
# SQLite's, and most trackers', largest integer; a larger one is sent as its digits.
MAX_INT = 2**63 - 1
# An event's journey value holding the journey's split-test variant (see Event.journey).
JOURNEY_VARIANT = "variant"
# Parameters the middleware sets itself: never dropped to fit the size limit.
_OURS = frozenset({"campaignId", "landingPath", "status", "payout"})
# Event.body's encoder, made once: json.dumps with options builds one per call.
_encode_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def journey_event_id(kind: EventKind, click_id: str, detail: str = "") -> str:
    """The eventId of an event that happens at most once per journey.

    A lead, or a postback with a given status: the same journey gets the same
    eventId, so a form submitted twice or a postback relayed twice is one
    event everywhere (the outbox and the tracker both keep one per eventId).
    Same shape as a random one: 32 hex digits. (A click, the journey's first
    event, has its clickId's 32 hex digits, see :func:`click_event_id`.)
    """
    data = f"{kind}\x00{click_id}\x00{detail}".encode()
    return hashlib.blake2b(data, digest_size=16, person=b"bangi-event").hexdigest()


def click_event_id(click_id: str) -> str:
    """The eventId of a journey's click: its clickId's 32 hex digits.

    A journey has one click (the tracker keeps one per clickId), and a fresh
    clickId is 122 random bits, so the click needs no randomness of its own.
    """
    return click_id.replace("-", "")


@dataclass(slots=True)
class Event:
    """One click, lead or postback (a status change) of a journey.

    ``event_id`` is sent as the ``eventId`` extra parameter: the tracker stores
    an eventId once per event type, so delivering the same Event twice (a retry
    after a timeout, a second worker after a crash) records it once. An event
    is never changed once made (not frozen only because a frozen dataclass
    costs a page view a microsecond more to build).

    ``journey`` holds what the journey carries beside its clickId: the landing
    URL parameters that destinations asked to keep (AlterCPA Pro's click id),
    from the journey cookie, and its split-test variant at :data:`JOURNEY_VARIANT`.
    The outbox adds what it remembers of the journey's click when the event is
    delivered.
    """

    kind: EventKind
    click_id: str
    params: Mapping[str, Any] = field(default_factory=dict)
    event_id: str = field(default_factory=lambda: secrets.token_hex(16))  # 128 random bits
    created_at: float = field(default_factory=time.time)
    journey: Mapping[str, str] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The tracker request body: the extra parameters, then ours, which win."""
        return {**self.params, "clickId": self.click_id, "eventId": self.event_id}

    def body(self) -> bytes:
        """:meth:`payload` as a JSON request body, compact UTF-8: what the size limit measures."""
        text = _encode_compact(self.payload())
        # A row written before events were cleaned may hold a lone surrogate.
        return text.encode("utf-8", "replace")

    def to_dict(self) -> dict[str, Any]:
        data = {
            "kind": self.kind,
            "clickId": self.click_id,
            "params": dict(self.params.items()),  # the lazy click parameters' own items
            "eventId": self.event_id,
            "createdAt": self.created_at,
        }
        if self.journey:
            data["journey"] = dict(self.journey)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        return cls(
            kind=data["kind"],
            click_id=data["clickId"],
            params=data["params"],
            event_id=data["eventId"],
            created_at=data["createdAt"],
            journey=data.get("journey", {}),
        )


def clean_event(event: Event, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> Event:
    """``event`` as every destination can take it: itself when it needs nothing (the usual case).

    What a visitor's submit can hold and a tracker cannot store is fixed here,
    once, and said in one INFO line that names the fields:

    * text that is not valid Unicode (lone surrogates, which a JSON body may
      escape): each surrogate is replaced with U+FFFD;
    * numbers that are not finite (``NaN``, ``Infinity``) and integers beyond
      64 bits: sent as text (``"NaN"``, the digits), which loses nothing;
    * values that are not JSON (a ``Decimal`` in a status's extras): sent as
      their ``str()``;
    * containers nested deeper than ``MAX_DEPTH`` (8) levels: dropped;
    * a body over ``max_bytes`` (the bundled tracker's 64 KiB): the largest
      fields are dropped until it fits, never those the middleware sets
      (``campaignId``, ``landingPath``, ``status``, ``payout``); an order, whose
      one parameter is its sealed fields for the network, is never cut.

    Never raises: an event whose parameters cannot even be walked (a mapping
    of the application's own that fails) is logged and goes as it is.
    """
    try:
        return _clean(event, max_bytes)
    except Exception:
        logger.exception("bangi-landing: could not check %s event %s", event.kind, event.event_id)
        return event


def _clean(event: Event, max_bytes: int) -> Event:
    plain = _plain_size(event.params)
    if plain is not None and not event.journey:
        bound = plain + 6 * (len(event.click_id) + len(event.event_id)) + 64
        if bound <= max_bytes or event.kind == ORDER:
            return event  # the usual event: nothing to walk
    cleaner = _Cleaner()
    params = cleaner.mapping(event.params, None, 1)
    # 6 bytes at most per character of text, 32 per other value: most events
    # are far below the limit without being encoded.
    bound = cleaner.size_bound + 6 * (len(event.click_id) + len(event.event_id)) + 64
    journey = cleaner.mapping(event.journey, "journey", 1)
    # An order's one parameter is its sealed fields, for a network, not the tracker's limit.
    if bound > max_bytes and event.kind != ORDER:
        params = dict(params)
        _fit(dataclasses.replace(event, params=params), params, max_bytes, cleaner)
    if params is event.params and journey is event.journey:
        return event
    if cleaner.notes:
        logger.info(
            "bangi-landing: %s event %s cleaned before delivery: %s",
            event.kind,
            event.event_id,
            "; ".join(f"{what}: {', '.join(names)}" for what, names in cleaner.notes.items()),
        )
    return dataclasses.replace(event, params=params, journey=journey)


def _plain_size(params: Mapping[str, Any]) -> int | None:
    """The most bytes ``params`` can take in JSON if it is a dict of ASCII text and
    64-bit integers, which need no cleaning (the usual click); else None.

    A fast path of ``_Cleaner.mapping``, with the same bound: a ``str``'s
    ``isascii`` is one flag to read, where the walk costs a method call a value.
    """
    if type(params) is not dict:
        return None
    size = 0
    for name, value in params.items():
        if type(name) is not str or not name.isascii():
            return None
        if type(value) is str and value.isascii():
            size += 6 * (len(name) + len(value)) + 6
        elif type(value) is int and -MAX_INT - 1 <= value <= MAX_INT:
            size += 6 * len(name) + 35
        else:
            return None
    return size


def _fit(event: Event, params: dict[str, Any], max_bytes: int, cleaner: _Cleaner) -> None:
    """Drop ``params``' largest fields (not ours) until ``event``'s body is ``max_bytes`` at most.

    ``params`` is ``event``'s own dict.
    """
    size = len(event.body())
    if size <= max_bytes:
        return
    # Removing a field removes ``"name":value,``: as long as ``{"name":value}`` less one byte.
    sizes = {name: len(_field_body(name, value)) - 1 for name, value in params.items()}
    for name in sorted(sizes.keys() - _OURS, key=sizes.__getitem__, reverse=True):
        del params[name]
        cleaner.note(f"dropped to fit the {max_bytes // 1024} KiB limit", name)
        size -= sizes[name]
        if size <= max_bytes:
            return


def _field_body(name: str, value: Any) -> bytes:
    return json.dumps({name: value}, ensure_ascii=False, separators=(",", ":")).encode()


_SURROGATE = re.compile(r"[\ud800-\udfff]")
_DROP: Any = object()  # what a cleaned value that must go is, until its container leaves it out


class _Cleaner:
    """One event's walk: cleaned copies of what needs it, what was done to which fields."""

    def __init__(self) -> None:
        self.notes: dict[str, list[str]] = {}  # what was done: the fields it was done to
        self.size_bound = 0  # bytes that the text and values walked can take in JSON, at most

    def note(self, what: str, field_name: str) -> None:
        """Remember ``what`` was done to ``field_name`` (quoted, escaped, 40 characters at most)."""
        names = self.notes.setdefault(what, [])
        shown = repr(field_name[:40])
        if shown not in names:
            names.append(shown)

    def mapping(self, value: Mapping[Any, Any], field_name: str | None, depth: int) -> Any:
        """``value`` cleaned; the very object when nothing in it changed.

        :param field_name: the top-level field ``value`` belongs to; None for
            the event's parameters themselves, whose keys are the fields.
        """
        items: list[tuple[str, Any]] = []
        changed = not isinstance(value, dict) and depth > 1  # json takes no other mapping
        for key, item in value.items():
            if isinstance(key, str):
                name = self.string(key, field_name or key)
            else:  # a status's extras may have any keys: JSON's are text
                name = self.text(key, field_name or f"{type(key).__name__} key")
            clean = self.value(item, field_name or name, depth)
            changed |= name is not key or clean is not item
            if name is not _DROP and clean is not _DROP:
                items.append((name, clean))
        return dict(items) if changed else value

    def value(self, value: Any, field_name: str, depth: int) -> Any:
        if isinstance(value, str):
            return self.string(value, field_name)
        self.size_bound += 32
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            if -MAX_INT - 1 <= value <= MAX_INT:
                return value
            self.note("integers beyond 64 bits sent as text", field_name)
            return str(value)
        if isinstance(value, float):
            if math.isfinite(value):
                return value
            self.note("numbers that are not finite sent as text", field_name)
            return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
        if isinstance(value, Mapping | list | tuple):
            if depth >= MAX_DEPTH:
                self.note(f"nested deeper than {MAX_DEPTH} levels, dropped", field_name)
                return _DROP
            if isinstance(value, Mapping):
                return self.mapping(value, field_name, depth + 1)
            items = [self.value(item, field_name, depth + 1) for item in value]
            if all(map(operator.is_, items, value)):
                return value
            return [item for item in items if item is not _DROP]
        return self.text(value, field_name)

    def text(self, value: object, field_name: str) -> Any:
        """A value that is not JSON, as its ``str()`` (dropped if even that fails)."""
        try:
            text = str(value)
        except Exception:
            self.note("values that are not JSON, dropped", field_name)
            return _DROP
        self.note("values that are not JSON sent as text", field_name)
        return self.string(text, field_name)

    def string(self, value: str, field_name: str) -> str:
        self.size_bound += 6 * len(value) + 3
        if value.isascii():
            return value
        try:
            value.encode()
        except UnicodeEncodeError:
            self.note("lone surrogates replaced with U+FFFD", field_name)
            return _SURROGATE.sub("\ufffd", value)
        return value
