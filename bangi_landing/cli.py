"""The ``bangi-landing`` command.

Help texts come from docstrings written in reST, as the rest of the package's;
``--help`` shows them as plain text (see ``_plain``).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
import secrets
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from . import __version__, config
from .destinations.orders import orders_key
from .outbox import Outbox, state_dir
from .retry import RetryPolicy
from .serving import STOP_SIGNALS, Site, serve, stop_signal
from .stores import Store

if TYPE_CHECKING:
    from .files import Landing

_host = click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface to listen on."
)
_FILE = click.Path(dir_okay=False, path_type=Path)
_db = click.option(
    "--db",
    type=_FILE,
    default="bangi-tracker.sqlite3",
    show_default=True,
    help="SQLite file where the tracker keeps its events.",
)
_port = click.IntRange(0, 65535)  # 0: any free port
_outbox = click.option(
    "--outbox",
    type=_FILE,
    default="bangi-outbox.sqlite3",
    show_default=True,
    help="SQLite file where the landing's events wait for the tracker.",
)


_ROLE = re.compile(r":[\w:]+:`(~?)([^`]+)`")  # :class:`~a.B` (shown as B), :func:`a.f`
_LITERAL = re.compile(r"``(.+?)``|`([^`]+)`", re.DOTALL)
_FIELD = re.compile(r"^:\w+(?: [^:]+)?:.*(?:\n[ \t]+.*)*\n?", re.MULTILINE)  # a field list item


def _plain(text: str | None) -> str | None:
    """reST markup as plain text: ``code`` and `x` lose their marks, :param ...: fields go."""
    if text is None:
        return None
    text = _FIELD.sub("", inspect.cleandoc(text))
    text = _ROLE.sub(lambda found: found[2].rpartition(".")[2] if found[1] else found[2], text)
    text = _LITERAL.sub(lambda found: found.group(1) or found.group(2), text)
    return re.sub(r"::$", ":", text, flags=re.MULTILINE).strip()


class _Command(click.Command):
    """A command whose help, and its options' help, are plain text."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_help(self)


class _Group(click.Group):
    """A group of plain-text commands that, given no command, shows its help (status 0).

    Typing the bare command is asking what it does, not a usage error.
    """

    command_class = _Command
    group_class = type  # its groups are _Groups too

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_help(self)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and not ctx.resilient_parsing:
            click.echo(ctx.get_help(), color=ctx.color)
            ctx.exit(0)
        return super().parse_args(ctx, args)


def _plain_help(command: click.Command) -> None:
    command.help = _plain(command.help)
    for param in command.params:
        if isinstance(param, click.Option):
            param.help = _plain(param.help)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="bangi-landing")
def main() -> None:
    """Connect landing pages to CPA trackers.

    Run ``bangi-landing COMMAND --help`` for a command's options.
    """


@main.command()
@_host
@click.option(
    "--port", default=5001, show_default=True, type=_port, help="Port to listen on (0: any free)."
)
@_db
@click.option(
    "--altercpa-token",
    "altercpa_tokens",
    metavar="TOKEN",
    multiple=True,
    help="A site token the fake AlterCPA Pro at /api/site/ accepts (repeatable)."
    " Default: $BANGI_TRACKER_ALTERCPA_TOKENS, comma-separated; with none, every"
    " Pro call is Forbidden.",
)
@click.option(
    "--network-postback-url",
    metavar="TEMPLATE",
    help="Where the fake CPA network at /network sends postbacks: a URL with {sub1},"
    " {status}, {payout} and {offer_id}. Default: this tracker's own postback API.",
)
def tracker(
    host: str,
    port: int,
    db: Path,
    altercpa_tokens: tuple[str, ...],
    network_postback_url: str | None,
) -> None:
    """Run the bundled tracker (the external landing tracking API and its report)."""
    from .tracker import create_app, network
    from .tracker.app import EXPOSED_WARNING, is_loopback

    if not is_loopback(host):
        click.echo(EXPOSED_WARNING, err=True)
    app = create_app(
        db, altercpa_tokens=altercpa_tokens or None, network_postback_url=network_postback_url
    )
    try:
        site = Site.bind("Tracker", app, host, port)
        if network_postback_url is None:  # known once bound: port 0 is any free port
            app.config[network.POSTBACK_URL] = network.tracker_postback_url(site.url)
        serve([site], echo=click.echo)
    finally:
        app.extensions["bangi_tracker"].close()


