"""The Django door: ``BangiLandingMiddleware``, a native middleware over the core.

::

    INSTALLED_APPS = [..., "bangi_landing"]  # the template tags and the MIDDLEWARE check
    MIDDLEWARE = [
        "django.middleware.gzip.GZipMiddleware",  # above ours, if used
        "django.middleware.http.ConditionalGetMiddleware",  # above ours, if used
        ...,
        "bangi_landing.django.BangiLandingMiddleware",
        ...,
    ]
    BANGI_TRACKER_URL = "https://dashboard.example.com"
    BANGI_CAMPAIGN_ID = 42

It does what wrapping ``application`` in ``wsgi.py`` does (the clickId, the
click, ``sub1`` in every form, the lead, the relay) from inside Django's
middleware chain, so middleware above it (GZip) works on the rewritten page,
and it runs sync or async, under WSGI or ASGI. Settings are the ``BANGI_*``
names of :data:`bangi_landing.config.SETTINGS`, each falling back to the
environment variable of the same name where there is one; ``BANGI_SECRET_KEY``
falls back to the environment, then to Django's ``SECRET_KEY`` (the journey
cookie is signed under its own salt, so sharing the key is safe).

A view reads the clickId at ``request.bangi_click_id`` (None for a crawler),
a split test's variant at ``request.bangi_variant`` (None without one),
and reports a lead's status from a CRM hook with
``request.bangi_landing.report_status(click_id, "accept")``; a template
renders the field with ``{% load bangi %}{% bangi_hidden_field %}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from functools import partial
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core import checks
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils.module_loading import import_string

from . import config
from .core import VARIANT_KEY, Decision, Journey, LandingCore, StreamRewriter, relay
from .core.landing import logger
from .core.responses import WATCHED, private, vary_on_cookie
from .core.submit import FORM_TYPES

__all__ = ["BangiLandingMiddleware", "check_middleware_order", "options_from_settings"]

# The next middleware or the view: a response, or (async) an awaitable of one.
GetResponse = Callable[[HttpRequest], Any]


def options_from_settings() -> dict[str, Any]:
    """The ``BangiLanding`` options given by Django's settings (unset ones left out)."""
    options = config.from_settings(lambda name: getattr(settings, name, None))
    if not options.get("secret_key") and not os.environ.get("BANGI_SECRET_KEY"):
        options["secret_key"] = getattr(settings, "SECRET_KEY", None) or None
    return options


