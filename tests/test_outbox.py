"""The SQLite store across processes: many claiming from one file, forks while writing.

What every store promises is tested on this one too, in tests/test_store_contract.py.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

from bangi_landing.events import Event
from bangi_landing.outbox import Outbox

from .forked import fork_while_writing, fresh_context

DAY = 24 * 3600.0
BANGI = "bangi http://127.0.0.1:1/"


def click(n: int = 0) -> Event:
    return Event("click", f"8f1b5c6e-7a3d-4d20-a7f1-{n:012d}", {"campaignId": 1}, created_at=1e6)


def _claim_everything(
    path: str, name: str, start: Any, results: multiprocessing.Queue[list[int]]
) -> None:
    outbox = Outbox(path)
    start.wait(60)  # all together: a process that starts late could find nothing left
    mine: list[int] = []
    while claims := outbox.claim(BANGI, name, limit=7, until=outbox.clock() + 600):
        mine += [c.id for c in claims]
        outbox.finish(name, sent=[c.id for c in claims])
    results.put(mine)


def test_processes_sharing_a_file_never_claim_the_same_row(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    outbox = Outbox(path)
    for start in range(0, 2000, 500):
        outbox.add([click(i) for i in range(start, start + 500)], [BANGI], max_age=DAY)
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[list[int]] = context.Queue()
    start = context.Barrier(4)
    processes = [
        context.Process(target=_claim_everything, args=(path, f"p{i}", start, results))
        for i in range(4)
    ]
    for process in processes:
        process.start()
    claimed = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(10)
    every = [row for ids in claimed for row in ids]
    assert len(every) == len(set(every)) == 2000
    assert sum(1 for ids in claimed if ids) >= 2  # they really did share the work
    assert outbox.depth() == 0


def test_a_fork_while_another_thread_writes_hangs_neither_parent_nor_child(
    tmp_path: Path,
) -> None:
    # In a fresh process whose only other thread is the writer (see tests/forked.py);
    # a second generation of forks, like a gunicorn worker forking in its turn.
    pool = fresh_context().Pool(1)
    try:
        run = pool.apply_async(fork_while_writing, (tmp_path / "outbox.sqlite3",))
        assert run.get(timeout=60) == [0] * 20
    finally:
        pool.terminate()
