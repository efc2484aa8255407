"""The landing the fault tests run under gunicorn: tests/landing.py's app, wrapped.

Retries are fast (a tenth of a second, growing to half a second) so a test
sees a tracker come back within moments, and ``FAULT_LEASE`` shortens the
lease, so a host's rows are taken over within moments of its death; the rest
is the default setup. ``BANGI_OUTBOX`` is a SQLite file or a PostgreSQL URL.
With ``FAULT_ORDERS`` set, orders go to the same stand-in too, at ``/orders``, as to
a CPA network's order API.
"""

from __future__ import annotations

import os

from asgiref.wsgi import WsgiToAsgi

from bangi_landing import BangiLanding, BangiLandingASGI, config
from bangi_landing.destinations import BangiTracker, NetworkOrders
from bangi_landing.retry import RetryPolicy
from bangi_landing.sender import BackgroundSender

from .landing import landing_app

tracker = os.environ["BANGI_TRACKER_URL"]
fields = {"offer": "{offer}", "name": "{name}"}
orders = (
    [NetworkOrders(f"{tracker}/orders", body="json", fields=fields, timeout=(1.0, 2.0))]
    if os.environ.get("FAULT_ORDERS")
    else []
)
sender = BackgroundSender(
    [BangiTracker(tracker, timeout=(1.0, 2.0)), *orders],
    outbox=config.outbox(os.environ["BANGI_OUTBOX"]),
    retry=RetryPolicy(first=0.1, longest=0.5),
    lease=float(os.environ.get("FAULT_LEASE", "60")),
)
app = BangiLanding(
    landing_app,
    campaign_id=1,
    secret_key="fault-test-secret-key",
    destinations=orders,
    sender=sender,
)
# The same landing as an ASGI app, for uvicorn: the WSGI app in a thread, our ASGI door around it.
asgi_app = BangiLandingASGI(
    WsgiToAsgi(landing_app),
    campaign_id=1,
    secret_key="fault-test-secret-key",
    destinations=orders,
    sender=sender,
)
