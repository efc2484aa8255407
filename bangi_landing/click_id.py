"""The clickId: one UUID that ties a visitor's click, lead and postbacks together."""

from __future__ import annotations

import re
import uuid

# The seed's examples are canonical hyphenated UUIDs. Only that form is accepted
# (any case) so that "{...}", "urn:uuid:..." or bare hex never become a second
# spelling of the same journey.
_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def parse_click_id(value: object) -> str | None:
    """Return ``value`` as a lowercase canonical UUID string, or ``None`` if it is not one."""
    if isinstance(value, str) and _CANONICAL_UUID.fullmatch(value):
        return value.lower()
    return None


def new_click_id() -> str:
    """A fresh random clickId (UUID version 4)."""
    return str(uuid.uuid4())
