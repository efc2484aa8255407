"""The demo landing as gunicorn loads it for ``bench_load.py``: ``bench._load_app:app``.

``BENCH_MODE`` picks what wraps the page:

* ``bare``: the demo landing alone;
* ``drop``: the middleware, its events handed to a sender that drops them
  (the page path alone);
* ``store``: the middleware with the outbox, the tracker refusing connections
  (the page path and the outbox: events written, none delivered);
* ``deliver``: the middleware with the outbox, delivering to ``BENCH_TRACKER``.

``BENCH_OUTBOX`` is the outbox: a SQLite file or a ``postgresql://`` URL.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))

from bangi_landing import BangiLanding
from demo_site import create_app

SECRET = "bench-secret-key-0123456789"


class DroppingSender:
    """Takes events and drops them: what a page pays to hand one over, and no more."""

    def submit(self, event: object, *, durable: bool = False) -> bool:
        return True


mode = os.environ["BENCH_MODE"]
app = create_app(secret_key=SECRET)
if mode != "bare":
    app.wsgi_app = BangiLanding(  # type: ignore[method-assign]
        app.wsgi_app,
        tracker_url=os.environ["BENCH_TRACKER"],
        campaign_id=1,
        secret_key=SECRET,
        outbox=os.environ["BENCH_OUTBOX"],
        sender=DroppingSender() if mode == "drop" else None,
    )
