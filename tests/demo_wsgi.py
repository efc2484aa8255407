"""The demo landing wrapped by bangi-landing, as a WSGI server loads it: ``tests.demo_wsgi:app``.

The wiring of ``bangi-landing demo``, configured from the environment:
``BANGI_TRACKER_URL``, ``BANGI_OUTBOX`` and, for the orders, ``BANGI_ORDER_URL``.
Every worker process imports this module; they share the secret key (so any
worker can read a journey cookie another one set) and the outbox file.
"""

from __future__ import annotations

from bangi_landing import BangiLanding
from demo_site import create_app

app = create_app()
app.wsgi_app = BangiLanding(
    app.wsgi_app, campaign_id=1, secret_key="server-test-secret-key", variants={"a": 50, "b": 50}
)
