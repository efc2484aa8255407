"""The core: one journey per visitor, whatever door the request came through.

Per request, a door (WSGI, ASGI, Django) asks the core:

1. **The journey.** A valid UUID from the URL parameter ``clickId``, else from
   the ``sub1`` field of a submit, else from the signed cookie. None of them:
   a fresh uuid4, used only if this response starts a journey. Crawlers, link
   previews and prefetches start no journey and take over none: unless their
   cookie continues one, they pass through untouched (:meth:`LandingCore.journey`).
2. **The decision.** From the response's status and headers: the events to
   report (a new visitor's landing page view is the click, a submit the app
   accepted the lead), whether the cookie is set, and whether the body gets
   the clickId in its forms (:meth:`LandingCore.decide`).
3. **The report.** Events go to the sender, which delivers them in the
   background (:meth:`LandingCore.report`); a lead is in the outbox first.

The core never sees a protocol. A request is a mapping of CGI-style names
(:data:`Meta`: ``REQUEST_METHOD``, ``PATH_INFO``, ``SCRIPT_NAME``,
``QUERY_STRING``, ``CONTENT_TYPE``, ``HTTP_COOKIE``, ``HTTP_USER_AGENT`` and
the prefetch headers), which is what a WSGI environ and Django's
``request.META`` already are and what the ASGI door builds from its scope; a
submit's body comes as bytes, read by the door. Anything that goes wrong in
the middleware's own code is logged and the page is served as the app made
it (fail open).
"""

from __future__ import annotations

import logging
import os
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol
from urllib.parse import parse_qsl

from .. import config
from ..destinations import BangiTracker, Destination
from ..events import (
    EVENT_KINDS,
    JOURNEY_VARIANT,
    ORDER,
    Event,
    click_event_id,
    journey_event_id,
)
from ..outbox import DEFAULT_OUTBOX
from ..sealed import Sealer
from ..sender import BackgroundSender
from . import privacy
from .journey import (
    MAX_PARAM_LENGTH,
    JourneyCookie,
    JourneyParams,
    SavedJourney,
    parse_click_id,
)
from .page_cache import PageCache
from .relay import StatusRelay
from .responses import ResponseShape, ResponseShapes, classify
from .rewrite import HtmlRewriter
from .statuses import StatusMapper, as_any_status
from .submit import is_form_or_json
from .variants import Variants
from .visitors import VisitorFilter

__all__ = [
    "ENVIRON_KEY",
    "VARIANT_KEY",
    "Decision",
    "Journey",
    "LandingCore",
    "Meta",
    "StreamRewriter",
]

logger = logging.getLogger("bangi_landing")

ENVIRON_KEY = "bangi.click_id"
VARIANT_KEY = "bangi.variant"  # the split test's variant, for the app to render

# A request as the core sees it: CGI-style names, as in a WSGI environ or Django's META.
Meta = MutableMapping[str, Any]
# Reads a submit's body and parses its fields (see submit.parse_fields); the door's own.
ReadFields = Callable[[Meta], "dict[str, Any] | None"]


class Sender(Protocol):
    def submit(self, event: Event, *, durable: bool = False) -> bool: ...


_Source = Literal["url", "form", "cookie", "new"]


@dataclass(slots=True)
class Journey:
    """One request's place in a visitor's journey."""

    click_id: str
    source: _Source
    params: JourneyParams  # the URL parameters the destinations keep for the journey
    save: bool  # the cookie must be (re)written, if the response continues the journey
    is_submit: bool
    fields: dict[str, Any] | None  # a submit's parsed fields
    cookie: str | None = None  # the journey cookie's value, when signed ahead (a new journey)
    variant: str | None = None  # of the split test, when the landing has one

    def values(self) -> dict[str, str]:
        """What its events carry for destinations beside the clickId: kept params, variant."""
        values = dict(self.params)
        if self.variant is not None:
            values[JOURNEY_VARIANT] = self.variant
        return values


class Decision(NamedTuple):
    events: tuple[Event, ...]  # to report once the response is final
    set_cookie: bool
    rewrite: bool  # the clickId goes in the body's forms


