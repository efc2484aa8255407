"""The Bangi tracker's external landing tracking API (seed 004)."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urljoin

from ..events import Event
from .base import DEFAULT_TIMEOUT, DeliveryError, HttpDestination, Request

_PATHS = {
    "click": "api/v2/track/click",
    "lead": "api/v2/track/lead",
    "postback": "api/v2/track/postback",
}


_NOT_THE_API = (
    "no tracker API at this URL: tracker_url must be the tracker's base URL"
    " (such as https://dashboard.example.com, without /api/v2)"
)


class BangiTracker(HttpDestination):
    """Posts each event as JSON to the tracker (the click endpoint takes POST JSON only).

    :param url: the tracker's base URL, e.g. ``https://dashboard.example.com``.
    """

    name = "bangi"

    def __init__(self, url: str, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> None:
        super().__init__(timeout=timeout)
        self.url = url.rstrip("/") + "/"
        self.key = f"bangi {self.url}"
        self._urls = {kind: urljoin(self.url, path) for kind, path in _PATHS.items()}

    def deliver(self, event: Event) -> None:
        [error] = self.deliver_all([event])
        if error is not None:
            raise error

    def deliver_all(self, events: Sequence[Event]) -> list[DeliveryError | None]:
        """Post ``events`` pipelined (the tracker takes an eventId once); each one's failure."""
        requests = [
            Request("POST", self._urls[event.kind], event.body(), "application/json")
            for event in events
        ]
        return [
            _explained(outcome) if isinstance(outcome, DeliveryError) else None
            for outcome in self.request_all(requests)
        ]


def _explained(error: DeliveryError) -> DeliveryError:
    if error.status != 404:
        return error
    # The tracker's API answers no 404 of its own: nothing lives at this URL.
    return error.reworded(f"{error}: {_NOT_THE_API}")
