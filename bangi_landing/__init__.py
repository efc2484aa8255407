"""bangi-landing: connect Python WSGI landing pages to CPA trackers."""

__version__ = "0.1.0"
