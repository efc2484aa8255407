"""Settings that fall back to ``BANGI_*`` environment variables, validated at start-up."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

from .outbox import DEFAULT_OUTBOX, Outbox, default_path

MIN_SECRET_LENGTH = 16


class ConfigurationError(ValueError):
    """A setting is missing or invalid; the message names it and its environment variable."""


def _value(value: object, option: str, env: str) -> object:
    if value is None or value == "":
        value = os.environ.get(env) or None
    if value is None:
        raise ConfigurationError(f"{option} is required: pass {option}=... or set {env}")
    return value


def tracker_url(
    value: str | None, *, option: str = "tracker_url", env: str = "BANGI_TRACKER_URL"
) -> str:
    url = str(_value(value, option, env))
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"{option} ({env}) must be an http(s) URL such as https://dashboard.example.com"
        )
    return url.rstrip("/")


def campaign_id(value: int | str | None) -> int:
    raw = _value(value, "campaign_id", "BANGI_CAMPAIGN_ID")
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw)
    if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
        return raw
    raise ConfigurationError("campaign_id (BANGI_CAMPAIGN_ID) must be a positive integer")


def secret_key(value: str | None) -> str:
    key = _value(value, "secret_key", "BANGI_SECRET_KEY")
    if not isinstance(key, str) or len(key) < MIN_SECRET_LENGTH:
        raise ConfigurationError(
            f"secret_key (BANGI_SECRET_KEY) must be a string of at least {MIN_SECRET_LENGTH}"
            " characters; it signs the journey cookie"
        )
    return key


def outbox(value: str | os.PathLike[str] | None) -> Outbox | None:
    """The outbox at ``value`` (``DEFAULT_OUTBOX``: ``default_path()``), None for memory only."""
    if value is None:
        return None
    path = default_path() if value is DEFAULT_OUTBOX else Path(value)
    try:
        return Outbox(path)
    except (OSError, sqlite3.Error) as error:
        raise ConfigurationError(f"outbox (BANGI_OUTBOX) {path} cannot be used: {error}") from None
