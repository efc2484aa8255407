"""Settings that fall back to ``BANGI_*`` environment variables, validated at start-up."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .core.variants import Variants
from .core.visitors import BOT_AGENTS
from .destinations import AlterCPAPro, BangiTracker, NetworkOrders, PostbackTemplates
from .destinations.orders import DEAD_ORDER_RETENTION
from .outbox import DEFAULT_OUTBOX, Outbox, state_dir

if TYPE_CHECKING:
    from .destinations import Destination
    from .stores import Store

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


def network_orders(
    *,
    url: str | None,
    method: str | None,
    body: str | None,
    fields: Mapping[str, Any] | None,
    headers: Mapping[str, str] | None,
    success: Sequence[Any] | None,
    order_id: str | None,
    keep_dead: float | None,
) -> NetworkOrders | None:
    """The order destination of the flat ``order_*`` options (``BANGI_ORDER_*``); no URL, none.

    Each option falls back to its environment variable. An option set without
    ``order_url`` fails, as it would otherwise do nothing.
    """
    given = {
        "order_method": option("order_method", method),
        "order_body": option("order_body", body),
        "order_fields": option("order_fields", fields),
        "order_headers": option("order_headers", headers),
        "order_success": option("order_success", success),
        "order_id_field": option("order_id_field", order_id),
        "order_keep_dead": option("order_keep_dead", keep_dead),
    }
    url = option("order_url", url)
    if not url:
        if stray := [name for name, value in given.items() if value is not None]:
            raise ConfigurationError(
                f"{stray[0]} ({_BY_OPTION[stray[0]][0]}) is set but order_url"
                " (BANGI_ORDER_URL) is not: pass order_url=... or set BANGI_ORDER_URL"
            )
        return None
    wanted = given["order_success"]
    if wanted is not None and (isinstance(wanted, str) or len(wanted) != 2):
        raise ConfigurationError(
            'order_success (BANGI_ORDER_SUCCESS) must be a field and its value: ("status", "ok"),'
            ' or "status:ok" as text'
        )
    fields_given = given["order_fields"]
    if fields_given is not None and not isinstance(fields_given, Mapping):
        raise ConfigurationError("order_fields (BANGI_ORDER_FIELDS) must be a mapping")
    return NetworkOrders(
        str(url),
        method=str(given["order_method"] or "POST").upper(),  # type: ignore[arg-type]
        body=str(given["order_body"] or "form").lower(),  # type: ignore[arg-type]
        fields=fields_given,
        headers=given["order_headers"],
        success=None if wanted is None else (str(wanted[0]), wanted[1]),
        order_id=given["order_id_field"],
        keep_dead=DEAD_ORDER_RETENTION
        if given["order_keep_dead"] is None
        else float(given["order_keep_dead"]),
    )


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


def outbox_path(keys: Iterable[str] = (), campaign_id: int | None = None) -> Path:
    """``$BANGI_OUTBOX``, else this landing's own file in ``outbox.state_dir()``.

    The file is ``outbox-<hash>.sqlite3``, the hash (12 hex digits) of the
    destinations' ``keys`` (their kind and address, never a secret) and the
    campaign id: the worker processes of a landing share it, another landing
    of the same user (another tracker, another campaign) has its own, and a
    landing started again with the same settings finds its events again.
    ``bangi-landing outbox`` computes the same path from the same settings.
    """
    if env := os.environ.get("BANGI_OUTBOX"):
        return Path(env)
    digest = hashlib.blake2b(
        "\n".join([*sorted(set(keys)), f"campaign {campaign_id}"]).encode(), digest_size=6
    )
    return state_dir() / f"outbox-{digest.hexdigest()}.sqlite3"


def outbox(
    value: str | os.PathLike[str] | None,
    *,
    journey_lifetime: float = 30 * 24 * 3600,
    destinations: Iterable[Destination] = (),
    campaign_id: int | None = None,
) -> Store | None:
    """The store at ``value`` (``DEFAULT_OUTBOX``: ``$BANGI_OUTBOX``, else ``outbox_path(...)``).

    A ``postgresql://`` (or ``postgres://``) URL is a PostgreSQL database
    (``postgres.PostgresStore``), anything else a SQLite file. None for
    memory only.
    """
    if value is None:
        return None
    if value is DEFAULT_OUTBOX:
        keys = (destination.key for destination in destinations)
        value = os.environ.get("BANGI_OUTBOX") or outbox_path(keys, campaign_id)
    if is_database_url(value):
        return postgres_store(str(value), journey_lifetime=journey_lifetime)
    path = Path(value)
    try:
        return Outbox(path, journey_lifetime=journey_lifetime)
    except (OSError, sqlite3.Error) as error:
        raise ConfigurationError(f"outbox (BANGI_OUTBOX) {path} cannot be used: {error}") from None


def variants(value: Mapping[str, float] | None) -> Variants | None:
    """The split test's variants (the option or ``BANGI_VARIANTS``); None or empty: no split."""
    if not value:
        return None
    if not isinstance(value, Mapping):
        raise ConfigurationError('variants (BANGI_VARIANTS) must be a mapping: {"a": 50, "b": 50}')
    try:
        return Variants(value)
    except ValueError as error:
        raise ConfigurationError(f"variants (BANGI_VARIANTS): {error}") from None


