"""The ``bangi-landing`` command."""

from __future__ import annotations

from pathlib import Path

import click

from . import __version__
from .serving import Site, serve

_db_option = click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default="bangi-tracker.sqlite3",
    show_default=True,
    help="SQLite file where the tracker keeps its events.",
)


@click.group()
@click.version_option(__version__, prog_name="bangi-landing")
def main() -> None:
    """Connect landing pages to CPA trackers."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=5001, show_default=True, type=click.IntRange(0, 65535))
@_db_option
def tracker(host: str, port: int, db: Path) -> None:
    """Run the bundled tracker (the external landing tracking API and its report)."""
    from .tracker import create_app

    app = create_app(db)
    try:
        serve([Site("Tracker", app, host, port)], echo=lambda line: click.echo(line, err=False))
    finally:
        app.extensions["bangi_tracker"].close()