class BangiLandingMiddleware(LandingCore):
    """The core's decisions, made on Django's request and response objects.

    Keyword ``options`` (for a subclass) win over settings.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse, **options: Any) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        super().__init__(**{**options_from_settings(), **options})

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.async_mode:
            return self.__acall__(request)
        self.start()
        if self._is_relay(request):
            return self._relay(request)
        journey = self._journey(request)
        response: HttpResponseBase = self.get_response(request)
        if journey is not None and (decision := self._decide(request, journey, response)):
            self.report_all(decision.events)
            response = self._finish(request, journey, response, decision)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        self.start()
        if self._is_relay(request):
            # A status is written to the outbox (and synced to disk) before the answer:
            # off the event loop.
            return await sync_to_async(self._relay, thread_sensitive=False)(request)
        journey = self._journey(request)
        response: HttpResponseBase = await self.get_response(request)
        if journey is not None and (decision := self._decide(request, journey, response)):
            if any(self.is_durable(event) for event in decision.events):
                await sync_to_async(self.report_all, thread_sensitive=False)(decision.events)
            else:
                self.report_all(decision.events)  # a click only goes on a queue
            response = self._finish(request, journey, response, decision)
        return response

    # The request side

    def _is_relay(self, request: HttpRequest) -> bool:
        return self.relay is not None and request.path_info == self.relay_path

    def _journey(self, request: HttpRequest) -> Journey | None:
        try:
            journey = self.journey(request.META, partial(self._read_fields, request))
        except Exception:
            logger.exception("bangi-landing: could not read the request; passing it through")
            journey = None
        request.bangi_click_id = None if journey is None else journey.click_id  # type: ignore[attr-defined]
        request.bangi_variant = request.META.get(VARIANT_KEY)  # type: ignore[attr-defined]
        request.bangi_landing = self  # type: ignore[attr-defined]  # for report_status()
        return journey

    def _read_fields(self, request: HttpRequest, meta: object) -> dict[str, Any] | None:
        """A submit's fields, read through Django so that its parsing (and CSRF) still work.

        Django keeps what it read: the view gets the same ``request.POST`` and ``request.body``.
        """
        if self.over_submit_limit(_content_length(request.META)):
            return None
        parsed_before = "_post" in vars(request)
        try:
            # The body first, even for multipart: parsing then reads Django's copy of it,
            # so a view that wants request.body can still have it.
            body = request.body
            if self.over_submit_limit(len(body)):  # no Content-Length (chunked, under ASGI)
                return None
            mimetype = request.content_type or ""
            if mimetype == "application/json" or mimetype.endswith("+json"):
                data = json.loads(body)
                return data if isinstance(data, dict) else None
            if mimetype in FORM_TYPES:
                return {
                    key: values[0] if len(values) == 1 else values
                    for key, values in request.POST.lists()
                }
        except Exception:
            # Fail open: the view meets the same error. Django remembers a failed multipart
            # parse as an empty form; forgotten, the view (or CSRF) parses again and gets
            # the error itself, as it would without us.
            if not parsed_before:
                vars(request).pop("_post", None)
                vars(request).pop("_files", None)
        return None

    def _relay(self, request: HttpRequest) -> HttpResponse:
        """The relay's answer to the request, as a Django response."""
        assert self.relay is not None
        body: bytes | None = b""
        if request.method == "POST":
            # Over the limit, the body is not read: the relay answers 413 from the length alone.
            over = _content_length(request.META) > relay.MAX_BODY
            body = None if over else request.body
            if body is not None and len(body) > relay.MAX_BODY:  # no Content-Length
                body = None
        answer = self.relay.answer(
            request.method or "GET",
            request.META.get("QUERY_STRING", "").encode("latin-1"),
            request.META.get("CONTENT_TYPE", ""),
            body,
        )
        response = HttpResponse(answer.body, status=answer.code, reason=answer.reason)
        for name, value in answer.headers:
            response.headers[name] = value
        return response

    # The response side

    def _decide(
        self, request: HttpRequest, journey: Journey, response: HttpResponseBase
    ) -> Decision | None:
        try:
            found = {name: response.headers[name] for name in WATCHED if name in response.headers}
            return self.decide(request.META, journey, response.status_code, found)
        except Exception:
            logger.exception("bangi-landing: could not process a response; serving it as is")
            return None

    def _finish(
        self,
        request: HttpRequest,
        journey: Journey,
        response: HttpResponseBase,
        decision: Decision,
    ) -> HttpResponseBase:
        """The response with the journey's cookie and its clickId in the forms."""
        set_cookie = decision.set_cookie
        rewrite = decision.rewrite and isinstance(response, HttpResponse | StreamingHttpResponse)
        if not (set_cookie or rewrite):
            return response
        content = rewriter = None
        if rewrite:
            try:
                if isinstance(response, HttpResponse):
                    content = self.pages.rewrite(response.content, journey.click_id)
                else:
                    rewriter = StreamRewriter(self.pages, journey.click_id)
            except Exception:
                # The page as the view made it; the journey still gets its cookie.
                logger.exception("bangi-landing: rewriting failed; serving the page as is")
                rewrite = False
        headers = response.headers
        try:
            # What can fail comes before the first change: a failure leaves the response
            # as the view made it.
            cookie = self.cookie_value(journey) if set_cookie else ""
            # One visitor's clickId must never reach another from a shared cache.
            cache_control = private(headers.get("Cache-Control", ""))
            vary = vary_on_cookie(headers.get("Vary", "")) if rewrite else ""
        except Exception:
            logger.exception("bangi-landing: could not process a response; serving it as is")
            return response
        headers["Cache-Control"] = cache_control
        if set_cookie:
            response.set_cookie(
                self.cookie.name,
                cookie,
                max_age=self.cookie.max_age,
                path=self.cookie.path,
                domain=self.cookie.domain,
                secure=request.is_secure(),
                httponly=True,
                samesite="Lax",
            )
        if not rewrite:
            return response
        headers["Vary"] = vary
        etag = headers.get("ETag", "")
        if etag and not etag.startswith("W/"):
            headers["ETag"] = "W/" + etag  # same meaning, different bytes
        if content is not None and isinstance(response, HttpResponse):
            response.content = content
            if "Content-Length" in headers:
                headers["Content-Length"] = str(len(content))
        elif rewriter is not None and isinstance(response, StreamingHttpResponse):
            response.streaming_content = (
                _rewritten_async(response.streaming_content, rewriter)  # type: ignore[arg-type]
                if response.is_async
                else _rewritten(response.streaming_content, rewriter)  # type: ignore[arg-type]
            )
            # Django's GZipMiddleware does the same: the length is not known until the end.
            del headers["Content-Length"]
        return response


def _content_length(meta: dict[str, Any]) -> int:
    try:
        return int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _rewritten(chunks: Iterable[bytes], rewriter: StreamRewriter) -> Iterator[bytes]:
    for chunk in chunks:
        if data := rewriter.feed(chunk):
            yield data
    if tail := rewriter.finish():
        yield tail


async def _rewritten_async(
    chunks: AsyncIterable[bytes], rewriter: StreamRewriter
) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        if data := rewriter.feed(chunk):
            yield data
    if tail := rewriter.finish():
        yield tail


# The system check (registered by bangi_landing.apps)

# Middleware that must sit above ours, so that it handles the response after us.
_ABOVE = (
    (
        "django.middleware.gzip.GZipMiddleware",
        "bangi_landing.W001",
        "it compresses pages before bangi-landing sees them, so their forms cannot get the clickId",
    ),
    (
        "django.middleware.http.ConditionalGetMiddleware",
        "bangi_landing.W002",
        "it computes ETags and answers 304 Not Modified from pages whose forms have no clickId"
        " yet, so a browser can keep a page whose forms carry an earlier journey's clickId",
    ),
)


def check_middleware_order(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Warn about middleware below ``BangiLandingMiddleware`` that must be above it."""
    paths = list(getattr(settings, "MIDDLEWARE", None) or ())
    ours = next((i for i, path in enumerate(paths) if _is(path, BangiLandingMiddleware)), None)
    if ours is None:
        return []  # the app alone (its template tags, with the WSGI class in wsgi.py) is fine
    found: list[checks.CheckMessage] = []
    for class_path, check_id, why in _ABOVE:
        cls = import_string(class_path)
        for path in paths[ours + 1 :]:
            if _is(path, cls):
                found.append(
                    checks.Warning(
                        f"{path} comes after {paths[ours]} in MIDDLEWARE: {why}.",
                        hint=f"Move {paths[ours]} below {path}.",
                        id=check_id,
                    )
                )
    return found


def _is(path: str, cls: type) -> bool:
    """Whether the middleware at ``path`` is ``cls`` or a subclass."""
    try:
        found = import_string(path)
    except ImportError:
        return False  # Django reports it when it loads the middleware
    return isinstance(found, type) and issubclass(found, cls)