def is_database_url(value: str | os.PathLike[str]) -> bool:
    """Whether an ``outbox`` value names a PostgreSQL database rather than a SQLite file."""
    return isinstance(value, str) and value.startswith(("postgresql://", "postgres://"))


def postgres_store(
    url: str, *, journey_lifetime: float = 30 * 24 * 3600, spooled: bool = True
) -> Store:
    """The PostgreSQL store at ``url``; a ``ConfigurationError`` if psycopg is not installed.

    Its spool, where events wait while the database is unreachable, is
    ``spool-<hash>.sqlite3`` in ``outbox.state_dir()``, the hash (12 hex
    digits) of the URL without its password: one per database and host user.
    ``spooled=False``: none (the ``bangi-landing outbox`` commands, which
    work on the database itself).
    """
    try:
        from .postgres import PostgresStore  # here: psycopg is an extra
    except ImportError as error:
        raise ConfigurationError(
            f"outbox (BANGI_OUTBOX) {redact(url)} is a PostgreSQL database, which needs"
            f" psycopg ({error}): pip install 'bangi-landing[postgresql]'"
        ) from None
    if not spooled:
        return PostgresStore(url, journey_lifetime=journey_lifetime)
    digest = hashlib.blake2b(redact(url).encode(), digest_size=6).hexdigest()
    spool = state_dir() / f"spool-{digest}.sqlite3"
    try:
        return PostgresStore(url, journey_lifetime=journey_lifetime, spool=spool)
    except (OSError, sqlite3.Error) as error:
        raise ConfigurationError(
            f"outbox (BANGI_OUTBOX) {redact(url)}: its spool {spool} cannot be used: {error}"
        ) from None


def redact(url: str) -> str:
    """``url`` without its password (in its user part or its query), for logs and messages."""
    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(name == "password" for name, _ in query):
        hidden = [(name, "***" if name == "password" else value) for name, value in query]
        parts = parts._replace(query=urlencode(hidden, safe="*"))
    return urlunsplit(parts)


# How a setting given as text (an environment variable, or a Flask or Django
# setting that is a string) becomes an option's value.
def _text(value: str) -> str:
    return value


def _text_list(value: str) -> tuple[str, ...]:
    """``"/order, /checkout"``: a comma-separated list (never a list of characters)."""
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _text_int(value: str) -> int:
    return int(value.strip())


def _text_bool(value: str) -> bool:
    word = value.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be one of 1, true, yes, on, 0, false, no, off")


def _text_mapping(value: str) -> dict[str, str]:
    """A JSON object, or ``"approved:accept, declined:reject"`` (split at each first colon)."""
    if value.lstrip().startswith("{"):
        data = json.loads(value)
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ValueError("must be a JSON object of strings")
        return data
    pairs = [pair.partition(":") for pair in _text_list(value)]
    if any(not sep or not key.strip() for key, sep, _ in pairs):
        raise ValueError('must be "key:value" pairs separated by commas, or a JSON object')
    return {key.strip(): item.strip() for key, _, item in pairs}


