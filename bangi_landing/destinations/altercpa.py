"""AlterCPA Pro's External sites API (seed 000): a lead is ``click.json``, a status ``status.json``.

The seed's table, with ``{lead}`` our clickId (Pro de-duplicates on click and
exto, so a form submitted twice can never make two Pro leads)::

    wait:    {url}/api/site/click.json?token={token}&click={click}&exto={lead}
    hold:    {url}/api/site/status.json?token={token}&click={click}&status=hold&auto=1&exto={lead}
    approve: ... status=approve ...   cancel: ... status=cancel ...   trash: ... status=trash ...

Pro answers HTTP 200 even when it refuses a call; its JSON body's ``status``
says ``ok`` or ``error``. A refusal (or a 403 "Forbidden") means the site
token is wrong: permanent, never retried. 5xx, timeouts and connection
errors are retried like any other destination's.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from ..core.statuses import PRO_STATUSES, as_any_status
from ..events import Event, EventKind
from .base import DEFAULT_TIMEOUT, DeliveryError, HttpDestination, public_url

logger = logging.getLogger("bangi_landing")

_FIX_SITE_KEY = "the site token is wrong: copy it again from External sites in AlterCPA Pro"


class AlterCPAPro(HttpDestination):
    """Reports leads and their statuses to AlterCPA Pro through an external site.

    A journey without Pro's click id (the landing was not opened from a Pro
    link) sends nothing to Pro; that is logged once, at INFO.

    :param url: Pro's base URL, ``https://{domain}``.
    :param token: the site token from External sites; it never reaches a log
        line or the outbox.
    :param click_param: the landing URL parameter that carries Pro's click id
        (the ``{click}`` of the seed's deep link).
    """

    name = "altercpa"
    kinds: frozenset[EventKind] = frozenset({"lead", "postback"})

    def __init__(
        self,
        url: str,
        token: str,
        *,
        click_param: str = "click",
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(timeout=timeout)
        self.url = url.rstrip("/")
        self.key = f"altercpa {self.url}"
        self.click_param = click_param
        self.journey_params = (click_param,)
        self._secrets = {token, quote(token, safe="")} - {""}
        self._token = quote(token, safe="")
        self._told_no_click = False

    def __repr__(self) -> str:
        return f"AlterCPAPro({self.url!r}, token=<redacted>, click_param={self.click_param!r})"

    def url_for(self, event: Event) -> str | None:
        """The seed's URL for ``event``; None when its journey has no Pro click id."""
        click = event.journey.get(self.click_param)
        if not click:
            return None
        common = f"token={self._token}&click={quote(click, safe='')}"
        exto = quote(event.click_id, safe="")
        if event.kind == "lead":
            return f"{self.url}/api/site/click.json?{common}&exto={exto}"
        status = as_any_status(event.params.get("status"))
        if event.kind != "postback" or status is None:
            raise DeliveryError(f"AlterCPA Pro takes no {event.kind} event", retryable=False)
        pro_status = PRO_STATUSES[status]
        return f"{self.url}/api/site/status.json?{common}&status={pro_status}&auto=1&exto={exto}"

    def deliver(self, event: Event) -> None:
        url = self.url_for(event)
        if url is None:
            if not self._told_no_click:
                self._told_no_click = True
                logger.info(
                    "bangi-landing: journeys without AlterCPA Pro's click id (URL parameter %r)"
                    " send nothing to Pro",
                    self.click_param,
                )
            return
        try:
            answer = self.request("GET", url).json()
        except DeliveryError as error:
            if error.status == 403:
                raise error.reworded(f"Forbidden: {_FIX_SITE_KEY}", retryable=False) from None
            raise error.reworded(self._redact(str(error))) from None
        except ValueError:
            message = "AlterCPA Pro answered with no JSON body"
            raise DeliveryError(message, retryable=True, url=public_url(url)) from None
        if isinstance(answer, dict) and answer.get("status") == "ok":
            return
        said = answer.get("error") if isinstance(answer, dict) else None
        reason = f"{self._redact(str(said))[:200]}: " if said else ""
        message = f"refused: {reason}{_FIX_SITE_KEY}"
        raise DeliveryError(message, retryable=False, url=public_url(url))  # no query: no token

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<token>")
        return text
