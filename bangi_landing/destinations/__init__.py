"""Where events go. A destination turns an Event into one HTTP call and says how it went.

Adding a kind of destination is one module with a class that has a ``name``,
a ``key`` and a ``deliver(event)`` that returns on success and raises
:class:`DeliveryError` otherwise. The ``key`` names the destination in the
outbox, which several landings may share: its kind and address, never a secret.
"""

from __future__ import annotations

from typing import Protocol

from ..events import Event
from .bangi import BangiTracker
from .base import DeliveryError, HttpDestination


class Destination(Protocol):
    name: str  # for logs
    key: str  # for the outbox: kind and address, no secrets

    def deliver(self, event: Event) -> None: ...


__all__ = ["BangiTracker", "DeliveryError", "Destination", "HttpDestination"]
