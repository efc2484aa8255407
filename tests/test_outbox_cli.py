"""``bangi-landing outbox status|retry-dead|purge-dead`` on a real outbox file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bangi_landing.cli import main
from bangi_landing.events import Event
from bangi_landing.outbox import ORDER_DELAY, Outbox

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


def test_an_empty_outbox_says_so(tmp_path: Path) -> None:
    Outbox(tmp_path / "empty.sqlite3")
    code, output = run("status", "--outbox", str(tmp_path / "empty.sqlite3"))
    assert (code, output.splitlines()[-1]) == (0, "Empty: every event was delivered.")


def test_a_missing_outbox_is_an_error_not_a_new_file(tmp_path: Path) -> None:
    code, output = run("status", "--outbox", str(tmp_path / "nope.sqlite3"))
    assert code == 1
    assert "no outbox at" in output
    assert not (tmp_path / "nope.sqlite3").exists()
