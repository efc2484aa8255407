"""Where events go. A destination turns an Event into one HTTP call and says how it went.

Adding a kind of destination is one module with a class that has:

* ``name``, for logs, and ``key``, naming it in the outbox (which several
  landings may share): its kind and address, never a secret;
* ``kinds``, the event kinds it takes (the outbox keeps no rows for the others);
* ``journey_params``, landing URL parameters the journey must keep for it
  (they travel in the journey cookie and reach it as ``event.journey``);
* ``deliver(event)``, which returns on success and raises
  :class:`DeliveryError` otherwise;
* optionally ``deliver_all(events)``, which delivers a batch at once and
  returns, for each event, its ``DeliveryError`` or None: the sender then
  hands it each claimed batch (the Bangi tracker pipelines them).

A destination that takes ``order`` events gets their fields sealed (see
``sealed.py``): the landing calls its ``use_sealer(sealer)`` at start-up so it
can open them, as :class:`NetworkOrders` does.
"""

from __future__ import annotations

from typing import Protocol

from ..events import Event, EventKind
from .altercpa import AlterCPAPro
from .bangi import BangiTracker
from .base import DeliveryError, HttpDestination
from .orders import NetworkOrders
from .postback import PostbackTemplates


class Destination(Protocol):
    name: str  # for logs
    key: str  # for the outbox: kind and address, no secrets
    kinds: frozenset[EventKind]
    journey_params: tuple[str, ...]

    def deliver(self, event: Event) -> None: ...


__all__ = [
    "AlterCPAPro",
    "BangiTracker",
    "DeliveryError",
    "Destination",
    "HttpDestination",
    "NetworkOrders",
    "PostbackTemplates",
]
