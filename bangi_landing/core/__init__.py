"""The core of bangi-landing: the journey, the decision, the events; no protocol code.

The doors (:mod:`bangi_landing.wsgi`, :mod:`bangi_landing.asgi`,
:mod:`bangi_landing.django`) subclass :class:`LandingCore` and speak their
protocol around it.
"""

from .landing import (
    ENVIRON_KEY,
    VARIANT_KEY,
    Decision,
    Journey,
    LandingCore,
    Meta,
    StreamRewriter,
)

__all__ = [
    "ENVIRON_KEY",
    "VARIANT_KEY",
    "Decision",
    "Journey",
    "LandingCore",
    "Meta",
    "StreamRewriter",
]
