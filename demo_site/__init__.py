"""A demo landing page (the Aurora smart ring) to copy as a template for bangi-landing."""

from .app import create_app

__all__ = ["create_app"]
