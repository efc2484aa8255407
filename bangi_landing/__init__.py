"""bangi-landing: connect Python landing pages to CPA trackers.

The doors: :class:`BangiLanding` (WSGI), :class:`BangiLandingASGI` (ASGI:
Starlette, FastAPI, ...), ``bangi_landing.django.BangiLandingMiddleware`` and
the Flask extension ``bangi_landing.flask.Bangi``; all run one core
(:mod:`bangi_landing.core`) and deliver through :mod:`bangi_landing.sender`.
"""

from .asgi import BangiLandingASGI
from .config import ConfigurationError
from .destinations import Destination
from .events import Event
from .wsgi import BangiLanding

__version__ = "0.1.0"
__all__ = [
    "BangiLanding",
    "BangiLandingASGI",
    "ConfigurationError",
    "Destination",
    "Event",
    "__version__",
]
