"""A submit's fields, from its body's bytes: urlencoded and multipart forms, JSON objects.

Protocol-free: each door reads the body its own way (at most
``max_submit_size`` bytes, handed on to the app unchanged) and passes the
bytes here.
"""

from __future__ import annotations

import io
import json
from typing import Any

from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_options_header

__all__ = ["is_form_or_json", "parse_fields"]

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def is_form_or_json(content_type: str) -> bool:
    """Whether a body of this type is read for a submit's fields (a cheap look before parsing)."""
    mimetype = content_type.partition(";")[0].strip().lower()
    return mimetype in FORM_TYPES or mimetype == "application/json" or mimetype.endswith("+json")


def parse_fields(content_type: str, body: bytes) -> dict[str, Any] | None:
    """The submitted fields: form values as strings (lists when repeated), or a JSON object.

    None for a body of another type, or one that does not parse.
    """
    mimetype, options = parse_options_header(content_type)
    if mimetype == "application/json" or mimetype.endswith("+json"):
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return None
        return data if isinstance(data, dict) else None
    if mimetype in FORM_TYPES:
        parser = FormDataParser(silent=True)
        _, form, files = parser.parse(io.BytesIO(body), mimetype, len(body), options)
        for upload in files.values():
            upload.close()  # uploads are the app's business, not the tracker's
        return {key: values[0] if len(values) == 1 else values for key, values in form.lists()}
    return None
