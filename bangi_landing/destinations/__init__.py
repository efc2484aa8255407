"""Where events go. A destination turns an Event into one HTTP call and says how it went.

Adding a kind of destination is one module with a class that has a ``name``
and a ``deliver(event)`` that returns on success and raises
:class:`DeliveryError` otherwise.
"""

from __future__ import annotations

from typing import Protocol

from ..events import Event
from .bangi import BangiTracker
from .base import DeliveryError, HttpDestination


class Destination(Protocol):
    name: str

    def deliver(self, event: Event) -> None: ...


__all__ = ["BangiTracker", "DeliveryError", "Destination", "HttpDestination"]
