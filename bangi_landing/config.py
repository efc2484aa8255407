"""Settings that fall back to ``BANGI_*`` environment variables, validated at start-up."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .destinations import AlterCPAPro, BangiTracker, PostbackTemplates
from .outbox import DEFAULT_OUTBOX, Outbox, state_dir
from .visitors import BOT_AGENTS

if TYPE_CHECKING:
    from .destinations import Destination

MIN_SECRET_LENGTH = 16


class ConfigurationError(ValueError):
    """A setting is missing or invalid; the message names it and its environment variable."""


def _value(value: object, option: str, env: str) -> object:
    if value is None or value == "":
        value = os.environ.get(env) or None
    if value is None:
        raise ConfigurationError(f"{option} is required: pass {option}=... or set {env}")
    return value


def http_url(value: str | None, *, option: str, env: str, example: str) -> str:
    url = str(_value(value, option, env))
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{option} ({env}) must be an http(s) URL such as {example}")
    return url.rstrip("/")


def _optional(value: str | None, env: str) -> str | None:
    return value or os.environ.get(env) or None


def destinations(
    *,
    tracker_url: str | None,
    altercpa_url: str | None,
    altercpa_token: str | None,
    altercpa_click_param: str | None,
    postback_templates: Mapping[str, str] | None,
    more: Iterable[Destination] = (),
    required: bool = True,
) -> list[Destination]:
    """Every destination that is configured; with ``required``, at least one must be."""
    found: list[Destination] = []
    if _optional(tracker_url, "BANGI_TRACKER_URL"):
        url = http_url(
            tracker_url,
            option="tracker_url",
            env="BANGI_TRACKER_URL",
            example="https://dashboard.example.com",
        )
        found.append(BangiTracker(url))
    if _optional(altercpa_url, "BANGI_ALTERCPA_URL"):
        url = http_url(
            altercpa_url,
            option="altercpa_url",
            env="BANGI_ALTERCPA_URL",
            example="https://pro.example.com",
        )
        token = _value(altercpa_token, "altercpa_token", "BANGI_ALTERCPA_TOKEN")
        param = _optional(altercpa_click_param, "BANGI_ALTERCPA_CLICK_PARAM") or "click"
        found.append(AlterCPAPro(url, str(token), click_param=param))
    elif _optional(altercpa_token, "BANGI_ALTERCPA_TOKEN"):
        raise ConfigurationError(
            "altercpa_token is set but altercpa_url is not: pass altercpa_url=... or set"
            " BANGI_ALTERCPA_URL (https://{domain} of AlterCPA Pro)"
        )
    if postback_templates:
        try:
            found.append(PostbackTemplates(postback_templates))
        except ValueError as error:
            raise ConfigurationError(f"postback_templates: {error}") from None
    found.extend(more)
    if required and not found:
        raise ConfigurationError(
            "no destination: pass tracker_url=... (or set BANGI_TRACKER_URL) for the Bangi"
            " tracker, altercpa_url=... and altercpa_token=... (BANGI_ALTERCPA_URL,"
            " BANGI_ALTERCPA_TOKEN) for AlterCPA Pro, or both"
        )
    return found


def relay(path: str | None, secret: str | None) -> tuple[str | None, str]:
    """The postback relay's path and secret; no path, no relay."""
    path = _optional(path, "BANGI_RELAY_PATH")
    if path is None:
        return None, ""
    if not path.startswith("/"):
        raise ConfigurationError("relay_path (BANGI_RELAY_PATH) must start with /")
    key = _value(secret, "relay_secret", "BANGI_RELAY_SECRET")
    if not isinstance(key, str) or len(key) < MIN_SECRET_LENGTH:
        raise ConfigurationError(
            f"relay_secret (BANGI_RELAY_SECRET) must be at least {MIN_SECRET_LENGTH} characters:"
            " anyone who knows it can set your leads' statuses"
        )
    return path, key


