"""SQLite files shared by processes: the outbox and the bundled tracker's database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bangi_landing.outbox import Outbox
from bangi_landing.tracker.store import TrackerStore

from .forked import fresh_context, open_together


@pytest.mark.parametrize("opener", [Outbox, TrackerStore])
def test_workers_booting_together_can_all_create_the_same_new_file(
    tmp_path: Path, opener: Any
) -> None:
    # SQLite answers "database is locked" at once, without waiting, to a second
    # process switching a new file to WAL: gunicorn workers failed to boot.
    context = fresh_context()
    for round in range(20):
        path = str(tmp_path / f"new-{round}.sqlite3")
        start = context.Barrier(6)
        processes = [
            context.Process(target=open_together, args=(opener, path, start)) for _ in range(6)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(30)
        assert [process.exitcode for process in processes] == [0] * 6