DEMO_RELAY_PATH = "/bangi/postback"
# What the demo's fake network gets with each order: the form's fields, the offer, the
# headline variant as sub2 (the clickId goes as sub1).
DEMO_ORDER_FIELDS = {"offer_id": "1001", "name": "{name}", "phone": "{phone}", "sub2": "{variant}"}


@main.command()
@_host
@click.option(
    "--port", default=5000, show_default=True, type=_port, help="The landing's port (0: any free)."
)
@click.option(
    "--tracker-port",
    default=5001,
    show_default=True,
    type=_port,
    help="The bundled tracker's port (0: any free).",
)
@_db
@_outbox
def demo(host: str, port: int, tracker_port: int, db: Path, outbox: Path) -> None:
    """Run the demo landing, wrapped in bangi-landing, and the bundled tracker.

    Open the landing, order something, then watch the click and the lead in the
    tracker's report. The middleware forwards the order to the fake CPA network
    at /network (its buttons make it fail, to watch the order wait and arrive
    once); the network sends its postbacks to the landing's relay, which passes
    each status on to the tracker and to the fake AlterCPA Pro (open the landing
    with ``?click=...`` for Pro to see it).
    """
    from demo_site import create_app as create_landing

    from .core.statuses import StatusMapper
    from .tracker import Campaign, create_app, network
    from .tracker.app import EXPOSED_WARNING, is_loopback
    from .wsgi import BangiLanding

    if not is_loopback(host):
        click.echo(EXPOSED_WARNING, err=True)
    pro_token, relay_secret = secrets.token_hex(16), secrets.token_urlsafe(24)
    tracker_app = create_app(db, altercpa_tokens=[pro_token])
    store = tracker_app.extensions["bangi_tracker"]
    store.put_campaign(
        Campaign(
            id=1,
            name="Aurora ring (demo)",
            status_mapper=StatusMapper("status"),  # the relay sends our own status names
            cost=10,
            currency="USD",
        )
    )
    try:
        # Both request logs go to one terminal: each line says which server wrote it.
        tracker_site = Site.bind("Tracker", tracker_app, host, tracker_port, log_as="tracker")
        landing = create_landing()
        landing_site = Site.bind("Landing", landing, host, port, log_as="landing")
        # The network posts back to the landing's relay, which passes each status on.
        tracker_app.config[network.POSTBACK_URL] = (
            f"{landing_site.url}{DEMO_RELAY_PATH}?secret={relay_secret}"
            "&clickId={sub1}&status={status}&payout={payout}&offer_id={offer_id}"
        )
        landing.wsgi_app = BangiLanding(  # type: ignore[method-assign]
            landing.wsgi_app,
            tracker_url=tracker_site.url,
            campaign_id=1,
            secret_key=secrets.token_urlsafe(32),
            altercpa_url=tracker_site.url,  # the tracker plays AlterCPA Pro too
            altercpa_token=pro_token,
            relay_path=DEMO_RELAY_PATH,
            relay_secret=relay_secret,
            # The fake network's words for its statuses.
            relay_statuses={"approved": "accept", "pending": "expect", "rejected": "reject"},
            # Two headlines, half the visitors each: the report compares them.
            variants={"a": 50, "b": 50},
            # Each accepted order goes to the fake network, durably, as to a real one.
            order_url=f"{tracker_site.url}/network/orders",
            order_fields=DEMO_ORDER_FIELDS,
            order_success=("status", "ok"),
            order_id_field="id",
            outbox=outbox,
        )
        serve([landing_site, tracker_site], echo=click.echo)
    finally:
        store.close()


MAX_REQUEST_BODY = 1024 * 1024
PROXY_HEADERS = "x-forwarded-for x-forwarded-proto x-forwarded-host x-forwarded-port"


