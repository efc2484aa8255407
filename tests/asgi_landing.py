"""Starlette and FastAPI landings behind BangiLandingASGI, as ASGI servers load them.

``tests.asgi_landing:starlette_app`` and ``tests.asgi_landing:fastapi_app``:
the same pages; the tracker and the outbox come from the environment
(``BANGI_TRACKER_URL``, ``BANGI_OUTBOX``) like a deployed landing's. Every
page shows what the app saw (its clickId) so the tests can compare it with
what the tracker got.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from bangi_landing.asgi import BangiLandingASGI

PAGE = """<!doctype html><title>Ring</title>
<p id="seen">{click_id}</p>
<form id="order" action="/submit" method="post"><input name="name"><input name="phone"></form>
<form id="search" action="/search"><input name="q"></form>"""

OPTIONS = {
    "campaign_id": 1,
    "secret_key": "asgi-test-secret-key-0123",
    "relay_path": "/bangi/postback",
    "relay_secret": "asgi-relay-secret-0123456",
}


def _page(request: Request) -> str:
    return PAGE.format(click_id=getattr(request.state, "bangi_click_id", ""))


async def index(request: Request) -> Response:
    return HTMLResponse(_page(request))


async def stream(request: Request) -> Response:
    page = _page(request)

    async def pieces() -> AsyncIterator[str]:
        for i in range(0, len(page), 5):  # a form's start tag split across pieces
            yield page[i : i + 5]

    return StreamingResponse(pieces(), media_type="text/html")


async def api(request: Request) -> Response:
    return JSONResponse({"html": '<form action="/x"></form>'})


async def compressed(request: Request) -> Response:
    return Response(
        gzip.compress(_page(request).encode()),
        media_type="text/html",
        headers={"Content-Encoding": "gzip"},
    )


async def submit(request: Request) -> Response:
    """Echoes the body it received, and the clickId it was given."""
    body = await request.body()
    if b"reject" in body:
        return Response("invalid order", status_code=400)
    headers = {"X-Click-Id": request.scope.get("bangi.click_id", "")}
    return Response(body, media_type="text/plain", headers=headers)


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close()


ROUTES = [
    Route("/", index),
    Route("/stream", stream),
    Route("/api", api),
    Route("/gzip", compressed),
    Route("/submit", submit, methods=["POST"]),
    WebSocketRoute("/ws", echo),
]


starlette_app = Starlette(routes=ROUTES)
starlette_app.add_middleware(BangiLandingASGI, **OPTIONS)

fastapi_app = FastAPI()
fastapi_app.router.routes.extend(ROUTES)
fastapi_app.add_middleware(BangiLandingASGI, **OPTIONS)
