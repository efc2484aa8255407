"""``bangi-landing outbox ...`` on real outbox files, found as the landing finds them."""

from __future__ import annotations

import re
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from werkzeug.test import Client

from bangi_landing import BangiLanding
from bangi_landing.cli import main
from bangi_landing.events import Event
from bangi_landing.outbox import Outbox
from bangi_landing.postgres import PostgresStore
from bangi_landing.sender import BackgroundSender
from bangi_landing.stores import ORDER_DELAY

from .conftest import SECRET
from .landing import landing_app
from .postgres import Server

BANGI = "bangi http://127.0.0.1:1/"


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    """Three pending events and 1,500 dead ones (two reasons)."""
    box = Outbox(tmp_path / "outbox.sqlite3")
    old = time.time() - 2 * 3600 - 300
    box.add([Event("click", f"c{i}", {}, created_at=old) for i in range(3)], [BANGI], max_age=9e9)
    box.add([Event("lead", f"l{i}", {}) for i in range(1500)], [BANGI], max_age=9e9)
    box.clock = lambda: time.time() + ORDER_DELAY  # the leads are due
    claims = box.claim(BANGI, "t", limit=5000, until=time.time() + 60)
    leads = [c for c in claims if c.event.kind == "lead"]
    box.finish("t", release=[c.id for c in claims if c.event.kind == "click"])
    box.finish("t", dead=[(c.id, "HTTP 400: bad" if c.id % 3 else "expired") for c in leads])
    return box


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["outbox", *args])
    return result.exit_code, result.output


def test_status_shows_what_waits_and_why_events_died(outbox: Outbox) -> None:
    code, output = run("status", "--outbox", str(outbox.path))
    assert code == 0
    assert f"{BANGI}: 3 pending, 1500 dead" in output
    assert "Oldest pending event: 2 h 5 min old" in output
    assert f"   1000  {BANGI}  HTTP 400: bad" in output
    assert f"    500  {BANGI}  expired" in output


