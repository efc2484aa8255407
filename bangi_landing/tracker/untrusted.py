"""What the bundled tracker takes of untrusted JSON, and how it reads stored JSON back.

Whatever it stores must come back out, as the API's JSON and on its pages, for
everyone. So it refuses, on the way in, what it could store but not show back or
could not store at all:

- JSON nested more than ``MAX_DEPTH`` levels deep (the body object is level
  one): Python reads and writes JSON recursively, and a click nested ~975
  levels deep parsed at the shallow stack of the intake but not at the deeper
  one of a page showing it;
- a lone UTF-16 surrogate (``"\\udfff"``), in a value or a name: JSON's escapes
  can spell one, UTF-8, and so SQLite, cannot encode it.

Stored JSON that cannot be read back within these limits (written by an older
version or by hand) comes back as its stored text, so one such row never takes
a page down.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

MAX_DEPTH: Final = 32

_SURROGATE = re.compile("[\ud800-\udfff]")
_LONE_SURROGATE: Final = (
    "has a lone surrogate (\\ud800 to \\udfff), which is not text: send valid Unicode"
)
# Also the refusal of JSON too deep for the parser itself (a RecursionError).
TOO_DEEP: Final = f"is nested more than {MAX_DEPTH} levels deep"


def problem(value: Any, depth: int = 1) -> str | None:
    """Why parsed JSON ``value`` may not be stored (completing "request body ..."), or None.

    ``depth`` is the level ``value`` is at; the recursion stops at ``MAX_DEPTH``.
    """
    if isinstance(value, str):
        return _LONE_SURROGATE if _SURROGATE.search(value) else None
    if not isinstance(value, dict | list):
        return None
    if depth > MAX_DEPTH:
        return TOO_DEEP
    items = [*value, *value.values()] if isinstance(value, dict) else value
    for item in items:
        if found := problem(item, depth + 1):
            return found
    return None


def load_stored(text: str) -> Any:
    """Stored JSON ``text`` parsed, or ``text`` itself when it cannot be shown back."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return text
    return text if problem(value) else value
