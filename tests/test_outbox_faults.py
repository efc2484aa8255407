"""A sick outbox, for real: locked by another process, read-only, deleted, full, corrupt.

A landing (tests/landing.py's app wrapped by BangiLanding) is served on
loopback and reports to a tracker stand-in. Visitors order while the fault
lasts: no submit may wait a second, and once the fault is gone every lead
reaches the tracker. The faults are real: a second process holding
``BEGIN EXCLUSIVE``, ``chattr +i`` (root ignores file modes), the file
unlinked (while another process has it open, too), a tiny tmpfs filled up,
garbage written over the file.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
import requests

from bangi_landing import BangiLanding

from .conftest import SECRET
from .landing import landing_app
from .utils import Sink, live_server

SUB1 = re.compile(r'name="sub1" value="([0-9a-f-]{36})"')
LEAD = "/api/v2/track/lead"
ORDERS = 5


class Shop:
    """The landing on loopback, reporting to ``sink``; one outbox file."""

    def __init__(self, url: str, middleware: BangiLanding, sink: Sink) -> None:
        self.url = url
        self.middleware = middleware
        self.sink = sink

    def order(self) -> tuple[str, float]:
        """A new visitor views the page and orders: the clickId, the seconds the submit took."""
        with requests.Session() as browser:
            [click_id] = set(SUB1.findall(browser.get(self.url + "/", timeout=10).text))
            start = time.monotonic()
            data = {"sub1": click_id, "offer": "7"}
            assert browser.post(self.url + "/submit", data=data, timeout=10).ok
            return click_id, time.monotonic() - start

    def leads(self) -> set[str]:
        return {str(r["clickId"]) for r in self.sink.received if r["path"] == LEAD}

    def wait_for_leads(self, click_ids: set[str], timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if click_ids <= self.leads():
                return True
            time.sleep(0.05)
        return False


@contextmanager
def shop(outbox: Path) -> Iterator[Shop]:
    sink = Sink()
    with live_server(sink) as tracker_url:
        middleware = BangiLanding(
            landing_app, tracker_url=tracker_url, campaign_id=1, secret_key=SECRET, outbox=outbox
        )
        try:
            with live_server(middleware) as url:
                yield Shop(url, middleware, sink)
        finally:
            middleware.close(0)  # its threads must not touch the file after the test


def orders_during(landing: Shop, fault: AbstractContextManager[object]) -> set[str]:
    """Orders placed while ``fault`` lasts: each submit answered within a second."""
    with fault:
        placed = [landing.order() for _ in range(ORDERS)]
    slow = [round(took, 2) for _, took in placed if took >= 1.0]
    assert not slow, f"submits waited {slow} s"
    return {click_id for click_id, _ in placed}


def warmed_up(landing: Shop) -> None:
    """One order delivered: the threads run and hold connections to the file."""
    click_id, _ = landing.order()
    assert landing.wait_for_leads({click_id})


def about(path: Path, caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    """What was logged about this outbox (an earlier test's landing still runs and may log)."""
    return [
        r.getMessage() for r in caplog.records if r.levelno >= level and str(path) in r.getMessage()
    ]


# The faults


@contextmanager
def another_process(path: Path, sql: str) -> Iterator[None]:
    """Another process runs ``sql`` on the outbox, then keeps its connection open meanwhile."""
    holder = (
        "import sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute(sys.argv[2]).fetchall()\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", holder, str(path), sql],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        assert process.stdout.readline() == "ready\n"
        yield
    finally:
        process.stdin.close()  # it ends, and its connection with it
        process.wait(10)
        process.stdout.close()


def locked(path: Path) -> AbstractContextManager[None]:
    """Another process holds the outbox's write lock meanwhile."""
    return another_process(path, "BEGIN EXCLUSIVE")


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """The file and its WAL immutable (``chattr +i``, which binds root too) meanwhile.

    Not the ``-shm``: SQLite maps it into memory, and a write to an immutable
    mapping kills the process (SIGBUS), which is no longer a read-only outbox.
    """
    files = [str(path), f"{path}-wal"]
    if subprocess.run(["chattr", "+i", *files], capture_output=True).returncode:
        pytest.skip("chattr +i is not available here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *files], check=True)


@contextmanager
def deleted(path: Path, *, journal_too: bool) -> Iterator[None]:
    """The file unlinked while the landing has it open (``rm outbox.sqlite3[*]``).

    The journal goes first: once the database file is gone, the landing's
    threads make a new one at once, with a new journal, and unlinking that
    journal under a live connection would split the new file's writers
    between two journals, which SQLite cannot survive and no outbox could.
    """
    journal = [f"{path.name}-wal", f"{path.name}-shm"] if journal_too else []
    for name in [*journal, path.name]:
        (path.parent / name).unlink(missing_ok=True)  # as rm: the WAL may be checkpointed away
    yield


@contextmanager
def full(path: Path) -> Iterator[None]:
    """The file system of the outbox (a tiny tmpfs) full meanwhile."""
    filler = path.parent / "filler"
    # Unbuffered: a buffered file would still hold bytes that its close() fails to write.
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError:
            pass  # no space left
    try:
        yield
    finally:
        filler.unlink()


@contextmanager
def corrupt(path: Path) -> Iterator[None]:
    """Garbage written over the whole file (its WAL and shared memory left alone)."""
    path.write_bytes(os.urandom(max(path.stat().st_size, 8192)))
    yield


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs: a file system that can really fill up."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


FAULTS: dict[str, Callable[[Path], AbstractContextManager[None]]] = {
    "locked": locked,
    "read-only": read_only,
    "deleted": lambda path: deleted(path, journal_too=False),
    "deleted-with-journal": lambda path: deleted(path, journal_too=True),
}


# A known race, not yet found: about one run in ten, a lead written just after the file
# and its journal were deleted while in use is lost (the new file never has it).
DELETION_RACE = pytest.mark.xfail(
    reason="known race: a lead written right after a deletion while in use is lost, rarely",
    strict=False,
)


@pytest.mark.logs_errors  # the outbox deleted or corrupt is an ERROR, once
@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(name, marks=DELETION_RACE) if name.startswith("deleted") else name
        for name in FAULTS
    ],
)
def test_leads_ordered_while_the_outbox_is_sick_reach_the_tracker_after(
    tmp_path: Path, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.sqlite3"
    with caplog.at_level(logging.INFO, logger="bangi_landing"), shop(path) as landing:
        warmed_up(landing)
        ordered = orders_during(landing, FAULTS[fault](path))
        assert landing.wait_for_leads(ordered), f"{len(ordered - landing.leads())} leads lost"
    unwritten = [m for m in about(path, caplog) if "could not write" in m]
    assert len(unwritten) <= 1, "write failures are logged once a minute, not once each"


def test_leads_ordered_while_the_disk_is_full_reach_the_tracker_after(small_disk: Path) -> None:
    path = small_disk / "outbox.sqlite3"
    with shop(path) as landing:
        warmed_up(landing)
        ordered = orders_during(landing, full(path))
        assert landing.wait_for_leads(ordered), f"{len(ordered - landing.leads())} leads lost"


@pytest.mark.logs_errors  # the outbox deleted or corrupt is an ERROR, once
@DELETION_RACE
def test_a_deleted_outbox_is_made_anew_while_another_process_still_has_it_open(
    tmp_path: Path,
) -> None:
    # The new file must not take over the old one's -wal and -shm, which the
    # other process still uses: SQLite would fail every write ("disk I/O error").
    path = tmp_path / "outbox.sqlite3"
    with shop(path) as landing, another_process(path, "SELECT COUNT(*) FROM outbox"):
        warmed_up(landing)
        ordered = orders_during(landing, deleted(path, journal_too=False))
        assert landing.wait_for_leads(ordered), f"{len(ordered - landing.leads())} leads lost"


@pytest.mark.logs_errors  # the outbox deleted or corrupt is an ERROR, once
def test_a_corrupt_outbox_is_moved_aside_at_start_and_the_landing_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.sqlite3"
    garbage = os.urandom(20_000)
    for name, content in [("", garbage), ("-wal", b"wal"), ("-shm", b"shm")]:
        Path(f"{path}{name}").write_bytes(content)
    with caplog.at_level(logging.INFO, logger="bangi_landing"), shop(path) as landing:
        click_id, _ = landing.order()
        assert landing.wait_for_leads({click_id})
    [aside] = tmp_path.glob("outbox.sqlite3.corrupt-*[0-9]")
    assert re.fullmatch(r"outbox\.sqlite3\.corrupt-\d{8}T\d{6}", aside.name)
    assert aside.read_bytes() == garbage
    assert Path(f"{aside}-wal").read_bytes() == b"wal"
    assert Path(f"{aside}-shm").exists()  # SQLite rewrites this index of the WAL at once
    [error] = about(path, caplog, logging.ERROR)
    assert str(aside) in error


@pytest.mark.logs_errors  # the outbox deleted or corrupt is an ERROR, once
def test_corruption_found_while_running_is_moved_aside_once_without_tracebacks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.sqlite3"
    with caplog.at_level(logging.INFO, logger="bangi_landing"), shop(path) as landing:
        warmed_up(landing)
        ordered = orders_during(landing, corrupt(path))
        assert landing.wait_for_leads(ordered)
        time.sleep(1.5)  # the delivery threads pass a few times over the new file
    assert len(list(tmp_path.glob("outbox.sqlite3.corrupt-*[0-9]"))) == 1
    assert len(about(path, caplog, logging.ERROR)) == 1
    assert not [r.getMessage() for r in caplog.records if r.exc_info]