def _text_fields(value: str) -> dict[str, Any]:
    """A JSON object (a constant may be any JSON value), or ``"offer_id:42, name:{name}"``."""
    if value.lstrip().startswith("{"):
        data = json.loads(value)
        if not isinstance(data, dict):
            raise ValueError("must be a JSON object")
        return data
    return _text_mapping(value)


def _text_success(value: str) -> tuple[str, Any]:
    """``"status:ok"``: a JSON field and its value; a value that reads as JSON (``true``,
    ``0``) is that JSON value, any other is text."""
    field, sep, wanted = value.partition(":")
    if not sep or not field.strip():
        raise ValueError('must be "field:value", such as "status:ok"')
    try:
        return field.strip(), json.loads(wanted)
    except ValueError:
        return field.strip(), wanted.strip()


def _text_weights(value: str) -> dict[str, float]:
    """``"a:50, b:30, c:20"`` (split at each first colon), or a JSON object of numbers."""
    if value.lstrip().startswith("{"):
        data = json.loads(value)
        if not isinstance(data, dict):
            raise ValueError("must be a JSON object of weights")
        return data
    weights: dict[str, float] = {}
    for name, sep, weight in (pair.partition(":") for pair in _text_list(value)):
        if not sep:
            raise ValueError('must be "name:weight" pairs separated by commas, or a JSON object')
        try:
            weights[name.strip()] = float(weight)
        except ValueError:
            raise ValueError(f"the weight of variant {name.strip()!r} must be a number") from None
    return weights


class Setting(NamedTuple):
    option: str  # the BangiLanding keyword
    default: Any  # what None means, where the option itself does not resolve its default
    from_text: Callable[[str], Any]


# Framework setting (Flask config, Django settings) and environment variable -> BangiLanding
# option. The options that read their environment variable themselves (tracker_url,
# campaign_id, secret_key, the relay's and Pro's) are listed for the frameworks only.
SETTINGS: dict[str, Setting] = {
    "BANGI_TRACKER_URL": Setting("tracker_url", None, _text),
    "BANGI_CAMPAIGN_ID": Setting("campaign_id", None, _text),
    "BANGI_SECRET_KEY": Setting("secret_key", None, _text),
    "BANGI_SUBMIT_PATHS": Setting("submit_paths", None, _text_list),
    "BANGI_FIELD_NAME": Setting("field_name", "sub1", _text),
    "BANGI_URL_PARAM": Setting("url_param", "clickId", _text),
    "BANGI_LEAD_FIELDS": Setting("lead_fields", None, _text_list),
    "BANGI_MAX_SUBMIT_SIZE": Setting("max_submit_size", 64 * 1024, _text_int),
    "BANGI_COOKIE_NAME": Setting("cookie_name", "bangi_journey", _text),
    "BANGI_COOKIE_MAX_AGE": Setting("cookie_max_age", 30 * 24 * 3600, _text_int),
    "BANGI_COOKIE_DOMAIN": Setting("cookie_domain", None, _text),
    "BANGI_LINK_HOSTS": Setting("link_hosts", (), _text_list),
    "BANGI_OUTBOX": Setting("outbox", DEFAULT_OUTBOX, _text),
    "BANGI_DURABLE_CLICKS": Setting("durable_clicks", False, _text_bool),
    "BANGI_ALTERCPA_URL": Setting("altercpa_url", None, _text),
    "BANGI_ALTERCPA_TOKEN": Setting("altercpa_token", None, _text),
    "BANGI_ALTERCPA_CLICK_PARAM": Setting("altercpa_click_param", None, _text),
    "BANGI_POSTBACK_TEMPLATES": Setting("postback_templates", None, _text_mapping),
    "BANGI_RELAY_PATH": Setting("relay_path", None, _text),
    "BANGI_RELAY_SECRET": Setting("relay_secret", None, _text),
    "BANGI_RELAY_STATUSES": Setting("relay_statuses", None, _text_mapping),
    "BANGI_BOT_AGENTS": Setting("bot_agents", BOT_AGENTS, _text_list),
    "BANGI_IGNORE_PREFETCH": Setting("ignore_prefetch", True, _text_bool),
    "BANGI_VARIANTS": Setting("variants", None, _text_weights),
    "BANGI_VARIANT_PARAM": Setting("variant_param", "variant", _text),
    "BANGI_LANDER_PARAM": Setting("lander_param", "lander", _text),
    "BANGI_ORDER_URL": Setting("order_url", None, _text),
    "BANGI_ORDER_METHOD": Setting("order_method", None, _text),
    "BANGI_ORDER_BODY": Setting("order_body", None, _text),
    "BANGI_ORDER_FIELDS": Setting("order_fields", None, _text_fields),
    "BANGI_ORDER_HEADERS": Setting("order_headers", None, _text_mapping),
    "BANGI_ORDER_SUCCESS": Setting("order_success", None, _text_success),
    "BANGI_ORDER_ID_FIELD": Setting("order_id_field", None, _text),
    "BANGI_ORDER_KEEP_DEAD": Setting("order_keep_dead", None, _text_int),
}
_BY_OPTION = {setting.option: (name, setting) for name, setting in SETTINGS.items()}
# What a setting given as a value, not text, may be (a TOML file's integer, list or table).
_VALUE_TYPES: dict[Callable[[str], Any], tuple[type, ...]] = {
    _text: (str, int),
    _text_list: (list, tuple),
    _text_int: (int,),
    _text_bool: (bool,),
    _text_mapping: (dict,),
    _text_weights: (dict,),
    _text_fields: (dict,),
    _text_success: (list, tuple),
}
_LISTS = frozenset(s.option for s in SETTINGS.values() if s.from_text is _text_list)


