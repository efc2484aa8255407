"""Personal data sealed at rest: an order's fields wait in the outbox encrypted.

An order is the one event that must carry the customer's name and phone, and
only to the CPA network. The core seals them when it makes the order, so the
outbox (SQLite, PostgreSQL, memory, a spool) only ever holds a token; the
order destination opens it to build its request, and nothing else does.

Fernet (AES-128-CBC with HMAC-SHA256, from ``cryptography``) under a key
derived from the landing's ``secret_key`` with HKDF and a salt and info of its
own, so the cookie-signing secret itself never encrypts anything. Changing
``secret_key`` makes waiting orders unreadable: they die with a reason that
says so.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_SALT = b"bangi-landing personal data at rest"
_INFO = b"order fields v1"


class Sealer:
    """Seals and opens an order's personal data under a key derived from ``secret``."""

    def __init__(self, secret: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_INFO).derive(
            secret.encode()
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def __repr__(self) -> str:
        return "Sealer(<key>)"

    def seal(self, data: Mapping[str, Any]) -> str:
        """``data`` (JSON-able) as an opaque token."""
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        return self._fernet.encrypt(text.encode("utf-8", "replace")).decode("ascii")

    def open(self, token: str) -> dict[str, Any]:
        """What :meth:`seal` sealed; ValueError when ``token`` is not one of this key's."""
        try:
            data = json.loads(self._fernet.decrypt(token.encode("ascii")))
        except (InvalidToken, UnicodeEncodeError, ValueError):
            raise ValueError("not sealed with this landing's secret_key") from None
        if not isinstance(data, dict):
            raise ValueError("not an order's sealed fields")
        return data
