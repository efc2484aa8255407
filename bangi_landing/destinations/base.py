"""What every HTTP destination shares: one session per process, timeouts, outcome rules."""

from __future__ import annotations

import os
import time
from typing import Any

import requests
from werkzeug.http import parse_date

# Connect fast or give up; a tracker that accepted the connection may take longer.
DEFAULT_TIMEOUT = (3.05, 10.0)
# 501 Not Implemented and 505 HTTP Version Not Supported will not change on retry.
_PERMANENT_5XX = frozenset({501, 505})


class DeliveryError(Exception):
    """A delivery that did not succeed.

    ``retryable`` says whether the same request may succeed later;
    ``retry_after`` is the server's own wish (seconds), when it gave one.
    """

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class HttpDestination:
    """Sends requests with explicit timeouts and turns the outcome into success or DeliveryError."""

    name = "http"

    def __init__(self, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self._session: requests.Session | None = None
        self._pid = 0

    @property
    def session(self) -> requests.Session:
        # A forked child must not share the parent's pooled sockets.
        if self._session is None or self._pid != os.getpid():
            self._session = requests.Session()
            self._pid = os.getpid()
        return self._session

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout as error:
            # After a read timeout the outcome is unknown; retrying is safe
            # because the event keeps its eventId.
            raise DeliveryError(f"timed out: {type(error).__name__}", retryable=True) from None
        except requests.RequestException as error:
            raise DeliveryError(
                f"connection failed: {type(error).__name__}", retryable=True
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return response
        retryable = status in (408, 429) or (status >= 500 and status not in _PERMANENT_5XX)
        raise DeliveryError(
            f"HTTP {status}: {_error_text(response)}",
            retryable=retryable,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    when = parse_date(value)
    return max(0.0, when.timestamp() - time.time()) if when else None


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason or ""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])[:200]
    return response.reason or ""
