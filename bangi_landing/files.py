"""A landing made of files (a folder, or a ``.zip`` of one) as a WSGI app: ``bangi-landing serve``.

HTML pages go through :class:`~bangi_landing.BangiLanding` (the click, the
field in every form, the lead from the form's POST); assets are served beside
it by werkzeug's ``SharedDataMiddleware`` (ETag, Last-Modified,
``Cache-Control``, a 304 to a revalidation), never through the rewriter. A
POST, whatever its path (``order.php``, ``api/send``), is the form handler:
the middleware makes it the lead, and this app answers it with a 303 to the
thank-you page.

Settings come from ``landing.toml`` in the folder or beside it, and from the
``BANGI_*`` environment variables, which win over the file (so one file can
serve a test and a production tracker). Secrets are never in the file: it
names the environment variable that holds each (``secret_key_env``). Its
``[order]`` table forwards each order to a CPA network (see
:mod:`bangi_landing.order_table`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from werkzeug.middleware.shared_data import SharedDataMiddleware
from werkzeug.wrappers import Response

from . import config, order_table
from .core import VARIANT_KEY
from .destinations import NetworkOrders
from .events import Event
from .wsgi import BangiLanding

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

SETTINGS_FILE = "landing.toml"
# Tried in this order when landing.toml names no thank_you page.
THANK_YOU_PAGES = ("thanks.html", "thank-you.html", "thankyou.html", "success.html")
PAGE_SUFFIXES = frozenset({".html", ".htm"})
# Server-side source a bought landing carries: never executed, never shown as text.
SOURCE_SUFFIXES = frozenset({".php", ".phtml", ".php5", ".py", ".cgi", ".pl", ".sh", ".toml"})
FILE_KEY = "bangi_landing.file"  # the file found for the request, for the app inside
ASSET_MAX_AGE = 3600  # seconds; then the browser revalidates by ETag (a 304, no body)
MAX_ZIP_SIZE = 200 * 1024 * 1024  # the uncompressed total an archive may have
MAX_ZIP_RATIO = 100  # uncompressed ÷ compressed: beyond it, a zip bomb, not a landing
MAX_ZIP_FILES = 10_000  # a landing has dozens; a million empty files is a bomb too
# The settings a landing.toml has beside BangiLanding's options: where secrets are.
SECRET_OPTIONS = {
    "secret_key": "BANGI_SECRET_KEY",
    "altercpa_token": "BANGI_ALTERCPA_TOKEN",
    "relay_secret": "BANGI_RELAY_SECRET",
}
_FILE_ONLY = frozenset(
    {"thank_you", order_table.TABLE, *(f"{name}_env" for name in SECRET_OPTIONS)}
)
_OPTIONS = {setting.option: name for name, setting in config.SETTINGS.items()}


class LandingError(config.ConfigurationError):
    """The folder, archive or settings cannot be served; the message names the file or option."""


@dataclass(frozen=True)
class Form:
    page: str  # the page's path in the folder
    action: str  # as written; "" posts to the page itself
    method: str
    fields: tuple[str, ...] = ()  # the names of its inputs, selects and text areas

    @property
    def gives_lead(self) -> bool:
        """Whether its submit comes here as a POST: the lead (and the order)."""
        target = self.action or self.page
        return self.method == "POST" and "://" not in target and not target.startswith("//")


@dataclass(frozen=True)
class Landing:
    """A landing folder, checked: what ``serve`` serves and ``serve --check`` prints."""

    root: Path  # resolved
    settings_file: Path | None
    options: dict[str, Any] = field(repr=False)  # BangiLanding's options: secrets, never shown
    thank_you: str | None  # the page a submit is sent to, relative to the root
    pages: tuple[str, ...]
    forms: tuple[Form, ...]
    variants: Mapping[str, float] = field(default_factory=dict)
    orders: NetworkOrders | None = None  # the [order] table's, also in options' destinations

    def checked(self) -> BangiLanding:
        """A middleware of these options, checked as the served one will be, sending nothing.

        :raises LandingError: an option is missing or wrong; the message names it.
        """
        try:
            return BangiLanding(_Pages(self), **{**self.options, "sender": _NoSender()})
        except config.ConfigurationError as error:
            where = f"{self.settings_file} or the environment" if self.settings_file else ""
            raise LandingError(f"{error} ({where or 'the environment'})") from None

    def describe(self) -> list[str]:
        """What ``serve`` will do with the landing, line by line (``serve --check``)."""
        middleware = self.checked()
        lines = [
            f"Folder: {self.root}",
            f"Settings: {self.settings_file or f'no {SETTINGS_FILE}'} (BANGI_* variables win)",
            f"Pages: {', '.join(self.pages)}",
        ]
        for form in self.forms:
            if form.gives_lead:
                outcome = f"the lead, then a 303 to /{self.thank_you}"
            elif form.method != "POST":
                outcome = "a GET: no lead (a lead is a POST)"
            else:
                outcome = "another site: no lead here"
            lines.append(
                f"Form in {form.page}: {form.method} {form.action or form.page} -> {outcome}"
            )
        if not self.forms:
            lines.append("Forms: none (no page has a form: no lead can come)")
        lines.append(f"Thank-you page: {self.thank_you or 'none'}")
        for destination in middleware.destinations:
            lines.append(f"Destination: {destination.key}")
        if middleware.campaign_id is not None:
            lines.append(f"Campaign: {middleware.campaign_id}")
        if self.variants:
            split = ", ".join(f"{name}/ ({weight:g})" for name, weight in self.variants.items())
            lines.append(f"Split test: {split}")
        if self.orders is None:
            lines.append(f"Order: not forwarded to a CPA network (no [order] in {SETTINGS_FILE})")
        else:
            sent = (name for form in self.forms if form.gives_lead for name in form.fields)
            lines.extend(order_table.describe(self.orders, sent))
        return lines

    def wsgi(self, **options: Any) -> FileLanding:
        """The app; ``options`` (a test's ``sender``, say) win over the settings."""
        return FileLanding(self, BangiLanding(_Pages(self), **{**self.options, **options}))


def load(path: Path, stack: ExitStack) -> Landing:
    """Check the landing at ``path`` (a folder or a ``.zip``) and its settings.

    A zip is extracted into a temporary folder that ``stack`` removes.

    :raises LandingError: anything that would fail later, named, before a byte is served.
    """
    beside = path.parent / SETTINGS_FILE
    if path.suffix.lower() == ".zip" and path.is_file():
        target = Path(tempfile.mkdtemp(prefix="bangi-landing-"))
        stack.callback(shutil.rmtree, target, ignore_errors=True)
        root = extract(path, target)
    elif path.is_dir():
        root = path.resolve()
    else:
        raise LandingError(f"{path}: not a folder or a .zip archive")
    inside = root / SETTINGS_FILE
    settings_file = (
        inside if inside.is_file() else (path.parent / SETTINGS_FILE if beside.is_file() else None)
    )
    data = _read_settings(settings_file) if settings_file else {}
    pages = tuple(sorted(_pages(root)))
    if not pages:
        raise LandingError(f"{path}: no HTML page (index.html, ...) to serve")
    options = _options(data, settings_file)
    orders = None
    if order_table.TABLE in data:
        if options.get("order_url") or config.option("order_url", None):
            # Two order destinations would send every order twice.
            raise LandingError(
                f"{settings_file}: [{order_table.TABLE}] and order_url (BANGI_ORDER_URL)"
                " both describe the order destination: keep one"
            )
        try:
            orders = order_table.network_orders(data[order_table.TABLE], settings_file)
        except config.ConfigurationError as error:
            raise LandingError(str(error)) from None
        options["destinations"] = [orders]
    variants = options.get("variants") or config.option("variants", None) or {}
    for name in variants:
        if resolve(root, name) is None:
            raise LandingError(f"{path}: variant {name!r} has no folder {name}/ with an index.html")
    forms = tuple(form for page in pages for form in _forms(root, page))
    thank_you = data.get("thank_you") or next(
        (page for page in THANK_YOU_PAGES if (root / page).is_file()), None
    )
    if thank_you is not None and (
        not isinstance(thank_you, str) or resolve(root, thank_you) is None
    ):
        raise LandingError(f"{settings_file}: thank_you: no page {thank_you!r} in {path}")
    if forms and thank_you is None:
        raise LandingError(
            f"{path}: its forms need a thank-you page: add {' or '.join(THANK_YOU_PAGES[::3])},"
            f" or name one as thank_you in {SETTINGS_FILE}"
        )
    landing = Landing(root, settings_file, options, thank_you, pages, forms, dict(variants), orders)
    landing.checked()
    return landing


def extract(archive: Path, target: Path) -> Path:
    """Extract ``archive`` into ``target``; the landing's root (a lone top folder, if any).

    Checked before a byte is written: every name stays inside the root, and
    the uncompressed total and its ratio to the compressed size stay under
    ``MAX_ZIP_SIZE`` and ``MAX_ZIP_RATIO``, and the files are at most
    ``MAX_ZIP_FILES`` (zipfile then reads no member past the size its header
    declares).
    """
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = zipped.infolist()
            if len(members) > MAX_ZIP_FILES:
                raise LandingError(
                    f"{archive}: {len(members)} files, over the limit of {MAX_ZIP_FILES}"
                )
            for member in members:
                name = PurePosixPath(member.filename.replace("\\", "/"))
                if name.is_absolute() or ".." in name.parts or ":" in member.filename:
                    raise LandingError(f"{archive}: {member.filename!r} points outside the archive")
            total = sum(member.file_size for member in members)
            packed = sum(member.compress_size for member in members)
            if total > MAX_ZIP_SIZE:
                raise LandingError(
                    f"{archive}: {total} bytes uncompressed, over the limit of {MAX_ZIP_SIZE}"
                )
            if total > MAX_ZIP_RATIO * max(packed, 1):
                raise LandingError(
                    f"{archive}: compressed {total // max(packed, 1)} to 1, over the limit of"
                    f" {MAX_ZIP_RATIO} to 1 (a zip bomb?)"
                )
            zipped.extractall(target)
    # RuntimeError: encrypted; NotImplementedError: a compression zipfile cannot read.
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as error:
        raise LandingError(f"{archive}: not a readable zip archive: {error}") from None
    root = target.resolve()
    entries = [entry for entry in root.iterdir() if not entry.name.startswith(("__", "."))]
    if len(entries) == 1 and entries[0].is_dir() and not (root / "index.html").exists():
        return entries[0]  # an archive of the folder, not of its contents
    return root


def _read_settings(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except tomllib.TOMLDecodeError as error:  # its message gives the line and column
        raise LandingError(f"{path}: {error}") from None
    for name in data:
        if name in SECRET_OPTIONS:
            raise LandingError(
                f"{path}: {name}: keep secrets out of the file; name the environment variable"
                f' that holds it: {name}_env = "{SECRET_OPTIONS[name]}"'
            )
        if name not in _OPTIONS and name not in _FILE_ONLY:
            known = ", ".join(sorted({*_OPTIONS, *_FILE_ONLY} - set(SECRET_OPTIONS)))
            raise LandingError(f"{path}: unknown option {name!r}; the options are: {known}")
    return data


def _options(data: Mapping[str, Any], settings_file: Path | None) -> dict[str, Any]:
    """BangiLanding's options from the file's settings; a ``BANGI_*`` variable set wins."""
    unset = {
        option: value
        for option, value in data.items()
        if option in _OPTIONS and not os.environ.get(_OPTIONS[option])
    }
    try:
        for option, value in unset.items():
            if not isinstance(value, str):  # text is parsed as from the environment
                config.check_value(_OPTIONS[option], value)
        options = config.from_settings(lambda name: unset.get(config.SETTINGS[name].option))
    except config.ConfigurationError as error:
        raise LandingError(f"{settings_file}: {error}") from None
    for option in SECRET_OPTIONS:
        env = data.get(f"{option}_env")
        if env is None:
            continue  # the option reads its own BANGI_* variable
        if not isinstance(env, str) or not os.environ.get(env):
            raise LandingError(
                f"{settings_file}: {option}_env: the environment variable {env} is not set"
            )
        options[option] = os.environ[env]
    return options


def _pages(root: Path) -> Iterable[str]:
    for directory, folders, files in os.walk(root):
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in files:
            if Path(name).suffix.lower() in PAGE_SUFFIXES and not name.startswith("."):
                yield (Path(directory) / name).relative_to(root).as_posix()


class _FormFinder(HTMLParser):
    """Each form's action, method and field names (a field outside any form is the last one's)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, str, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "form":
            action, method = found.get("action") or "", (found.get("method") or "get").upper()
            self.forms.append((action, method, []))
        elif tag in ("input", "select", "textarea", "button") and self.forms and found.get("name"):
            self.forms[-1][2].append(str(found["name"]))


def _forms(root: Path, page: str) -> list[Form]:
    finder = _FormFinder()
    finder.feed((root / page).read_text(errors="replace"))
    return [Form(page, action, method, tuple(names)) for action, method, names in finder.forms]


def resolve(root: Path, path: str) -> Path | None:
    """The file a URL path names inside ``root`` (a folder: its ``index.html``), else None.

    None for anything that would leave the folder (``..``, a symlink out),
    dotfiles and dot-folders, ``landing.toml`` and server-side source, and for
    a file's path with a trailing slash (``/about.html/``), as a static server has it.
    ``path`` is PEP 3333's ``PATH_INFO``: already percent-decoded, so an
    encoded ``..`` is a ``..`` here.
    """
    parts = [part for part in path.split("/") if part]
    if any(part.startswith(".") or "\\" in part or "\0" in part for part in parts):
        return None
    # os.path, not pathlib: this runs on every request, and costs a third as much.
    base = os.fspath(root)
    try:
        found = os.path.realpath(os.path.join(base, *parts))  # noqa: PTH118
        if os.path.isdir(found):  # noqa: PTH112
            found = os.path.realpath(os.path.join(found, "index.html"))  # noqa: PTH118
        elif path.endswith("/"):
            return None  # a file named as a folder: its relative links would all break
        if not found.startswith(base.rstrip(os.sep) + os.sep):
            return None  # a symlink out of the folder
        if not os.path.isfile(found):  # noqa: PTH113
            return None
    except (OSError, ValueError):
        return None
    if os.path.splitext(found)[1].lower() in SOURCE_SUFFIXES:  # noqa: PTH122
        return None
    return Path(found)


def _is_page(path: Path) -> bool:
    return path.suffix.lower() in PAGE_SUFFIXES


_NOT_FOUND = (
    b"<!doctype html><html><head><meta charset=utf-8><title>Not found</title></head>"
    b"<body><h1>Not found</h1><p>There is no such page here.</p></body></html>"
)


class _Pages:
    """The app inside the middleware: pages, a submit's 303, the 404 page."""

    def __init__(self, landing: Landing) -> None:
        self.landing = landing

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        response: Response
        if method == "POST" and self.landing.thank_you is not None:
            # The form handler: the middleware has made the POST the lead.
            location = "/" + quote(self.landing.thank_you)
            response = Response(status=303, headers={"Location": location})
        elif method not in ("GET", "HEAD"):
            response = Response("Method not allowed", 405, {"Allow": "GET, HEAD"})
        elif (body := _read(self._page(environ))) is not None:
            # Read whole: a page is small, and a body of known length is rewritten at once.
            # Each visitor's copy carries its own clickId: no cache may keep or share it,
            # and no ETag may get one visitor a 304 for another's copy.
            response = Response(body, mimetype="text/html")
            response.headers["Cache-Control"] = "no-store"
        else:
            # The folder's own 404 page, checked as any file (never a symlink out).
            body = _read(resolve(self.landing.root, "404.html")) or _NOT_FOUND
            response = Response(body, 404, mimetype="text/html")
        return response(environ, start_response)

    def _page(self, environ: WSGIEnvironment) -> Path | None:
        """The page :class:`FileLanding` found, else (a split test) the variant's own."""
        if FILE_KEY in environ:
            found: Path | None = environ[FILE_KEY]
            return found
        return _find(self.landing, environ)


def _read(path: Path | None) -> bytes | None:
    """The file's bytes; None if there is none (or it went since it was found)."""
    try:
        return None if path is None else path.read_bytes()
    except OSError:
        return None


def _find(landing: Landing, environ: WSGIEnvironment) -> Path | None:
    """A path's file: the visitor's variant's own first (``a/style.css``), else the root's."""
    try:  # PEP 3333: the path's bytes as latin-1; a file's name is UTF-8
        path = environ.get("PATH_INFO", "/").encode("latin-1").decode()
    except UnicodeError:
        return None
    variant = environ.get(VARIANT_KEY)
    if (
        isinstance(variant, str)
        and variant in landing.variants
        and (found := resolve(landing.root / variant, path)) is not None
    ):
        return found
    return resolve(landing.root, path)


class FileLanding:
    """The landing: assets straight from the folder, everything else through the middleware."""

    def __init__(self, landing: Landing, middleware: BangiLanding) -> None:
        self.landing = landing
        self.middleware = middleware
        # werkzeug's static files: ETag, Last-Modified, a 304 to a revalidation, Cache-Control.
        self.assets = SharedDataMiddleware(
            _gone, {"/": str(landing.root)}, cache_timeout=ASSET_MAX_AGE
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            if self.landing.variants:
                # An asset's page is the journey's variant's: its cookie names it.
                saved = self.middleware.cookie.load(environ)
                variant = saved.variant if saved else None
                environ[VARIANT_KEY] = variant or next(iter(self.landing.variants))
            asset = _find(self.landing, environ)
            if self.landing.variants:
                del environ[VARIANT_KEY]  # the middleware chooses the page's variant
            else:
                environ[FILE_KEY] = asset  # the page, or no file: _Pages need not look again
            if asset is not None and not _is_page(asset):
                # The file found and checked above, by its path in the folder (a variant's
                # hero.png is a/hero.png): werkzeug serves exactly that one.
                path = "/" + asset.relative_to(self.landing.root).as_posix()
                environ["PATH_INFO"] = path.encode().decode("latin-1")
                return self.assets(environ, start_response)
        return self.middleware(environ, start_response)


def _gone(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """A file checked a moment ago and removed since: werkzeug found nothing to serve."""
    start_response("404 Not Found", [("Content-Type", "text/html; charset=utf-8")])
    return [_NOT_FOUND]


class _NoSender:
    """The sender of the middleware ``load`` builds only to check the options."""

    def submit(self, event: Event, *, durable: bool = False) -> bool:
        return False


def create_app(path: str | os.PathLike[str]) -> WSGIApplication:
    """The landing at ``path`` for any WSGI server.

    ``gunicorn 'bangi_landing.files:create_app("site")'`` runs it under
    gunicorn (``serve --workers`` runs waitress processes). A zip's temporary
    folder lasts as long as the process.
    """
    stack = ExitStack()
    atexit.register(stack.close)
    return load(Path(path), stack).wsgi()