def campaign_id(value: int | str | None, *, required: bool = True) -> int | None:
    if (
        not required
        and _optional(None if value is None else str(value), "BANGI_CAMPAIGN_ID") is None
    ):
        return None
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


def outbox_path(destinations: Iterable[Destination] = (), campaign_id: int | None = None) -> Path:
    """``$BANGI_OUTBOX``, else this landing's own file in ``outbox.state_dir()``.

    The file is ``outbox-<hash>.sqlite3``, the hash (12 hex digits) of the
    destinations' keys (their kind and address, never a secret) and the
    campaign id: the worker processes of a landing share it, another landing
    of the same user (another tracker, another campaign) has its own, and a
    landing started again with the same settings finds its events again.
    ``bangi-landing outbox`` computes the same path from the same settings.
    """
    if env := os.environ.get("BANGI_OUTBOX"):
        return Path(env)
    keys = sorted({destination.key for destination in destinations})
    digest = hashlib.blake2b("\n".join([*keys, f"campaign {campaign_id}"]).encode(), digest_size=6)
    return state_dir() / f"outbox-{digest.hexdigest()}.sqlite3"


def outbox(
    value: str | os.PathLike[str] | None,
    *,
    journey_lifetime: float = 30 * 24 * 3600,
    destinations: Iterable[Destination] = (),
    campaign_id: int | None = None,
) -> Outbox | None:
    """The outbox at ``value`` (``DEFAULT_OUTBOX``: ``outbox_path(destinations, campaign_id)``).

    None for memory only.
    """
    if value is None:
        return None
    path = outbox_path(destinations, campaign_id) if value is DEFAULT_OUTBOX else Path(value)
    try:
        return Outbox(path, journey_lifetime=journey_lifetime)
    except (OSError, sqlite3.Error) as error:
        raise ConfigurationError(f"outbox (BANGI_OUTBOX) {path} cannot be used: {error}") from None


# Framework setting (Flask config, Django settings) -> BangiLanding option, and its default.
# The names are those of the environment variables where there is one.
SETTINGS: dict[str, tuple[str, Any]] = {
    "BANGI_TRACKER_URL": ("tracker_url", None),
    "BANGI_CAMPAIGN_ID": ("campaign_id", None),
    "BANGI_SECRET_KEY": ("secret_key", None),
    "BANGI_SUBMIT_PATHS": ("submit_paths", ("/submit",)),
    "BANGI_FIELD_NAME": ("field_name", "sub1"),
    "BANGI_URL_PARAM": ("url_param", "clickId"),
    "BANGI_LEAD_FIELDS": ("lead_fields", None),
    "BANGI_MAX_SUBMIT_SIZE": ("max_submit_size", 64 * 1024),
    "BANGI_COOKIE_NAME": ("cookie_name", "bangi_journey"),
    "BANGI_COOKIE_MAX_AGE": ("cookie_max_age", 30 * 24 * 3600),
    "BANGI_COOKIE_DOMAIN": ("cookie_domain", None),
    "BANGI_LINK_HOSTS": ("link_hosts", ()),
    "BANGI_OUTBOX": ("outbox", DEFAULT_OUTBOX),
    "BANGI_DURABLE_CLICKS": ("durable_clicks", False),
    "BANGI_ALTERCPA_URL": ("altercpa_url", None),
    "BANGI_ALTERCPA_TOKEN": ("altercpa_token", None),
    "BANGI_ALTERCPA_CLICK_PARAM": ("altercpa_click_param", None),
    "BANGI_POSTBACK_TEMPLATES": ("postback_templates", None),
    "BANGI_RELAY_PATH": ("relay_path", None),
    "BANGI_RELAY_SECRET": ("relay_secret", None),
    "BANGI_RELAY_STATUSES": ("relay_statuses", None),
    "BANGI_BOT_AGENTS": ("bot_agents", BOT_AGENTS),
    "BANGI_IGNORE_PREFETCH": ("ignore_prefetch", True),
}
