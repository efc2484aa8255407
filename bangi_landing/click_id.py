"""The clickId: one UUID that ties a visitor's click, lead and postbacks together."""

from __future__ import annotations

import re
import time
import uuid
from functools import lru_cache
from typing import TYPE_CHECKING

from itsdangerous import BadData, TimestampSigner
from werkzeug.http import dump_cookie, parse_cookie

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

# The seed's examples are canonical hyphenated UUIDs. Only that form is accepted
# (any case) so that "{...}", "urn:uuid:..." or bare hex never become a second
# spelling of the same journey.
EXAMPLE_CLICK_ID = "8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1"  # the seed's, for error messages
_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def parse_click_id(value: object) -> str | None:
    """Return ``value`` as a lowercase canonical UUID string, or ``None`` if it is not one."""
    if isinstance(value, str) and _CANONICAL_UUID.fullmatch(value):
        return value.lower()
    return None


def new_click_id() -> str:
    """A fresh random clickId (UUID version 4)."""
    return str(uuid.uuid4())


class JourneyCookie:
    """The signed cookie that keeps a visitor's clickId between requests.

    The value is the clickId signed by itsdangerous's ``TimestampSigner`` under
    its own salt (so the secret key can be shared with the application without
    one signature standing in for another) and timed (so an old or stolen
    cookie expires server-side too). Verified values are remembered in a
    bounded cache keyed by the exact ``Cookie`` header: a returning visitor
    costs a dict lookup, and the age is still checked on every request.
    """

    SALT = "bangi-landing.journey"
    MAX_LENGTH = 256  # a real value is about 80 characters; longer ones are not even verified
    CACHE_SIZE = 4096

    def __init__(
        self,
        secret_key: str,
        *,
        name: str = "bangi_journey",
        max_age: int = 30 * 24 * 3600,
        path: str = "/",
        domain: str | None = None,
    ) -> None:
        self.name = name
        self.max_age = max_age
        self.path = path
        self.domain = domain
        self._signer = TimestampSigner(secret_key, salt=self.SALT)
        self._read = lru_cache(maxsize=self.CACHE_SIZE)(self._read_header)

    def load(self, environ: WSGIEnvironment) -> str | None:
        """The clickId in the request's cookie, or None when absent, forged or expired."""
        header = environ.get("HTTP_COOKIE", "")
        if self.name not in header or len(header) > 8192:
            return None
        verified = self._read(header)
        if verified is None:
            return None
        click_id, signed_at = verified
        return click_id if 0 <= time.time() - signed_at <= self.max_age else None

    def _read_header(self, header: str) -> tuple[str, float] | None:
        value = parse_cookie(header).get(self.name)
        if not value or len(value) > self.MAX_LENGTH:
            return None
        try:
            payload, signed_at = self._signer.unsign(value, return_timestamp=True)
        except BadData:
            return None
        click_id = parse_click_id(payload.decode("ascii", "replace"))
        return (click_id, signed_at.timestamp()) if click_id else None

    def header(self, click_id: str, *, secure: bool) -> str:
        """A ``Set-Cookie`` value carrying ``click_id``."""
        return dump_cookie(
            self.name,
            self._signer.sign(click_id).decode("ascii"),
            max_age=self.max_age,
            path=self.path,
            domain=self.domain,
            secure=secure,
            httponly=True,
            samesite="Lax",
        )
