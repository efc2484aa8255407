"""A minimal Bangi CPA tracker implementing the external landing tracking API.

For tests, the demo and trying bangi-landing without a real tracker (it has no
authentication: serve it on loopback only)::

    bangi-landing tracker --port 5001 --db tracker.sqlite3
"""

from .app import create_app
from .store import Campaign, TrackerStore

__all__ = ["Campaign", "TrackerStore", "create_app"]
