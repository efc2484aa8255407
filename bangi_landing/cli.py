"""The ``bangi-landing`` command."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import click

from . import __version__
from .outbox import Outbox, default_path
from .retry import RetryPolicy
from .serving import Site, serve

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


@click.group()
@click.version_option(__version__, prog_name="bangi-landing")
def main() -> None:
    """Connect landing pages to CPA trackers."""


@main.command()
@_host
@click.option("--port", default=5001, show_default=True, type=_port)
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


@main.command()
@_host
@click.option("--port", default=5000, show_default=True, type=_port, help="The landing's port.")
@click.option("--tracker-port", default=5001, show_default=True, type=_port)
@_db
@_outbox
def demo(host: str, port: int, tracker_port: int, db: Path, outbox: Path) -> None:
    """Run the demo landing, wrapped in bangi-landing, and the bundled tracker.

    Open the landing, order something, then watch the click and the lead in the
    tracker's report. The fake CPA network at /network sends its postbacks to
    the landing's relay, which passes each status on to the tracker and to the
    fake AlterCPA Pro (open the landing with ``?click=...`` for Pro to see it).
    """
    from demo_site import create_app as create_landing

    from .statuses import StatusMapper
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
        landing = create_landing(network_url=f"{tracker_site.url}/network/orders")
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
            outbox=outbox,
        )
        serve([landing_site, tracker_site], echo=click.echo)
    finally:
        store.close()


@main.group()
def outbox() -> None:
    """Look after the outbox where a landing's events wait for the tracker."""


_outbox_path = click.option(
    "--outbox",
    "path",
    type=_FILE,
    default=lambda: str(default_path()),
    show_default="$BANGI_OUTBOX or ~/.local/state/bangi-landing/outbox.sqlite3",
    help="The outbox file.",
)


def _open(path: Path) -> Outbox:
    if not path.exists():
        raise click.ClickException(f"no outbox at {path}")
    return Outbox(path)


@outbox.command()
@_outbox_path
def status(path: Path) -> None:
    """What is waiting, per destination, and why events died."""
    box = _open(path)
    click.echo(f"Outbox: {path}")
    counts = box.counts()
    if not counts:
        click.echo("Empty: every event was delivered.")
    for destination, states in sorted(counts.items()):
        click.echo(f"  {destination}: {states['pending']} pending, {states['dead']} dead")
    oldest = box.oldest_pending()
    if oldest is not None:
        click.echo(f"Oldest pending event: {_age(time.time() - oldest)} old")
    if reasons := box.dead_errors():
        click.echo("Dead events, most common reasons first:")
        for destination, error, count in reasons:
            click.echo(f"  {count:>7}  {destination}  {error}")


@outbox.command("retry-dead")
@_outbox_path
@click.option(
    "--max-age",
    type=click.FloatRange(min=0, min_open=True),
    default=RetryPolicy.max_age / 3600,
    show_default=True,
    help="Hours each revived event gets before it dies again.",
)
def retry_dead(path: Path, max_age: float) -> None:
    """Send dead events again (after fixing what made them fail)."""
    box = _open(path)
    with click.progressbar(length=box.dead_count(), label="Reviving dead events") as bar:
        for done in box.retry_dead(max_age=max_age * 3600):
            bar.update(done)
    click.echo("Running landings pick them up within seconds.")


@outbox.command("purge-dead")
@_outbox_path
@click.confirmation_option(prompt="Delete every dead event for good?")
def purge_dead(path: Path) -> None:
    """Delete dead events for good."""
    box = _open(path)
    with click.progressbar(length=box.dead_count(), label="Deleting dead events") as bar:
        for done in box.purge_dead():
            bar.update(done)


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return f"{int(seconds)} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
