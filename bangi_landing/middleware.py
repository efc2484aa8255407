"""The WSGI middleware: one clickId per journey, the click, ``sub1`` in every form, the lead.

Per request:

1. **Restore the journey.** A valid UUID from the URL parameter ``clickId``,
   else from the ``sub1`` field of a submit, else from the signed cookie. None
   of them: a fresh uuid4, used only if this response starts a journey.
   Crawlers, link previews and prefetches start no journey and take over
   none: unless their cookie continues one, they pass through untouched.
2. **Run the app.** It can read the clickId at ``environ["bangi.click_id"]``;
   a submit's body is read first and handed over unchanged.
3. **Look at the response.** A new visitor's landing page view (GET, 2xx,
   HTML) reports the click and sets the cookie; a submit the app accepted
   (below 400) reports the lead. HTML pages of a journey get the hidden field
   in every form, streamed.

Reporting only queues the event; delivery happens in the background. Anything
that goes wrong in the middleware's own code is logged and the page is served
as the app made it (fail open).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol
from urllib.parse import parse_qsl

from werkzeug.formparser import parse_form_data
from werkzeug.http import parse_options_header

from . import config
from .click_id import (
    MAX_PARAM_LENGTH,
    JourneyCookie,
    JourneyParams,
    parse_click_id,
)
from .destinations import BangiTracker, Destination
from .events import EVENT_KINDS, Event, click_event_id, journey_event_id
from .outbox import DEFAULT_OUTBOX
from .page_cache import PageCache
from .relay import StatusRelay
from .responses import ResponseShapes, classify
from .rewrite import HtmlRewriter
from .sender import BackgroundSender
from .statuses import StatusMapper, as_any_status
from .visitors import BOT_AGENTS, VisitorFilter

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import InputStream, StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger("bangi_landing")

ENVIRON_KEY = "bangi.click_id"

# Field names that are never sent to the tracker unless the owner lists them:
# CSRF tokens, secrets and personal data. Matched per word of the name, so
# "first_name", "customerPhone" and "e-mail" are all caught.
_PRIVATE_WORDS = frozenset(
    {
        # who the customer is
        "name", "fio", "surname", "phone", "tel", "telephone", "mobile", "cell", "mail", "email",
        "address", "addr", "street", "city", "zip", "zipcode", "postcode", "postal", "ip",
        "birthday", "birthdate", "dob", "passport", "ssn",
        # money and secrets
        "card", "cc", "cvv", "cvc", "iban", "account", "password", "passwd", "pass", "pwd",
        "secret", "token", "csrf", "xsrf", "csrfmiddlewaretoken",
        # free text, which holds any of the above
        "comment", "message", "note", "notes",
    }
)  # fmt: skip
_PRIVATE_PARTS = ("name", "phone", "mail", "pass", "addr", "csrf", "xsrf", "token")
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def is_private_field(name: str) -> bool:
    """True for form fields that look like personal data, secrets or CSRF tokens."""
    for word in _WORDS.findall(name):
        word = word.lower()
        if word in _PRIVATE_WORDS or any(part in word for part in _PRIVATE_PARTS):
            return True
    return False


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


class BangiLanding:
    """Connect a WSGI landing page to the Bangi tracker.

    ::

        from bangi_landing import BangiLanding

        app.wsgi_app = BangiLanding(
            app.wsgi_app,
            tracker_url="https://dashboard.example.com",
            campaign_id=42,
            secret_key="a long random string",
        )

    :param app: the WSGI application to wrap (``None`` for a framework adapter,
        such as the Django middleware, that calls the request and response steps itself).
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
    :param relay_path: where the postback relay listens (GET or POST). Default:
        ``BANGI_RELAY_PATH``; neither: no relay.
    :param relay_secret: the ``secret`` parameter every relayed postback must carry.
        Default: ``BANGI_RELAY_SECRET``; required with a relay path.
    :param relay_statuses: the network's status values mapped to ours
        (``{"approved": "accept"}``); ours and Pro's names are always understood.
    :param secret_key: signs the journey cookie, at least 16 characters.
        Default: ``BANGI_SECRET_KEY``.
    :param submit_paths: paths whose POST is the order form's submit (a lead).
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
    :param outbox: the SQLite file where events wait until the tracker has them,
        shared by the landing's worker processes. Default: ``BANGI_OUTBOX``, else
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
        app: WSGIApplication | None,
        *,
        tracker_url: str | None = None,  # BANGI_TRACKER_URL
        campaign_id: int | str | None = None,  # BANGI_CAMPAIGN_ID
        secret_key: str | None = None,  # BANGI_SECRET_KEY
        altercpa_url: str | None = None,  # BANGI_ALTERCPA_URL
        altercpa_token: str | None = None,  # BANGI_ALTERCPA_TOKEN
        altercpa_click_param: str | None = None,  # BANGI_ALTERCPA_CLICK_PARAM, else "click"
        postback_templates: Mapping[str, str] | None = None,  # {"lead": "https://..."}
        destinations: Iterable[Destination] = (),
        relay_path: str | None = None,  # BANGI_RELAY_PATH; None: no relay
        relay_secret: str | None = None,  # BANGI_RELAY_SECRET
        relay_statuses: Mapping[str, str] | None = None,  # {"approved": "accept"}
        submit_paths: Iterable[str] = ("/submit",),
        field_name: str = "sub1",
        url_param: str = "clickId",
        lead_fields: Iterable[str] | None = None,  # None: all but private fields
        max_submit_size: int = 64 * 1024,
        cookie_name: str = "bangi_journey",
        cookie_max_age: int = 30 * 24 * 3600,  # 30 days
        cookie_domain: str | None = None,
        link_hosts: Iterable[str] = (),
        bot_agents: Iterable[str] = BOT_AGENTS,  # () counts every User-Agent as a visitor
        ignore_prefetch: bool = True,
        outbox: str | os.PathLike[str] | None = DEFAULT_OUTBOX,  # $BANGI_OUTBOX or ~/.local/state
        durable_clicks: bool = False,
        sender: Sender | None = None,  # None: background delivery to tracker_url
    ) -> None:
        self.app = app
        self.destinations = config.destinations(
            tracker_url=tracker_url,
            altercpa_url=altercpa_url,
            altercpa_token=altercpa_token,
            altercpa_click_param=altercpa_click_param,
            postback_templates=postback_templates,
            more=destinations,
            required=sender is None,
        )
        tracked = any(isinstance(d, BangiTracker) for d in self.destinations)
        self.campaign_id = config.campaign_id(campaign_id, required=tracked)
        self.cookie = JourneyCookie(
            config.secret_key(secret_key),
            name=cookie_name,
            max_age=cookie_max_age,
            domain=cookie_domain,
        )
        self.submit_paths = frozenset(submit_paths)
        self.field_name = field_name
        self.url_param = url_param
        self.lead_fields = None if lead_fields is None else tuple(lead_fields)
        self.max_submit_size = max_submit_size
        self.link_hosts = tuple(link_hosts)
        self.pages = PageCache(field_name=field_name, link_hosts=self.link_hosts)
        self.responses = ResponseShapes()
        self._durable_kinds = frozenset(EVENT_KINDS if durable_clicks else ("lead", "postback"))
        self.visitors = VisitorFilter(bot_agents, prefetch=ignore_prefetch)
        # URL parameters kept for the journey, in its cookie, for the destinations that need them.
        self.journey_params = tuple(
            dict.fromkeys(name for d in self.destinations for name in d.journey_params)
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

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        assert self.app is not None, "no app to wrap: a framework adapter calls the steps itself"
        if self._start_sender is not None:
            self._start_sender()
        if self.relay is not None and environ.get("PATH_INFO") == self.relay_path:
            return self.relay(environ, start_response)
        try:
            journey = self._restore(environ)
        except Exception:
            logger.exception("bangi-landing: could not read the request; passing it through")
            journey = None
        if journey is None:
            return self.app(environ, start_response)
        response = _Response(self, environ, journey, start_response)
        app_iter = self.app(environ, response.start_response)
        if response.started:
            # The app has returned, so its response is final: report now, before
            # the server sends anything. A generator app starts when iterated.
            response.report_events()
            if not response.rewriting:
                return app_iter  # nothing to rewrite: the app's iterable as is (file_wrapper too)
            if response.rewriter is None and response.length >= 0:
                # A page of known length usually comes in one piece: then it is
                # read here and rewritten at once, and the server gets a list.
                whole, app_iter = _whole_body(app_iter, response.length)
                if whole is not None:
                    return [response.rewrite_whole(whole)]
        return _RewrittenBody(app_iter, response)

    # The request side

    def _restore(
        self,
        environ: WSGIEnvironment,
        read_fields: Callable[[], dict[str, Any] | None] | None = None,
    ) -> Journey | None:
        """The request's journey; a submit's fields come from ``read_fields`` or the body.

        None for crawlers, link previews and prefetches, which start no journey
        and take over none (their requests pass through untouched), unless the
        journey cookie shows the request continues a visitor's journey.
        """
        saved = self.cookie.load(environ)
        is_submit = (
            environ.get("REQUEST_METHOD") == "POST"
            and environ.get("PATH_INFO", "") in self.submit_paths
        )
        fields = None
        if is_submit:
            fields = self._read_submit(environ) if read_fields is None else read_fields()
        query = environ.get("QUERY_STRING", "")
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
        if source != "cookie" and self.visitors.ignores(environ):
            return None
        if click_id is None:
            click_id, signed = self.cookie.new_journey()
        params: JourneyParams = saved.params if saved and saved.click_id == click_id else ()
        if self.journey_params and len(params) < len(self.journey_params) and query:
            params = self._kept_params(query, params)
        save = saved is None or saved.click_id != click_id or saved.params != params
        environ[ENVIRON_KEY] = click_id
        signed = None if params else signed  # signed for the clickId alone
        return Journey(click_id, source, params, save, is_submit, fields, signed)

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

    def _read_submit(self, environ: WSGIEnvironment) -> dict[str, Any] | None:
        """Read and parse a submit's body, leaving an identical body for the app."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        stream = environ["wsgi.input"]
        if self._over_submit_limit(length):
            return None
        if length >= 0:
            body = stream.read(length)
        elif environ.get("wsgi.input_terminated"):
            body = stream.read(self.max_submit_size + 1)
            if len(body) > self.max_submit_size:
                environ["wsgi.input"] = _ReplayStream(body, stream)
                logger.info(
                    "bangi-landing: submit body over %d bytes not read", self.max_submit_size
                )
                return None
        else:
            body = b""  # PEP 3333: no Content-Length, no body
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return _parse_fields(environ, body)

    def _over_submit_limit(self, size: int) -> bool:
        """Whether a submit body of ``size`` bytes is too large to read (logged)."""
        if size <= self.max_submit_size:
            return False
        logger.info(
            "bangi-landing: submit body of %d bytes not read (limit %d)", size, self.max_submit_size
        )
        return True

    # The response side

    def _click(self, environ: WSGIEnvironment, journey: Journey) -> Event:
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        params = _ClickParams(environ.get("QUERY_STRING", ""), path, self.campaign_id)
        event_id = click_event_id(journey.click_id)
        return Event("click", journey.click_id, params, event_id, journey=dict(journey.params))

    def _lead(self, journey: Journey) -> Event:
        fields = journey.fields or {}
        if self.lead_fields is not None:
            params = {name: fields[name] for name in self.lead_fields if name in fields}
        else:
            params = {name: value for name, value in fields.items() if not is_private_field(name)}
        for ours in (self.field_name, "clickId", "eventId"):
            params.pop(ours, None)
        # One lead per journey: a form submitted twice is the same lead everywhere.
        event_id = journey_event_id("lead", journey.click_id)
        return Event("lead", journey.click_id, params, event_id, journey=dict(journey.params))

    def decide(
        self, environ: WSGIEnvironment, journey: Journey, code: int, found: Mapping[str, str]
    ) -> Decision:
        """What a response of ``journey`` gets: its events, the cookie, the clickId in its forms.

        :param found: the response's ``content-type``, ``content-encoding`` and
            ``content-disposition`` headers (lowercase names).
        """
        return Decision(*self._decision(environ, journey, code, *classify(code, found)))

    def _decision(
        self, environ: WSGIEnvironment, journey: Journey, code: int, page: bool, rewritable: bool
    ) -> tuple[tuple[Event, ...], bool, bool]:
        """:meth:`decide`'s answer as a plain tuple, for the middleware's own use on every page."""
        method = environ.get("REQUEST_METHOD", "GET")
        events: tuple[Event, ...] = ()
        if journey.is_submit and code < 400:
            events = (self._lead(journey),)
        elif journey.source == "new" and method == "GET" and 200 <= code < 300 and page:
            events = (self._click(environ, journey),)
        active = journey.source != "new" or bool(events)
        set_cookie = active and code < 400 and journey.save
        rewrite = active and rewritable and method != "HEAD"
        return events, set_cookie, rewrite

    def report(self, event: Event) -> None:
        """Hand ``event`` to the sender; never raises.

        A lead (and a click, with ``durable_clicks``) is in the outbox when this returns.
        """
        try:
            self.sender.submit(event, durable=event.kind in self._durable_kinds)
        except Exception:
            logger.exception("bangi-landing: could not queue a %s event", event.kind)

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


class _Response:
    """One response's decisions, made when the app calls ``start_response``."""

    __slots__ = (
        "environ",
        "events",
        "journey",
        "length",
        "middleware",
        "rewriter",
        "rewriting",
        "server_start_response",
        "started",
    )

    def __init__(
        self,
        middleware: BangiLanding,
        environ: WSGIEnvironment,
        journey: Journey,
        server_start_response: StartResponse,
    ) -> None:
        self.middleware = middleware
        self.environ = environ
        self.journey = journey
        self.server_start_response = server_start_response
        self.started = False
        self.rewriting = False  # the body gets the clickId
        self.length = -1  # the app's Content-Length: a first chunk this long is the whole body
        self.rewriter: StreamRewriter | None = None  # made when the body comes in pieces
        self.events: tuple[Event, ...] = ()  # reported once the response is final

    def report_events(self) -> None:
        events, self.events = self.events, ()
        for event in events:
            self.middleware.report(event)

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> Any:
        self.started = True
        if exc_info is None:
            try:
                headers = self._decide(status, headers)
            except Exception:
                logger.exception("bangi-landing: could not process a response; serving it as is")
                self.rewriting = False
        else:
            # An error page replaces the response: no click or lead, no rewriting.
            self.rewriting = False
            self.events = ()
        write = self.server_start_response(status, headers, exc_info)
        if not self.rewriting:
            return write

        def rewriting_write(data: bytes) -> None:
            write(self.feed(data))

        return rewriting_write

    def rewrite_whole(self, body: bytes) -> bytes:
        """The whole body at once: rewritten from the page cache."""
        self.rewriting = False  # anything after it breaks the app's own Content-Length
        try:
            return self.middleware.pages.rewrite(body, self.journey.click_id)
        except Exception:
            logger.exception("bangi-landing: rewriting failed; serving the page as is")
            return body

    def feed(self, data: bytes) -> bytes:
        """One piece of a streamed body, rewritten as far as it can be yet."""
        if self.rewriter is None:
            self.rewriter = StreamRewriter(self.middleware.pages, self.journey.click_id)
        return self.rewriter.feed(data)

    def finish(self) -> bytes:
        """The end of a streamed body: whatever the rewriter still holds."""
        self.rewriting = False
        return self.rewriter.finish() if self.rewriter is not None else b""

    def _decide(self, status: str, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        middleware, journey, environ = self.middleware, self.journey, self.environ
        shape = middleware.responses.get(status, headers)
        self.events, set_cookie, rewrite = middleware._decision(
            environ, journey, shape.code, shape.page, shape.rewritable
        )
        if rewrite:
            self.rewriting = True
            self.length = shape.length
            changed = [*shape.rewritten]
        elif set_cookie:
            changed = [*shape.kept]
        else:
            return headers
        if set_cookie:
            secure = environ.get("wsgi.url_scheme") == "https"
            cookie = (
                middleware.cookie.header_with(journey.cookie, secure=secure)
                if journey.cookie
                else middleware.cookie.header(journey.click_id, journey.params, secure=secure)
            )
            changed.append(("Set-Cookie", cookie))
        return changed


def _whole_body(app_iter: Iterable[bytes], length: int) -> tuple[bytes | None, Iterable[bytes]]:
    """The body, if its first chunk is all ``length`` (its Content-Length) bytes of it.

    Then the app's iterable is closed without asking for more: PEP 3333 tells
    a server to stop iterating once Content-Length bytes have come, and a
    chunk past them could never be sent. Otherwise None, and an iterable of
    the same chunks (the first, already read, then the rest) that closes the
    app's. Either way the app's iterable is closed once.
    """
    if isinstance(app_iter, (list, tuple)) and not hasattr(app_iter, "close"):
        whole = len(app_iter) > 0 and len(app_iter[0]) == length
        return (app_iter[0] if whole else None), app_iter
    chunks = iter(app_iter)
    try:
        first = next(chunks, None)
    except BaseException:
        _close(app_iter)
        raise
    if first is None or len(first) != length:
        return None, _Chunks([] if first is None else [first], chunks, app_iter)
    _close(app_iter)
    return first, ()


class _Chunks:
    """Chunks already read, then the rest of the app's iterable, which it closes."""

    __slots__ = ("_app_iter", "_read", "_rest")

    def __init__(self, read: list[bytes], rest: Iterator[bytes], app_iter: Iterable[bytes]) -> None:
        self._read, self._rest, self._app_iter = read, rest, app_iter

    def __iter__(self) -> Iterator[bytes]:
        yield from self._read
        yield from self._rest

    def close(self) -> None:
        _close(self._app_iter)


def _close(app_iter: Iterable[bytes]) -> None:
    close = getattr(app_iter, "close", None)
    if close is not None:
        close()


class _RewrittenBody:
    """The app's body with each chunk passed through the response's rewriting, streamed.

    Whether to rewrite is looked up per chunk: a generator app calls
    ``start_response`` only when first iterated.
    """

    def __init__(self, app_iter: Iterable[bytes], response: _Response) -> None:
        self._app_iter = app_iter
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        response = self._response
        for chunk in self._app_iter:
            response.report_events()  # the body has begun: the response is final
            if not response.rewriting:
                yield chunk
            elif response.rewriter is None and len(chunk) == response.length:
                yield response.rewrite_whole(chunk)
                break  # all Content-Length bytes: stop, as a server would (PEP 3333)
            else:
                # PEP 3333: yield (even b"") for every chunk, never wait for more.
                yield response.feed(chunk)
        response.report_events()  # an empty body
        if response.rewriting:
            tail = response.finish()
            if tail:
                yield tail

    def close(self) -> None:
        _close(self._app_iter)


class _ClickParams(Mapping[str, Any]):
    """A click's parameters: the landing URL's, ``landingPath`` and ``campaignId`` (ours win).

    Parsed from the query string when first read, which is by the thread that
    writes the event to the outbox: off the page's path.
    """

    __slots__ = ("_campaign_id", "_params", "_path", "_query")

    def __init__(self, query: str, path: str, campaign_id: int | None) -> None:
        self._query, self._path, self._campaign_id = query, path, campaign_id
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
        params["landingPath"] = self._path
        if self._campaign_id is not None:
            params["campaignId"] = self._campaign_id
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


class _ReplayStream:
    """An input stream that returns ``head`` and then the rest of ``stream``."""

    def __init__(self, head: bytes, stream: InputStream) -> None:
        self._head = io.BytesIO(head)
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        data = self._head.read(size)
        if size < 0:
            return data + self._stream.read()
        if len(data) < size:
            data += self._stream.read(size - len(data))
        return data

    def readline(self, size: int = -1) -> bytes:
        line = self._head.readline(size)
        if line.endswith(b"\n") or (size >= 0 and len(line) >= size):
            return line
        return line + self._stream.readline(-1 if size < 0 else size - len(line))

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


def _parse_fields(environ: WSGIEnvironment, body: bytes) -> dict[str, Any] | None:
    """The submitted fields: form values as strings (lists when repeated), or a JSON object."""
    mimetype, _ = parse_options_header(environ.get("CONTENT_TYPE", ""))
    if mimetype == "application/json" or mimetype.endswith("+json"):
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return None
        return data if isinstance(data, dict) else None
    if mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        # The parser gets its own copy of the body; the app keeps the one in environ.
        parse_environ = {**environ, "wsgi.input": io.BytesIO(body)}
        _, form, files = parse_form_data(parse_environ, silent=True)
        for upload in files.values():
            upload.close()  # uploads are the app's business, not the tracker's
        return {key: values[0] if len(values) == 1 else values for key, values in form.lists()}
    return None
