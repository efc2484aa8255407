"""bangi-landing: connect Python WSGI landing pages to CPA trackers."""

from .config import ConfigurationError
from .wsgi import BangiLanding

__version__ = "0.1.0"
__all__ = ["BangiLanding", "ConfigurationError", "__version__"]
