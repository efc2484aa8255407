"""Events: what the middleware reports, fixed at creation so every retry is the same event."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal["click", "lead", "postback"]


@dataclass(frozen=True, slots=True)
class Event:
    """One click, lead or postback of a journey.

    ``event_id`` is sent as the ``eventId`` extra parameter: the tracker stores
    an eventId once per event type, so delivering the same Event twice (a retry
    after a timeout, a second worker after a crash) records it once.
    """

    kind: EventKind
    click_id: str
    params: Mapping[str, Any] = field(default_factory=dict)
    event_id: str = field(default_factory=lambda: secrets.token_hex(16))  # 128 random bits
    created_at: float = field(default_factory=time.time)

    def payload(self) -> dict[str, Any]:
        """The tracker request body: the extra parameters, then ours, which win."""
        return {**self.params, "clickId": self.click_id, "eventId": self.event_id}

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "clickId": self.click_id,
            "params": dict(self.params),
            "eventId": self.event_id,
            "createdAt": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        return cls(
            kind=data["kind"],
            click_id=data["clickId"],
            params=data["params"],
            event_id=data["eventId"],
            created_at=data["createdAt"],
        )
