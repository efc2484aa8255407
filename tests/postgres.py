"""A real PostgreSQL server for the tests: a throwaway cluster in a temporary directory.

The server runs as the ``postgres`` OS user when the tests run as root (CI
does, and PostgreSQL refuses root), listens on 127.0.0.1 only, on a free port,
and trusts loopback connections. ``tests/install-services.sh`` installs
Debian's packages when they are missing; tests that need the server fail,
rather than skip, when it cannot start in CI (``$CI`` set).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from bangi_landing.postgres import PostgresStore

from .utils import free_port


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is not installed here, or would not start."""


def binaries() -> Path:
    """The directory of ``initdb``, ``pg_ctl`` and ``postgres`` (Debian hides them)."""
    for candidate in [
        *sorted(map(str, Path("/usr/lib/postgresql").glob("*/bin")), reverse=True),
        *(str(Path(p).resolve().parent) for p in filter(None, [shutil.which("initdb")])),
    ]:
        if all((Path(candidate) / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return Path(candidate)
    raise PostgresUnavailable("PostgreSQL is not installed (no initdb, pg_ctl, postgres)")


@dataclass
class Server:
    """A running cluster: its URL (database ``bangi``), and how to stop and start it again."""

    directory: Path
    port: int
    bin: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/bangi"

    def database(self, name: str) -> str:
        """The URL of a new, empty database ``name`` on this server."""
        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url.rpartition("/")[0] + f"/{name}"

    def empty(self) -> None:
        """The outbox's tables in ``url``, made and emptied: a test starts as on a new file."""
        store = PostgresStore(self.url)
        store.depth()  # the schema, made on first use
        store.close()
        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute("TRUNCATE bangi_outbox, bangi_delivered, bangi_journeys RESTART IDENTITY")

    def pg_ctl(self, *args: str) -> None:
        log = self.directory / "server.log"
        _run([str(self.bin / "pg_ctl"), "-D", str(self.directory / "data"), "-l", str(log), *args])

    def start(self) -> None:
        self.pg_ctl("-w", "-t", "60", "start")

    def stop(self) -> None:
        self.pg_ctl("-w", "-t", "60", "-m", "fast", "stop")


def _as_postgres() -> list[str]:
    """The command prefix that runs a program as the ``postgres`` user if we are root."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable("running as root without runuser to start PostgreSQL")
    return [runuser, "-u", "postgres", "--"]


def _run(command: list[str]) -> None:
    done = subprocess.run(
        [*_as_postgres(), *command], capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode:
        raise PostgresUnavailable(f"{' '.join(command)} failed: {done.stderr or done.stdout}")


@contextmanager
def postgres_server(directory: Path) -> Iterator[Server]:
    """A fresh cluster in ``directory`` (which must not be under a root-only folder), running."""
    server = Server(directory, free_port(), binaries())
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
        directory.chmod(0o700)
    data = directory / "data"
    _run(
        [
            str(server.bin / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]
    )
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"listen_addresses = '127.0.0.1'\nport = {server.port}\n"
            f"unix_socket_directories = '{directory}'\nfsync = off\nmax_connections = 200\n"
        )
    server.start()
    try:
        _run(
            [
                str(server.bin / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(server.port),
                "-U",
                "postgres",
                "bangi",
            ]
        )
        yield server
    finally:
        # Stopped already: a test stopped it and failed before starting it again.
        with suppress(PostgresUnavailable):
            server.stop()
