"""The Bangi tracker's external landing tracking API (seed 004)."""

from __future__ import annotations

from urllib.parse import urljoin

from ..events import Event
from .base import DEFAULT_TIMEOUT, HttpDestination

_PATHS = {
    "click": "api/v2/track/click",
    "lead": "api/v2/track/lead",
    "postback": "api/v2/track/postback",
}


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
        body = event.body()
        self.request("POST", self._urls[event.kind], body=body, content_type="application/json")
