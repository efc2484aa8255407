"""The clickId: one UUID that ties a visitor's click, lead and postbacks together."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

from itsdangerous import BadData, URLSafeTimedSerializer
from werkzeug.http import dump_cookie, parse_cookie

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

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


class JourneyCookie:
    """The signed cookie that keeps a visitor's clickId between requests.

    Signed with itsdangerous under its own salt, so the secret key can be
    shared with the application without one signature standing in for another,
    and timed, so a stolen or very old cookie expires server-side too.
    """

    SALT = "bangi-landing.journey"
    MAX_LENGTH = 1024  # far above a real value; longer ones are not even verified

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
        self._serializer = URLSafeTimedSerializer(secret_key, salt=self.SALT)

    def load(self, environ: WSGIEnvironment) -> str | None:
        """The clickId in the request's cookie, or None when absent, forged or expired."""
        value = parse_cookie(environ).get(self.name)
        if not value or len(value) > self.MAX_LENGTH:
            return None
        try:
            data = self._serializer.loads(value, max_age=self.max_age)
        except BadData:
            return None
        return parse_click_id(data.get("c")) if isinstance(data, dict) else None

    def header(self, click_id: str, *, secure: bool) -> str:
        """A ``Set-Cookie`` value carrying ``click_id``."""
        return dump_cookie(
            self.name,
            self._serializer.dumps({"c": click_id}),
            max_age=self.max_age,
            path=self.path,
            domain=self.domain,
            secure=secure,
            httponly=True,
            samesite="Lax",
        )