class StreamRewriter:
    """A body rewritten piece by piece; if rewriting fails, the rest goes out as it came."""

    __slots__ = ("_rewriter",)

    def __init__(self, pages: PageCache, click_id: str) -> None:
        self._rewriter: HtmlRewriter | None = pages.rewriter(click_id)

    def feed(self, data: bytes) -> bytes:
        if self._rewriter is None:
            return data
        try:
            return self._rewriter.feed(data)
        except Exception:
            # Fail open: whatever the rewriter was holding back, if it can still give it.
            logger.exception("bangi-landing: rewriting failed; serving the rest of the page as is")
            return self.finish() + data

    def finish(self) -> bytes:
        """What the rewriter still holds, at the end of the body."""
        rewriter, self._rewriter = self._rewriter, None
        try:
            return rewriter.finish() if rewriter is not None else b""
        except Exception:
            logger.exception("bangi-landing: rewriting failed at the end of a page")
            return b""


class LandingCore:
    """What every door shares: the options, the journey, the decision, the events.

    A door subclasses it and speaks its protocol around these steps
    (``BangiLanding`` for WSGI, ``BangiLandingASGI``, Django's
    ``BangiLandingMiddleware``); its keyword options are these. Each falls
    back to its ``BANGI_*`` environment variable, then to its default.

    :param tracker_url: the Bangi tracker's base URL. Default: ``BANGI_TRACKER_URL``;
        neither: no Bangi tracker (AlterCPA Pro alone, say).
    :param campaign_id: the tracker campaign of this landing. Default: ``BANGI_CAMPAIGN_ID``.
    :param altercpa_url: AlterCPA Pro's base URL, ``https://{domain}``.
        Default: ``BANGI_ALTERCPA_URL``; neither: no Pro.
    :param altercpa_token: the External sites token. Default: ``BANGI_ALTERCPA_TOKEN``.
    :param altercpa_click_param: the landing URL parameter carrying Pro's click id.
        Default: ``BANGI_ALTERCPA_CLICK_PARAM``, else ``click``.
    :param postback_templates: GET postback URL templates per event kind, for
        networks that take macros (see :class:`~bangi_landing.destinations.PostbackTemplates`).
    :param destinations: more destinations, of any kind (see ``bangi_landing.destinations``).
    :param order_url: a CPA network's order API: each lead's order, the submitted
        fields unfiltered, is forwarded there durably (a
        :class:`~bangi_landing.destinations.NetworkOrders` made of the ``order_*``
        options). Default: ``BANGI_ORDER_URL``; neither: no orders forwarded.
    :param order_method: ``"POST"`` (the default) or ``"GET"``. ``BANGI_ORDER_METHOD``.
    :param order_body: ``"form"`` (the default) or ``"json"``. ``BANGI_ORDER_BODY``.
    :param order_fields: what the network gets, names mapped to constants or macro
        text (``{"offer_id": 42, "name": "{name}", "phone": "{phone}"}``;
        ``BANGI_ORDER_FIELDS="offer_id:42, name:{name}, phone:{phone}"`` or a JSON object).
    :param order_headers: request headers, values may hold ``{env:NAME}``
        (``BANGI_ORDER_HEADERS="X-Token:{env:NETWORK_TOKEN}"``).
    :param order_success: a JSON field of the answer and the value that means
        success, for networks that answer 200 with an error (``("status", "ok")``;
        ``BANGI_ORDER_SUCCESS="status:ok"``). Default: any 2xx is success.
    :param order_id_field: the answer's JSON field with the network's order id,
        logged with the clickId. ``BANGI_ORDER_ID_FIELD``.
    :param order_keep_dead: seconds a dead order is kept before its row, personal
        data and all, is deleted. ``BANGI_ORDER_KEEP_DEAD``, else 7 days.
    :param relay_path: where the postback relay listens (GET or POST). Default:
        ``BANGI_RELAY_PATH``; neither: no relay.
    :param relay_secret: the ``secret`` parameter every relayed postback must carry.
        Default: ``BANGI_RELAY_SECRET``; required with a relay path.
    :param relay_statuses: the network's status values mapped to ours
        (``{"approved": "accept"}``); ours and Pro's names are always understood.
    :param secret_key: signs the journey cookie, at least 16 characters, and
        derives the key that seals orders' personal data in the outbox (see
        ``sealed.py``). Default: ``BANGI_SECRET_KEY``.
    :param submit_paths: paths whose POST is the order form's submit (a lead).
        ``None`` (the default): a POST is a lead wherever it goes when its form
        or JSON body carries ``field_name`` with a valid clickId, as every form
        the middleware gave the field does. Listing paths makes exactly those
        the submits, with or without the field (a JSON call from the page's own
        script, say); a POST carrying the field elsewhere is then no lead, and
        a warning, once per path, names this setting.
    :param field_name: the hidden form field carrying the clickId.
    :param url_param: the URL parameter carrying the clickId between domains.
    :param lead_fields: the form fields sent with a lead. ``None`` sends every
        field except the clickId field, CSRF tokens, passwords and personal data
        (name, phone, email, address and the like); listing fields sends exactly those.
    :param max_submit_size: larger submit bodies are not read: they reach the app
        untouched and the lead is reported without form fields.
    :param cookie_name: the journey cookie's name.
    :param cookie_max_age: how long a journey lasts, in seconds.
    :param cookie_domain: set it (``.example.com``) to share journeys across subdomains.
    :param link_hosts: links to these hosts get ``clickId=`` appended, for funnels
        that cross to domains the cookie does not reach.
    :param bot_agents: User-Agent substrings (any case) of crawlers and link-preview
        fetchers: their requests pass through untouched, no click, no cookie
        (unless they carry a journey cookie: they continue that journey).
    :param ignore_prefetch: prefetch requests (``Sec-Purpose: prefetch`` and the
        like) pass through untouched too, with the same exception.
    :param variants: a split test: variant name -> weight (``{"a": 50, "b": 50}``;
        ``BANGI_VARIANTS="a:50,b:50"``). A new journey gets a variant drawn by
        weight at its first page view and keeps it for its life (in the journey
        cookie), so changing the weights moves only new journeys; a journey whose
        variant was removed from the test gets a new draw. The app reads it at
        ``environ["bangi.variant"]``; the click and the lead carry it as
        ``lander_param``. Crawlers and prefetches see the first variant (or the
        URL's). Names are 1 to 32 of ``A-Z a-z 0-9 _ -``, weights positive
        numbers: anything else fails at start-up. Default: no split test.
    :param variant_param: the URL parameter naming the variant a new journey
        gets (``?variant=b``, for previews and traffic sources that split
        themselves); an unknown name is ignored, and a journey under way keeps
        its own variant, so its click and lead always agree.
    :param lander_param: the click's and the lead's parameter carrying the variant.
    :param outbox: the SQLite file where events wait until the tracker has them,
        shared by the landing's worker processes, or a ``postgresql://`` URL:
        a PostgreSQL database shared by every host (``postgres.PostgresStore``,
        needs ``pip install 'bangi-landing[postgresql]'``). Default: ``BANGI_OUTBOX``, else
        ``~/.local/state/bangi-landing/outbox-<hash>.sqlite3``, a file of this
        landing's own (the hash of its destinations and campaign, see
        ``config.outbox_path``). ``None`` keeps events in memory only (one
        attempt each, lost when the process ends).
    :param durable_clicks: write each click to the outbox before its page is
        returned, as leads always are, instead of within 100 ms after.
    :param sender: what delivers events; by default a background sender posting
        to the destinations through ``outbox``. Its ``start()``, if it has one, is
        called on each request.
    """

    def __init__(
        self,
        *,
        tracker_url: str | None = None,  # BANGI_TRACKER_URL
        campaign_id: int | str | None = None,  # BANGI_CAMPAIGN_ID
        secret_key: str | None = None,  # BANGI_SECRET_KEY
        altercpa_url: str | None = None,  # BANGI_ALTERCPA_URL
        altercpa_token: str | None = None,  # BANGI_ALTERCPA_TOKEN
        altercpa_click_param: str | None = None,  # BANGI_ALTERCPA_CLICK_PARAM, else "click"
        postback_templates: Mapping[str, str] | None = None,  # {"lead": "https://..."}
        destinations: Iterable[Destination] = (),
        order_url: str | None = None,  # BANGI_ORDER_URL; None: no orders forwarded
        order_method: str | None = None,  # BANGI_ORDER_METHOD, else "POST"
        order_body: str | None = None,  # BANGI_ORDER_BODY, else "form"
        order_fields: Mapping[str, Any] | None = None,  # BANGI_ORDER_FIELDS
        order_headers: Mapping[str, str] | None = None,  # BANGI_ORDER_HEADERS
        order_success: Sequence[Any] | None = None,  # BANGI_ORDER_SUCCESS; None: any 2xx
        order_id_field: str | None = None,  # BANGI_ORDER_ID_FIELD
        order_keep_dead: float | None = None,  # BANGI_ORDER_KEEP_DEAD, else 7 days
        relay_path: str | None = None,  # BANGI_RELAY_PATH; None: no relay
        relay_secret: str | None = None,  # BANGI_RELAY_SECRET
        relay_statuses: Mapping[str, str] | None = None,  # {"approved": "accept"}
        submit_paths: Iterable[str] | None = None,  # BANGI_SUBMIT_PATHS; None: found by the field
        field_name: str | None = None,  # BANGI_FIELD_NAME, else "sub1"
        url_param: str | None = None,  # BANGI_URL_PARAM, else "clickId"
        lead_fields: Iterable[str] | None = None,  # BANGI_LEAD_FIELDS; None: all but private ones
        max_submit_size: int | None = None,  # BANGI_MAX_SUBMIT_SIZE, else 64 KiB
        cookie_name: str | None = None,  # BANGI_COOKIE_NAME, else "bangi_journey"
        cookie_max_age: int | None = None,  # BANGI_COOKIE_MAX_AGE, else 30 days
        cookie_domain: str | None = None,  # BANGI_COOKIE_DOMAIN
        link_hosts: Iterable[str] | None = None,  # BANGI_LINK_HOSTS
        bot_agents: Iterable[str] | None = None,  # BANGI_BOT_AGENTS, else BOT_AGENTS; () for none
        ignore_prefetch: bool | None = None,  # BANGI_IGNORE_PREFETCH, else True
        outbox: str | os.PathLike[str] | None = DEFAULT_OUTBOX,  # $BANGI_OUTBOX or ~/.local/state
        durable_clicks: bool | None = None,  # BANGI_DURABLE_CLICKS, else False
        variants: Mapping[str, float] | None = None,  # BANGI_VARIANTS; None: no split test
        variant_param: str | None = None,  # BANGI_VARIANT_PARAM, else "variant"
        lander_param: str | None = None,  # BANGI_LANDER_PARAM, else "lander"
        sender: Sender | None = None,  # None: background delivery to tracker_url
    ) -> None:
        # Each option falls back to its BANGI_* environment variable, then its default.
        submit_paths = config.option("submit_paths", submit_paths)
        field_name = config.option("field_name", field_name)
        url_param = config.option("url_param", url_param)
        lead_fields = config.option("lead_fields", lead_fields)
        max_submit_size = config.option("max_submit_size", max_submit_size)
        cookie_name = config.option("cookie_name", cookie_name)
        cookie_max_age = config.option("cookie_max_age", cookie_max_age)
        cookie_domain = config.option("cookie_domain", cookie_domain)
        link_hosts = config.option("link_hosts", link_hosts)
        bot_agents = config.option("bot_agents", bot_agents)
        ignore_prefetch = config.option("ignore_prefetch", ignore_prefetch)
        durable_clicks = config.option("durable_clicks", durable_clicks)
        self.variants: Variants | None = config.variants(config.option("variants", variants))
        self.variant_param: str = config.option("variant_param", variant_param)
        self.lander_param: str = config.option("lander_param", lander_param)
        orders = config.network_orders(
            url=order_url,
            method=order_method,
            body=order_body,
            fields=order_fields,
            headers=order_headers,
            success=order_success,
            order_id=order_id_field,
            keep_dead=order_keep_dead,
        )
        self.destinations = config.destinations(
            tracker_url=tracker_url,
            altercpa_url=altercpa_url,
            altercpa_token=altercpa_token,
            altercpa_click_param=altercpa_click_param,
            postback_templates=postback_templates,
            more=[*destinations, *([orders] if orders else [])],
            required=sender is None,
        )
        tracked = any(isinstance(d, BangiTracker) for d in self.destinations)
        self.campaign_id = config.campaign_id(campaign_id, required=tracked)
        secret = config.secret_key(secret_key)
        # Orders carry the customer's fields: sealed when made, opened by their destination.
        self._sealer: Sealer | None = None
        for destination in self.destinations:
            if ORDER in destination.kinds:
                self._sealer = self._sealer or Sealer(secret)
                use_sealer = getattr(destination, "use_sealer", None)
                if use_sealer is not None:
                    use_sealer(self._sealer)
        self.cookie = JourneyCookie(
            secret,
            name=cookie_name,
            max_age=cookie_max_age,
            domain=cookie_domain,
        )
        # None: a POST is the lead wherever it goes, when it carries the field with a clickId.
        self.submit_paths = None if submit_paths is None else frozenset(submit_paths)
        self._warned_paths: set[str] = set()  # posts carrying the field outside submit_paths
        self.field_name: str = field_name
        self.url_param: str = url_param
        self.lead_fields = None if lead_fields is None else tuple(lead_fields)
        self.max_submit_size = max_submit_size
        self.link_hosts = tuple(link_hosts)
        self.pages = PageCache(field_name=field_name, link_hosts=self.link_hosts)
        self.responses = ResponseShapes()
        self._durable_kinds = frozenset(
            (*EVENT_KINDS, ORDER) if durable_clicks else ("lead", "postback", ORDER)
        )
        self.visitors = VisitorFilter(bot_agents, prefetch=ignore_prefetch)
        # URL parameters kept for the journey, in its cookie, for the destinations that need them
        # (the variant is the journey's own, never the URL's).
        self.journey_params = tuple(
            dict.fromkeys(
                name
                for d in self.destinations
                for name in d.journey_params
                if name != JOURNEY_VARIANT
            )
        )
        self.sender: Sender = sender or BackgroundSender(
            self.destinations,
            outbox=config.outbox(
                outbox,
                journey_lifetime=cookie_max_age,
                destinations=self.destinations,
                campaign_id=self.campaign_id,
            ),
        )
        # A sender with start() (the background one) is started by the first request.
        self._start_sender = getattr(self.sender, "start", None)
        self.relay_path, secret = config.relay(relay_path, relay_secret)
        self.relay = (
            StatusRelay(
                secret,
                self.report_status,
                mapper=StatusMapper.from_json({"parameter": "status", "values": relay_statuses})
                if relay_statuses
                else None,
            )
            if self.relay_path
            else None
        )

    def start(self) -> None:
        """Start delivery, if it is not running (in this process: a fork needs its own)."""
        if self._start_sender is not None:
            self._start_sender()

    def journey(self, meta: Meta, read_fields: ReadFields) -> Journey | None:
        """The request's journey; a submit's fields come from ``read_fields(meta)``.

        The clickId is put in ``meta`` at :data:`ENVIRON_KEY`, for the app, and
        with a split test the variant at :data:`VARIANT_KEY` (for crawlers and
        prefetches too: the URL's, else the first).

        None for crawlers, link previews and prefetches, which start no journey
        and take over none (their requests pass through untouched), unless the
        journey cookie shows the request continues a visitor's journey.
        """
        saved = self.cookie.load(meta)
        is_submit, fields = False, None
        if meta.get("REQUEST_METHOD") == "POST":
            is_submit, fields = self._submit(meta, read_fields)
        query = meta.get("QUERY_STRING", "")
        source: _Source
        signed = None
        # Most pages carry no clickId: looking costs a substring test, not a call.
        if (self.url_param in query or "%" in query) and (click_id := self._url_click_id(query)):
            source = "url"
        elif fields and (click_id := parse_click_id(fields.get(self.field_name))):
            source = "form"
        elif saved:
            click_id, source = saved.click_id, "cookie"
        else:
            click_id, source = None, "new"
        if source != "cookie" and self.visitors.ignores(meta):
            if self.variants is not None:
                meta[VARIANT_KEY] = self._url_variant(query) or self.variants.first
            return None
        kept = saved if saved and saved.click_id == click_id else None  # this journey's
        variant = None
        if self.variants is not None:
            variant = self._variant(query, kept)
            meta[VARIANT_KEY] = variant
        if click_id is None:
            click_id, signed = self.cookie.new_journey(variant)
        params: JourneyParams = kept.params if kept else ()
        if self.journey_params and len(params) < len(self.journey_params) and query:
            params = self._kept_params(query, params)
        save = kept is None or kept.params != params or kept.variant != variant
        meta[ENVIRON_KEY] = click_id
        signed = None if params else signed  # signed for the clickId (and variant) alone
        return Journey(click_id, source, params, save, is_submit, fields, signed, variant)

    def _variant(self, query: str, kept: SavedJourney | None) -> str:
        """A journey's variant: the one it has, else the URL's, else one drawn by weight."""
        assert self.variants is not None
        return (
            self.variants.known(kept.variant if kept else None)
            or self._url_variant(query)
            or self.variants.draw()
        )

    def _url_variant(self, query: str) -> str | None:
        """The known variant the URL names, if any."""
        if self.variants is None or self.variant_param not in query:
            return None
        value = next((v for k, v in parse_qsl(query) if k == self.variant_param), None)
        return self.variants.known(value)

    def _submit(self, meta: Meta, read_fields: ReadFields) -> tuple[bool, dict[str, Any] | None]:
        """Whether a POST is a lead's submit, and its fields (form or JSON bodies only)."""
        path = meta.get("PATH_INFO", "")
        at_submit_path = self.submit_paths is not None and path in self.submit_paths
        fields = read_fields(meta) if self.wants_fields(meta) else None
        if at_submit_path or not fields:
            return at_submit_path, fields
        if parse_click_id(fields.get(self.field_name)) is None:
            return False, fields
        if self.submit_paths is None:
            return True, fields
        if path not in self._warned_paths:
            self._warned_paths.add(path)
            logger.warning(
                "bangi-landing: a POST to %s carries the %s field but is no lead: %s is not in"
                " submit_paths (BANGI_SUBMIT_PATHS); add it there, or leave submit_paths unset"
                " to take every POST that carries the field",
                path[:200],
                self.field_name,
                path[:200],
            )
        return False, fields

    def wants_fields(self, meta: Meta) -> bool:
        """Whether a POST's body is read for its fields (a door that must read it first asks)."""
        if self.submit_paths is not None and meta.get("PATH_INFO", "") in self.submit_paths:
            return True
        return is_form_or_json(meta.get("CONTENT_TYPE", ""))

    def _kept_params(self, query: str, params: JourneyParams) -> JourneyParams:
        """``params`` plus the kept URL parameters it lacks, from ``query`` (first value wins)."""
        wanted = [name for name in self.journey_params if name in query]
        if not wanted:
            return params
        have = dict(params)
        for name, value in parse_qsl(query):
            if name in wanted and name not in have and 0 < len(value) <= MAX_PARAM_LENGTH:
                have[name] = value
        return tuple(have.items())

    def _url_click_id(self, query: str) -> str | None:
        """The valid clickId in the URL, if any."""
        value = next(
            (v for k, v in parse_qsl(query, keep_blank_values=True) if k == self.url_param), None
        )
        return parse_click_id(value)

    def over_submit_limit(self, size: int) -> bool:
        """Whether a submit body of ``size`` bytes is too large to read (logged)."""
        if size <= self.max_submit_size:
            return False
        logger.info(
            "bangi-landing: submit body of %d bytes not read (limit %d)", size, self.max_submit_size
        )
        return True

    # The response side

    def _click(self, meta: Meta, journey: Journey) -> Event:
        path = meta.get("SCRIPT_NAME", "") + meta.get("PATH_INFO", "")
        lander = None if journey.variant is None else (self.lander_param, journey.variant)
        params = _ClickParams(meta.get("QUERY_STRING", ""), path, self.campaign_id, lander)
        event_id = click_event_id(journey.click_id)
        return Event("click", journey.click_id, params, event_id, journey=journey.values())

    def _lead(self, journey: Journey) -> Event:
        fields = journey.fields or {}
        if self.lead_fields is not None:
            params = {name: fields[name] for name in self.lead_fields if name in fields}
        else:
            params, withheld = privacy.withhold(fields)
            if withheld:  # names only: the tracker can say what it did not get
                params["withheldFields"] = withheld
        for ours in (self.field_name, "clickId", "eventId"):
            params.pop(ours, None)
        if journey.variant is not None:
            params[self.lander_param] = journey.variant
        # One lead per journey: a form submitted twice is the same lead everywhere.
        event_id = journey_event_id("lead", journey.click_id)
        return Event("lead", journey.click_id, params, event_id, journey=journey.values())

    def _order(self, meta: Meta, journey: Journey, sealer: Sealer) -> Event:
        """The journey's one order: the submit's fields, unfiltered, sealed.

        With them go the request's IP, User-Agent and referer, which networks
        ask for; the outbox never holds any of it in clear.
        """
        sealed = sealer.seal(
            {
                "fields": journey.fields or {},
                "ip": meta.get("REMOTE_ADDR"),
                "userAgent": meta.get("HTTP_USER_AGENT"),
                "referer": meta.get("HTTP_REFERER"),
            }
        )
        event_id = journey_event_id(ORDER, journey.click_id)
        params = {"sealed": sealed}
        return Event(ORDER, journey.click_id, params, event_id, journey=journey.values())

    def decide(self, meta: Meta, journey: Journey, code: int, found: Mapping[str, str]) -> Decision:
        """What a response of ``journey`` gets: its events, the cookie, the clickId in its forms.

        :param found: the response's ``content-type``, ``content-encoding`` and
            ``content-disposition`` headers (lowercase names).
        """
        page, rewritable = classify(code, found)
        return Decision(*self._decision(meta, journey, code, page, rewritable))

    def decide_shape(
        self, meta: Meta, journey: Journey, shape: ResponseShape
    ) -> tuple[tuple[Event, ...], bool, bool]:
        """:meth:`decide` for a response whose shape :attr:`responses` remembers.

        A plain tuple: this runs on every page, and a door unpacks it at once.
        """
        return self._decision(meta, journey, shape.code, shape.page, shape.rewritable)

    def _decision(
        self, meta: Meta, journey: Journey, code: int, page: bool, rewritable: bool
    ) -> tuple[tuple[Event, ...], bool, bool]:
        method = meta.get("REQUEST_METHOD", "GET")
        events: tuple[Event, ...] = ()
        if journey.is_submit and code < 400:
            events = (self._lead(journey),)
            if self._sealer is not None:
                events += (self._order(meta, journey, self._sealer),)
        elif journey.source == "new" and method == "GET" and 200 <= code < 300 and page:
            events = (self._click(meta, journey),)
        active = journey.source != "new" or bool(events)
        set_cookie = active and code < 400 and journey.save
        rewrite = active and rewritable and method != "HEAD"
        return events, set_cookie, rewrite

    def cookie_header(self, journey: Journey, *, secure: bool) -> str:
        """The ``Set-Cookie`` value that keeps ``journey``."""
        return self.cookie.header_with(self.cookie_value(journey), secure=secure)

    def cookie_value(self, journey: Journey) -> str:
        """The journey cookie's signed value that keeps ``journey``."""
        if journey.cookie:  # signed ahead, for a new journey
            return journey.cookie
        return self.cookie.value(journey.click_id, journey.params, journey.variant)

    def report(self, event: Event) -> None:
        """Hand ``event`` to the sender; never raises.

        A lead (and a click, with ``durable_clicks``) is in the outbox when this returns.
        """
        try:
            self.sender.submit(event, durable=event.kind in self._durable_kinds)
        except Exception:
            logger.exception("bangi-landing: could not queue a %s event", event.kind)

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for pending events to be delivered; True if they were."""
        flush = getattr(self.sender, "flush", None)
        return bool(flush(timeout)) if flush is not None else True

    def close(self, timeout: float = 2.0) -> None:
        """Deliver for at most ``timeout`` seconds, then stop delivery (if the sender can)."""
        close = getattr(self.sender, "close", None)
        if close is not None:
            close(timeout)

    def report_all(self, events: Iterable[Event]) -> None:
        """Hand one response's events to the sender; never raises.

        Its durable ones (a lead and its order) go to the outbox in one write,
        one sync to disk, when the sender can (``submit_all``).
        """
        durable = []
        for event in events:
            if event.kind in self._durable_kinds:
                durable.append(event)
            else:
                self.report(event)
        submit_all = getattr(self.sender, "submit_all", None)
        if submit_all is None or len(durable) < 2:
            for event in durable:
                self.report(event)
            return
        try:
            submit_all(durable, durable=True)
        except Exception:
            logger.exception("bangi-landing: could not queue %d events", len(durable))

    def is_durable(self, event: Event) -> bool:
        """Whether reporting ``event`` writes it to the outbox before returning."""
        return event.kind in self._durable_kinds

    def report_status(
        self,
        click_id: str,
        status: str,
        *,
        payout: float | str | None = None,
        extras: Mapping[str, Any] | None = None,
    ) -> Event:
        """Report that the lead of journey ``click_id`` has a new status (a CRM hook).

        ``status`` is ours (accept, expect, reject, trash) or AlterCPA Pro's
        (approve, hold, cancel, trash). Every destination gets it: the Bangi
        tracker as a postback, Pro as ``status.json``. The same status of the
        same journey reported twice is one event. The event is in the outbox
        when this returns. ``extras`` go to the tracker with the postback.

        :raises ValueError: ``click_id`` is not a UUID or ``status`` is unknown.
        """
        journey_id = parse_click_id(click_id)
        if journey_id is None:
            raise ValueError("click_id must be a UUID")
        known = as_any_status(status)
        if known is None:
            raise ValueError(f"unknown status {status!r}")
        params: dict[str, Any] = {**(extras or {}), "status": known}
        if payout is not None:
            params["payout"] = payout
        event_id = journey_event_id("postback", journey_id, known)
        event = Event("postback", journey_id, params, event_id)
        self.report(event)
        return event


class _ClickParams(Mapping[str, Any]):
    """A click's parameters: the landing URL's, ``landingPath``, ``campaignId`` and the
    variant under its ``lander`` name (ours win).

    The URL's parameters go through the personal-data filter as a lead's fields do.

    Parsed from the query string when first read, which is by the thread that
    writes the event to the outbox: off the page's path.
    """

    __slots__ = ("_campaign_id", "_lander", "_params", "_path", "_query")

    def __init__(
        self, query: str, path: str, campaign_id: int | None, lander: tuple[str, str] | None
    ) -> None:
        self._query, self._path, self._campaign_id = query, path, campaign_id
        self._lander = lander  # (parameter name, variant)
        self._params: dict[str, Any] | None = None

    def _parsed(self) -> dict[str, Any]:
        if self._params is not None:
            return self._params
        pairs = parse_qsl(self._query, keep_blank_values=True)
        params: dict[str, Any] = dict(pairs)
        if len(params) < len(pairs):  # a repeated parameter keeps all its values
            values: dict[str, list[str]] = {}
            for key, value in pairs:
                values.setdefault(key, []).append(value)
            params = {key: vs[0] if len(vs) == 1 else vs for key, vs in values.items()}
        params, withheld = privacy.withhold(params)  # an email in the URL stays here too
        if withheld:
            params["withheldFields"] = withheld
        params["landingPath"] = self._path
        if self._campaign_id is not None:
            params["campaignId"] = self._campaign_id
        if self._lander is not None:
            params[self._lander[0]] = self._lander[1]
        params.pop("clickId", None)
        params.pop("eventId", None)
        self._params = params
        return params

    def __getitem__(self, key: str) -> Any:
        return self._parsed()[key]

    def items(self) -> ItemsView[str, Any]:  # the parsed dict's own: no call per item
        return self._parsed().items()

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsed())

    def __len__(self) -> int:
        return len(self._parsed())

    def __repr__(self) -> str:
        return repr(self._parsed())
