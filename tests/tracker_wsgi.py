"""The bundled tracker as a WSGI server loads it: ``tests.tracker_wsgi:app``.

Its SQLite file is ``$BANGI_TEST_TRACKER_DB``; every worker process opens it.
"""

from __future__ import annotations

import os

from bangi_landing.tracker import create_app

app = create_app(os.environ["BANGI_TEST_TRACKER_DB"])