@main.command("serve")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@_host
@click.option(
    "--port", default=8000, show_default=True, type=_port, help="Port to listen on (0: any free)."
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Processes, each with --threads threads, sharing the port (more than 1: POSIX only).",
)
@click.option(
    "--threads",
    default=8,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Requests each process serves at once (waitress's worker threads).",
)
@click.option(
    "--trusted-proxy",
    metavar="ADDRESS",
    help="The reverse proxy (nginx, Caddy) in front, say 127.0.0.1: its X-Forwarded-For,"
    " -Proto, -Host and -Port headers are believed (an HTTPS proxy makes the journey"
    " cookie Secure). Default: none, the headers are ignored.",
)
@click.option("--check", is_flag=True, help="Check the landing, print what it does, serve nothing.")
def serve_files(
    path: Path,
    host: str,
    port: int,
    workers: int,
    threads: int,
    trusted_proxy: str | None,
    check: bool,
) -> None:
    """Serve a landing made of files: a folder, or a ``.zip`` of one.

    HTML pages get the click, the field in every form and the lead from the
    form's POST (whatever its action: ``order.php``, ``api/send``), answered
    with a 303 to the thank-you page (``thanks.html``, ``success.html``, or
    ``thank_you`` in ``landing.toml``); its ``[order]`` table forwards the
    order to the CPA network. Assets are served with caching headers.
    Settings: ``landing.toml`` in the folder or beside it, and ``BANGI_*``
    variables (which win). Runs on waitress; ``--workers N`` forks N waitress
    processes sharing the port (a worker that dies is restarted), each with
    ``--threads`` threads.
    """
    import logging

    from . import prefork
    from .files import load

    if workers > 1 and not hasattr(os, "fork"):
        raise click.UsageError("--workers above 1 needs os.fork (Linux, macOS): use --threads")
    with contextlib.ExitStack() as stack:
        try:
            landing = load(path, stack)
            lines = landing.describe()
        except config.ConfigurationError as error:
            raise click.ClickException(str(error)) from None
        for line in lines:
            click.echo(line)
        if check:
            return
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        options: dict[str, Any] = {
            "threads": threads,
            "ident": "bangi-landing",
            # An order form's POST is a few KiB: no visitor needs waitress's 1 GiB default.
            "max_request_body_size": MAX_REQUEST_BODY,
        }
        if trusted_proxy:
            options.update(trusted_proxy=trusted_proxy, trusted_proxy_headers=PROXY_HEADERS)
        if workers == 1:
            _serve_landing(landing, {"host": host, "port": port, **options})
            return
        try:
            listener = prefork.listen(host, port)
        except OSError as error:
            raise click.ClickException(f"cannot listen on {host}:{port}: {error}") from None
        stack.callback(listener.close)
        _echo_url(host, listener.getsockname()[1])
        work = functools.partial(_serve_landing, landing, {"sockets": [listener], **options})
        with stop_signal() as stop:
            try:
                prefork.run(workers, work, stop, click.echo)
            except prefork.WorkerBootError as error:
                raise click.ClickException(str(error)) from None
        click.echo("Shutting down.")


def _serve_landing(landing: Landing, options: dict[str, Any]) -> None:
    """Serve ``landing`` on waitress with ``options`` until SIGINT or SIGTERM.

    The app (its sender's threads, its outbox) is made here, in the process
    that serves it: a ``--workers`` child makes its own. The server runs in
    this thread, where a signal interrupts it as waitress expects (its own
    Ctrl-C): it then lets its threads finish the requests in hand (up to 5 s)
    before its sockets close, so that none writes to a closed one.
    """
    from waitress import create_server

    def interrupt(signum: int, frame: FrameType | None) -> None:
        # Once: a second signal (Ctrl-C reaches a worker and its parent, which
        # then sends SIGTERM) must not interrupt the shutdown it started.
        for sig in STOP_SIGNALS:
            signal.signal(sig, _ignore)
        raise KeyboardInterrupt

    app = landing.wsgi()
    try:
        server = create_server(app, **options)
        try:
            if "sockets" not in options:  # a worker's URL is the parent's to print
                _echo_url(options["host"], server.effective_port)
            previous = {sig: signal.signal(sig, interrupt) for sig in STOP_SIGNALS}
            try:
                server.run()  # returns on the signal, its threads done
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        finally:
            server.close()
    finally:
        app.middleware.close()
    if "sockets" not in options:
        click.echo("Shutting down.")


def _ignore(signum: int, frame: FrameType | None) -> None:
    """A signal handler that does nothing: the signal is already being acted on."""


def _echo_url(host: str, port: int) -> None:
    url_host = f"[{host}]" if ":" in host else host
    click.echo(f"Landing: http://{url_host}:{port}/")


@main.command("new")
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Write into a folder that is not empty.")
def new_project(path: Path, force: bool) -> None:
    """Write a landing project to edit into PATH: the demo's Flask landing, wired to the tracker.

    The project has its own README (run it locally and under gunicorn), a
    ``.env.example`` of its settings and tests of the journey against the
    bundled tracker.
    """
    from .project import ProjectError, write_project

    try:
        written = write_project(path, force=force)
    except ProjectError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Wrote {_n(len(written), 'file')} into {path}. Next:")
    click.echo(f"  cd {path} && cat README.md")


@main.group()
def outbox() -> None:
    """Look after the outboxes where landings' events wait for their destinations.

    Each landing has an outbox file of its own, named after its destinations
    and campaign (``bangi-landing outbox list`` shows them all). These
    commands find it from the settings the landing has: ``BANGI_OUTBOX``,
    else ``BANGI_TRACKER_URL``, ``BANGI_ALTERCPA_URL`` and ``BANGI_CAMPAIGN_ID``
    (or the options of those names); ``--outbox PATH`` names the file outright,
    ``--outbox postgresql://...`` a PostgreSQL outbox (its password is never
    printed).
    """


_where = (
    click.option(
        "--outbox",
        "path",
        metavar="PATH|URL",
        default=None,
        help="The outbox file, or its PostgreSQL database (postgresql://...). Default:"
        " $BANGI_OUTBOX, else the file of the landing configured by the options below,"
        " else the only outbox in the state folder.",
    ),
    click.option(
        "--tracker-url",
        envvar="BANGI_TRACKER_URL",
        metavar="URL",
        help="The landing's Bangi tracker. Default: $BANGI_TRACKER_URL.",
    ),
    click.option(
        "--altercpa-url",
        envvar="BANGI_ALTERCPA_URL",
        metavar="URL",
        help="The landing's AlterCPA Pro. Default: $BANGI_ALTERCPA_URL.",
    ),
    click.option(
        "--order-url",
        envvar="BANGI_ORDER_URL",
        metavar="URL",
        help="The CPA network the landing forwards orders to. Default: $BANGI_ORDER_URL.",
    ),
    click.option(
        "--campaign-id",
        envvar="BANGI_CAMPAIGN_ID",
        type=click.IntRange(min=1),
        help="The landing's campaign. Default: $BANGI_CAMPAIGN_ID.",
    ),
)


@dataclass(frozen=True)
class _Target:
    """The outbox a command works on, and what the configuration given sends to."""

    path: Path | str  # a SQLite file, or a PostgreSQL database's URL
    configured: Path | str | None  # the outbox of the configuration given, if any
    in_use: frozenset[str] | None  # the destination keys it uses; None: none given
    # The kinds of destination the options describe (bangi, altercpa, orders): a key of
    # another kind (a NetworkOrders or PostbackTemplates made in code) may well be in use.
    judged: frozenset[str] = frozenset()

    def unused(self, keys: Iterable[str]) -> list[str]:
        """The ``keys`` that the configuration given is known not to use."""
        if self.in_use is None:
            return []
        return sorted(
            key for key in set(keys) - self.in_use if key.partition(" ")[0] in self.judged
        )

    @property
    def shown(self) -> str:
        """The outbox, as it may be printed: a database's URL without its password."""
        return config.redact(self.path) if isinstance(self.path, str) else str(self.path)

    def open(self) -> Store:
        if isinstance(self.path, str):
            try:
                return config.postgres_store(self.path, spooled=False)
            except config.ConfigurationError as error:
                raise click.ClickException(str(error)) from None
        if not self.path.exists():
            raise click.ClickException(f"no outbox at {self.path}{_others(self.path)}")
        return Outbox(self.path)


def _located(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` the ``--outbox`` options, and a ``_Target`` made of them."""
    return _with_target(command, _where)


def _configured(command: Callable[..., None]) -> Callable[..., None]:
    """The same without ``--outbox``: the configuration given is all ``command`` needs."""
    return _with_target(command, _where[1:])


def _with_target(
    command: Callable[..., None], declarations: Sequence[Callable[[Any], Any]]
) -> Callable[..., None]:
    @functools.wraps(command)
    def located(
        tracker_url: str | None,
        altercpa_url: str | None,
        order_url: str | None,
        campaign_id: int | None,
        path: str | None = None,
        **options: Any,
    ) -> None:
        try:
            destinations = config.destinations(
                tracker_url=tracker_url,
                altercpa_url=altercpa_url,
                # A destination's key has no secret in it: finding its outbox takes no token.
                altercpa_token="-" if altercpa_url else None,
                altercpa_click_param=None,
                postback_templates=None,
                required=False,
            )
        except config.ConfigurationError as error:
            raise click.UsageError(str(error)) from None
        # An order URL's key is its host and path: no {env:...} token need be set for it.
        keys = [d.key for d in destinations] + ([orders_key(order_url)] if order_url else [])
        configured: Path | str | None = None
        if config.is_database_url(env := os.environ.get("BANGI_OUTBOX") or ""):
            configured = env
        elif keys or env:
            configured = config.outbox_path(keys, campaign_id)
        if path is None:
            where = configured or _only_outbox()
        else:
            where = path if config.is_database_url(path) else Path(path)
        in_use = frozenset(keys) if keys else None
        judged = frozenset(key.partition(" ")[0] for key in keys) | {"bangi", "altercpa"}
        command(_Target(where, configured, in_use, judged), **options)

    for option in reversed(declarations):
        located = option(located)
    return located


def _outbox_files() -> list[Path]:
    """The outboxes in the state folder (not what was moved aside, not their -wal or -shm)."""
    return sorted(state_dir().glob("outbox*.sqlite3"))


def _only_outbox() -> Path:
    found = _outbox_files()
    if len(found) == 1:
        return found[0]
    if not found:
        raise click.ClickException(
            f"no outbox in {state_dir()}: set BANGI_TRACKER_URL (and BANGI_CAMPAIGN_ID) as the"
            " landing has them, or pass --outbox PATH"
        )
    raise click.ClickException(
        f"{len(found)} outboxes in {state_dir()}: set BANGI_TRACKER_URL (and BANGI_CAMPAIGN_ID)"
        " as the landing has them, or pass --outbox PATH (see bangi-landing outbox list)"
    )


def _others(missing: Path) -> str:
    """Where the outboxes are, for the message that ``missing`` is not one."""
    found = [path.name for path in _outbox_files()]
    if not found:
        return ""
    return f"; outboxes in {state_dir()}: {', '.join(found)} (see bangi-landing outbox list)"


@outbox.command("list")
@_configured
def list_(target: _Target) -> None:
    """The outboxes in the state folder: what waits in each, and for whom."""
    found = _outbox_files()
    if not found:
        click.echo(f"No outbox in {state_dir()}.")
        return
    click.echo(f"Outboxes in {state_dir()}:")
    for path in found:
        counts = Outbox(path).counts()
        pending = sum(states["pending"] for states in counts.values())
        dead = sum(states["dead"] for states in counts.values())
        mark = "  (this configuration's)" if path == target.configured else ""
        click.echo(f"  {path.name}: {pending} pending, {dead} dead{mark}")
        for destination in sorted(counts):
            click.echo(f"      {destination}")


@outbox.command()
@_located
def status(target: _Target) -> None:
    """What is waiting, per destination, and why events died.

    Destinations that the configuration given does not use are marked: no
    landing configured so sends their events, and ``bangi-landing outbox purge``
    removes them. Only kinds the options describe are judged: orders only
    with ``--order-url``, and never postback templates, as they may be defined
    in code.
    """
    box = target.open()
    click.echo(f"Outbox: {target.shown}")
    counts = box.counts()
    if not counts:
        click.echo("Nothing waits here: no pending or dead events.")
    unused = target.unused(counts)
    for destination, states in sorted(counts.items()):
        mark = "  [not used by this configuration]" if destination in unused else ""
        click.echo(f"  {destination}: {states['pending']} pending, {states['dead']} dead{mark}")
    oldest = box.oldest_pending()
    if oldest is not None:
        click.echo(f"Oldest pending event: {_age(time.time() - oldest)} old")
    if reasons := box.dead_errors():
        click.echo("Dead events, most common reasons first:")
        for destination, error, count in reasons:
            click.echo(f"  {count:>7}  {destination}  {error}")
    if unused:
        click.echo(
            f"Not used by this configuration: {_n(len(unused), 'destination')}; remove one with"
            " bangi-landing outbox purge --destination URL"
        )
    elif target.in_use is None and counts:
        click.echo(
            "Set BANGI_TRACKER_URL, BANGI_ALTERCPA_URL, BANGI_ORDER_URL (or --tracker-url,"
            " --altercpa-url, --order-url) to mark the destinations your landing does not use."
        )


_yes = click.option("--yes", is_flag=True, help="Do it without asking.")


def _confirm(question: str, yes: bool) -> None:
    """Ask ``question``; without ``yes``, nothing but a yes on stdin goes ahead."""
    if yes:
        return
    try:
        agreed = click.confirm(question)
    except click.Abort:  # stdin closed: nobody to ask
        raise click.ClickException(
            "no answer (stdin is closed): nothing was changed; pass --yes to go ahead"
        ) from None
    if not agreed:
        raise click.Abort


@outbox.command("retry-dead")
@_located
@click.option(
    "--max-age",
    type=click.FloatRange(min=0, min_open=True),
    default=RetryPolicy.max_age / 3600,
    show_default=True,
    help="Hours each revived event gets before it dies again.",
)
def retry_dead(target: _Target, max_age: float) -> None:
    """Send dead events again (after fixing what made them fail)."""
    box = target.open()
    revived = 0
    with click.progressbar(length=box.dead_count(), label="Reviving dead events") as bar:
        for done in box.retry_dead(max_age=max_age * 3600):
            bar.update(done)
            revived += done
    click.echo(f"Revived {_n(revived, 'dead event')}; running landings send them within seconds.")


@outbox.command("purge-dead")
@_located
@_yes
def purge_dead(target: _Target, yes: bool) -> None:
    """Delete dead events for good."""
    box = target.open()
    _confirm(f"Delete {_n(box.dead_count(), 'dead event')} in {target.shown} for good?", yes)
    deleted = 0
    with click.progressbar(length=box.dead_count(), label="Deleting dead events") as bar:
        for done in box.purge_dead():
            bar.update(done)
            deleted += done
    click.echo(f"Deleted {_n(deleted, 'dead event')}.")


@outbox.command()
@_located
@click.option(
    "--destination",
    required=True,
    metavar="URL",
    help="The destination's URL, or its name as ``outbox status`` shows it.",
)
@_yes
def purge(target: _Target, destination: str, yes: bool) -> None:
    """Delete every event, pending or dead, waiting for one destination.

    For a destination no landing sends to any more (``bangi-landing outbox
    status`` marks those the configuration given does not use): its events
    would wait for ever.
    """
    box = target.open()
    counts = box.counts()
    keys = [
        key for key in sorted(counts) if destination in (key, _address(key), _address(key) + "/")
    ]
    if not keys:
        raise click.ClickException(
            f"no events for {destination} in {target.shown}; its destinations:"
            f" {', '.join(sorted(counts)) or 'none'}"
        )
    waiting = sum(counts[key]["pending"] + counts[key]["dead"] for key in keys)
    in_use = [key for key in keys if target.in_use is not None and key in target.in_use]
    warning = " (this configuration uses it!)" if in_use else ""
    _confirm(f"Delete {_n(waiting, 'event')} of {', '.join(keys)}{warning} for good?", yes)
    deleted = 0
    with click.progressbar(length=waiting, label="Deleting events") as bar:
        for key in keys:
            for done in box.purge_destination(key):
                bar.update(done)
                deleted += done
    click.echo(f"Deleted {_n(deleted, 'event')} of {', '.join(keys)}.")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _address(key: str) -> str:
    """A destination key's address (``bangi http://host/`` -> ``http://host``)."""
    return key.partition(" ")[2].rstrip("/")


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return f"{int(seconds)} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
