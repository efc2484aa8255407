"""Events: what the middleware reports, fixed at creation so every retry is the same event."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal["click", "lead", "postback"]
EVENT_KINDS: tuple[EventKind, ...] = ("click", "lead", "postback")


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
    from the journey cookie. The outbox adds what it remembers of the journey's
    click when the event is delivered.
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