def test_status_reads_bangi_outbox_from_the_environment(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANGI_OUTBOX", str(outbox.path))
    assert "3 pending" in run("status")[1]


def test_retry_dead_makes_them_pending_again(outbox: Outbox) -> None:
    code, output = run("retry-dead", "--outbox", str(outbox.path), "--max-age", "1")
    assert code == 0
    assert "Reviving dead events" in output
    assert "Revived 1500 dead events;" in output
    assert outbox.counts() == {BANGI: {"pending": 1503, "dead": 0}}
    expires = {row[0] for row in outbox._all("SELECT expires_at FROM outbox WHERE kind='lead'")}
    assert all(abs(t - (time.time() + 3600)) < 60 for t in expires)


def test_purge_dead_asks_first(outbox: Outbox) -> None:
    refused = CliRunner().invoke(
        main, ["outbox", "purge-dead", "--outbox", str(outbox.path)], input="n\n"
    )
    assert refused.exit_code == 1
    assert outbox.dead_count() == 1500
    assert run("purge-dead", "--outbox", str(outbox.path), "--yes")[0] == 0
    assert outbox.counts() == {BANGI: {"pending": 3, "dead": 0}}


def test_an_empty_outbox_says_so_without_calling_its_events_delivered(outbox: Outbox) -> None:
    code, output = run("purge-dead", "--outbox", str(outbox.path), "--yes")
    assert (code, output.splitlines()[-1]) == (0, "Deleted 1500 dead events.")
    assert run("purge", "--outbox", str(outbox.path), "--destination", BANGI, "--yes")[0] == 0
    code, output = run("status", "--outbox", str(outbox.path))
    assert code == 0
    assert "delivered" not in output  # they were deleted, not delivered
    assert output.splitlines()[-1] == "Nothing waits here: no pending or dead events."


def test_a_missing_outbox_is_an_error_not_a_new_file(tmp_path: Path) -> None:
    code, output = run("status", "--outbox", str(tmp_path / "nope.sqlite3"))
    assert code == 1
    assert "no outbox at" in output
    assert not (tmp_path / "nope.sqlite3").exists()


def test_purge_dead_refuses_without_an_answer(outbox: Outbox) -> None:
    code, output = run("purge-dead", "--outbox", str(outbox.path))  # stdin: nothing
    assert code == 1
    assert "pass --yes" in output
    assert outbox.dead_count() == 1500


# One outbox per landing, and the CLI finding it (issue 14.4)

OLD = "bangi http://127.0.0.1:7/"  # where a landing configured otherwise sent


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Default settings: no BANGI_OUTBOX, the state folder in a temporary home."""
    monkeypatch.delenv("BANGI_OUTBOX")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    for name in ("BANGI_TRACKER_URL", "BANGI_ALTERCPA_URL", "BANGI_CAMPAIGN_ID"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home" / ".local" / "state" / "bangi-landing"


def landing(tracker: str, campaign_id: int) -> BangiLanding:
    # The tracker refuses connections: the landing's events wait in its outbox.
    return BangiLanding(
        landing_app, tracker_url=tracker, campaign_id=campaign_id, secret_key=SECRET
    )


def visit(middleware: BangiLanding) -> str:
    """A new visitor's page view, through the middleware: the clickId of its click."""
    response = Client(middleware).get("/")
    [click_id] = set(
        re.findall(r'name="sub1" value="([0-9a-f-]{36})"', response.get_data(as_text=True))
    )
    assert isinstance(middleware.sender, BackgroundSender)
    middleware.sender.flush(5)  # written to the outbox; nobody listens at the tracker's port
    return click_id


def bangi_key(url: str) -> str:
    """The outbox's name for the Bangi tracker at ``url``."""
    return f"bangi {url}/"


def run_with(env: dict[str, str], *args: str, input: str | None = None) -> tuple[int, str]:
    """``run`` with these environment variables set."""
    result = CliRunner().invoke(main, ["outbox", *args], env=env, input=input)
    return result.exit_code, result.output


def clicks_in(path: Path) -> set[str]:
    return {row[0] for row in Outbox(path)._all("SELECT click_id FROM outbox")}


def test_landings_of_one_user_keep_separate_outboxes_and_workers_share_one(state: Path) -> None:
    tracker = "http://127.0.0.1:9"
    first, second = landing(tracker, 1), landing(tracker, 2)
    a_worker_of_the_first = landing(tracker, 1)
    ones = {visit(first), visit(a_worker_of_the_first)}
    two = visit(second)
    files = sorted(state.glob("outbox-*.sqlite3"))
    assert len(files) == 2
    assert all(re.fullmatch(r"outbox-[0-9a-f]{12}\.sqlite3", path.name) for path in files)
    assert {frozenset(clicks_in(path)) for path in files} == {frozenset(ones), frozenset({two})}
    # The CLI finds a landing's outbox from the same settings.
    env = {"BANGI_TRACKER_URL": tracker, "BANGI_CAMPAIGN_ID": "2"}
    code, output = run_with(env, "status")
    assert code == 0
    [file_of_two] = [path for path in files if clicks_in(path) == {two}]
    assert f"Outbox: {file_of_two}" in output
    assert f"{bangi_key(tracker)}: 1 pending, 0 dead" in output


def test_status_marks_what_the_configuration_does_not_use_and_purge_removes_it(
    state: Path,
) -> None:
    tracker = "http://127.0.0.1:9"
    middleware = landing(tracker, 1)
    visit(middleware)
    [path] = state.glob("outbox-*.sqlite3")
    stale = [Event("click", f"old-{i}", {}) for i in range(7)]
    Outbox(path).add(stale, [OLD], max_age=9e9)  # left by a landing configured otherwise
    env = {"BANGI_TRACKER_URL": tracker, "BANGI_CAMPAIGN_ID": "1"}
    code, output = run_with(env, "status")
    assert code == 0
    assert f"  {bangi_key(tracker)}: 1 pending, 0 dead\n" in output
    assert f"  {OLD}: 7 pending, 0 dead  [not used by this configuration]\n" in output
    # Asked first: no answer, or no, changes nothing.
    code, output = run_with(env, "purge", "--destination", "http://127.0.0.1:7/")
    assert (code, "pass --yes" in output) == (1, True)
    assert run_with(env, "purge", "--destination", OLD, input="n\n")[0] == 1
    assert Outbox(path).counts()[OLD]["pending"] == 7
    code, output = run_with(env, "purge", "--destination", "http://127.0.0.1:7", input="y\n")
    assert code == 0
    assert f"Delete 7 events of {OLD} for good?" in output
    assert output.splitlines()[-1] == f"Deleted 7 events of {OLD}."
    assert Outbox(path).counts() == {bangi_key(tracker): {"pending": 1, "dead": 0}}
    code, output = run_with(env, "status")
    assert "not used" not in output


def test_list_shows_every_outbox_and_which_is_this_configurations(state: Path) -> None:
    visit(landing("http://127.0.0.1:9", 1))
    visit(landing("http://127.0.0.1:8", 1))
    code, output = run_with(
        {"BANGI_TRACKER_URL": "http://127.0.0.1:8", "BANGI_CAMPAIGN_ID": "1"}, "list"
    )
    assert code == 0
    assert output.count(": 1 pending, 0 dead") == 2
    assert output.count("(this configuration's)") == 1
    mine = output.split("(this configuration's)")[1].splitlines()[1]
    assert mine.strip() == "bangi http://127.0.0.1:8/"


def test_without_settings_the_only_outbox_is_used_and_several_are_an_error(state: Path) -> None:
    visit(landing("http://127.0.0.1:9", 1))
    assert "1 pending" in run_with({}, "status")[1]
    visit(landing("http://127.0.0.1:9", 2))
    code, output = run_with({}, "status")
    assert code == 1
    assert "2 outboxes in" in output
    assert "--outbox PATH" in output


# On PostgreSQL (tests/postgres.py)


def test_the_commands_work_on_postgresql_and_never_print_the_password(
    postgres: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    postgres.empty()
    with psycopg.connect(postgres.url, autocommit=True) as db:
        db.execute("ALTER USER postgres PASSWORD 's3cret'")  # trust auth: taken, not asked
    url = postgres.url.replace("postgres@", "postgres:s3cret@")
    store = PostgresStore(url)
    store.add([Event("click", f"c{i}", {}) for i in range(3)], [BANGI], max_age=9e9)
    store.finish(
        "t",
        dead=[
            (c.id, "HTTP 400: bad")
            for c in store.claim(BANGI, "t", limit=2, until=time.time() + 60)
        ],
    )
    code, output = run("status", "--outbox", url)
    assert code == 0, output
    assert f"{BANGI}: 1 pending, 2 dead" in output
    assert "postgres:***@127.0.0.1" in output
    assert run("retry-dead", "--outbox", url)[0] == 0
    assert store.counts() == {BANGI: {"pending": 3, "dead": 0}}
    monkeypatch.setenv("BANGI_OUTBOX", url)  # as the landing has it
    code, output = run("purge", "--destination", BANGI, "--yes")
    assert (code, output.splitlines()[-1]) == (0, f"Deleted 3 events of {BANGI}.")
    assert store.counts() == {}
    assert "s3cret" not in run("purge-dead", "--yes")[1] + run("status")[1]
    store.close()