def from_text(name: str, value: str) -> Any:
    """The value of setting ``name`` (``BANGI_SUBMIT_PATHS``) given as text.

    :raises ConfigurationError: the text does not fit the setting; the message names it.
    """
    try:
        return SETTINGS[name].from_text(value)
    except ValueError as error:
        raise ConfigurationError(f"{name}: {error}") from None


def check_value(name: str, value: Any) -> None:
    """Check that setting ``name`` given as a value (not text) is of a type it takes.

    :raises ConfigurationError: it is not (``BANGI_LINK_HOSTS = 5``); the message names it.
    """
    types = _VALUE_TYPES[SETTINGS[name].from_text]
    if not isinstance(value, types) or (types == (int,) and isinstance(value, bool)):
        wanted = " or ".join(kind.__name__ for kind in types)
        raise ConfigurationError(f"{name} must be {wanted}, not {type(value).__name__}")


def from_settings(get: Callable[[str], Any]) -> dict[str, Any]:
    """The options a framework's settings give: ``get("BANGI_...")`` for each, None when unset.

    A string is read as text, as from the environment: a list setting given
    as ``"/order, /checkout"`` is two paths. Unset settings are left out, so
    that the option falls back to its environment variable, then its default.
    """
    options: dict[str, Any] = {}
    for name, setting in SETTINGS.items():
        value = get(name)
        if value is None:
            continue
        options[setting.option] = from_text(name, value) if isinstance(value, str) else value
    return options


def option(option: str, value: Any) -> Any:
    """``value`` if given, else its environment variable (read as text), else its default.

    :raises TypeError: a bare ``str`` where a list of strings is expected (it
        would be read as a list of characters).
    """
    name, setting = _BY_OPTION[option]
    if value is None:
        text = os.environ.get(name)
        return from_text(name, text) if text else setting.default
    if option in _LISTS:
        if isinstance(value, str | bytes):
            raise TypeError(f"{option} must be a list of strings, not a string: write [{value!r}]")
        value = tuple(value)
        if not all(isinstance(item, str) for item in value):
            raise TypeError(f"{option} must be a list of strings")
    return value
