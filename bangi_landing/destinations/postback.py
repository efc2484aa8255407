"""Postback URL templates: a GET per event to any network that takes macros in a URL.

::

    PostbackTemplates({
        "lead": "https://network.example/pb?cid={clickId}&event=lead",
        "postback": "https://network.example/pb?cid={clickId}&status={status}&sum={payout}",
    })

A macro is a name in braces: ``{clickId}``, ``{eventId}``, ``{status}``,
``{payout}``, ``{variant}`` (the journey's split-test variant, on every event
of the journey, a status reported later included), any parameter of the event
(a click's URL parameters, a lead's form fields, a postback's extras) or of
its journey. Values are URL-encoded; a macro with no value becomes empty.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from ..events import EVENT_KINDS, JOURNEY_VARIANT, Event, EventKind
from .base import DEFAULT_TIMEOUT, HttpDestination

_MACRO = re.compile(r"\{([A-Za-z0-9_.\-]+)\}")
_BUILT_IN = frozenset({"clickId", "eventId", "status", "payout"})


class PostbackTemplates(HttpDestination):
    """Sends each event whose kind has a template as a GET to the filled-in URL.

    :param templates: a URL template per event kind (``click``, ``lead``,
        ``postback``); kinds without one send nothing.

    Macros that name neither a built-in nor one of the event's own parameters
    are kept for the journey from the landing URL (in the journey cookie), so
    a lead's postback can carry the ``{source}`` its click came with.
    """

    name = "postback"

    def __init__(
        self, templates: Mapping[str, str], *, timeout: tuple[float, float] = DEFAULT_TIMEOUT
    ) -> None:
        super().__init__(timeout=timeout)
        unknown = set(templates) - set(EVENT_KINDS)
        if unknown:
            raise ValueError(
                f"postback templates are per event kind ({', '.join(EVENT_KINDS)}),"
                f" not {sorted(unknown)[0]!r}"
            )
        for kind, template in templates.items():
            parts = urlsplit(template)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"the {kind} postback template must be an http(s) URL")
        self.templates: dict[EventKind, str] = {
            k: t for k in EVENT_KINDS if (t := templates.get(k))
        }
        self.kinds = frozenset(self.templates)
        macros = {name for t in self.templates.values() for name in _MACRO.findall(t)}
        self.journey_params = tuple(sorted(macros - _BUILT_IN))
        # The templates may carry a network's key: the outbox key has a digest instead.
        digest = hashlib.blake2b(repr(sorted(self.templates.items())).encode(), digest_size=4)
        hosts = sorted({urlsplit(t).netloc.rpartition("@")[2] for t in self.templates.values()})
        self.key = f"postback {','.join(hosts)} {digest.hexdigest()}"

    def __repr__(self) -> str:
        return f"PostbackTemplates(<{len(self.templates)} templates>, key={self.key!r})"

    def url_for(self, event: Event) -> str:
        values: dict[str, Any] = {**event.journey, **event.params}
        if JOURNEY_VARIANT in event.journey:  # the journey's, never a URL parameter's
            values[JOURNEY_VARIANT] = event.journey[JOURNEY_VARIANT]
        values["clickId"] = event.click_id
        values["eventId"] = event.event_id

        def fill(match: re.Match[str]) -> str:
            value = values.get(match[1])
            if isinstance(value, list):  # a repeated parameter: the first one
                value = value[0] if value else None
            if value is None or isinstance(value, dict):
                return ""
            return quote(str(value), safe="")

        return _MACRO.sub(fill, self.templates[event.kind])

    def deliver(self, event: Event) -> None:
        self.request("GET", self.url_for(event))
