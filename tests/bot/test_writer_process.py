"""The SQLite writer process: the same group commit as the writer thread, across a pipe, and it survives its
own death. Units are real ones (module-level functions bound with partial) on a real migrated SQLite file."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import time
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from bot.children import HELPER_NICE
from bot.storage.db import migrate
from bot.storage.writer import ProcessRunner
from tests.bot import writer_units as units


@pytest.fixture
async def runner(tmp_path: Path):  # type: ignore[no-untyped-def]
    url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    await migrate(url)
    started = ProcessRunner(url)
    await started.start()
    yield started
    await started.close()


async def test_units_commit_together_and_fail_alone(runner: ProcessRunner) -> None:
    results = await asyncio.gather(*(runner.run(partial(units.insert_state, n)) for n in range(10, 60)),
                                   runner.run(partial(units.insert_then_fail, 999)), return_exceptions=True)
    assert results[:50] == list(range(10, 60))
    assert isinstance(results[50], ValueError) and str(results[50]) == "this unit fails"
    assert await runner.run(units.state_ids) == list(range(10, 60)), "the failing unit's write was rolled back"
    with pytest.raises(IntegrityError):
        await runner.run(partial(units.insert_state, 10))  # duplicate key: an error for this caller only
    pid = await runner.run(units.writer_pid)
    assert pid != os.getpid(), "units ran in the writer process"
    # …which yields the CPU to the server (bot/children.HELPER_NICE).
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + HELPER_NICE)
    # Ctrl-C in a terminal reaches every process of its group: the writer leaves stopping to the server.
    os.kill(pid, signal.SIGINT)
    await asyncio.sleep(0.3)
    assert await runner.run(units.writer_pid) == pid and runner.restarts == 0


async def test_the_log_reaches_the_database_file_beside_the_writer(runner: ProcessRunner, tmp_path: Path) -> None:
    database = tmp_path / "w.db"
    before = database.stat().st_size
    # About 400 KB: far below the 1,000 pages at which a commit would copy the log into the file itself.
    await asyncio.gather(*(runner.run(partial(units.insert_padding, n)) for n in range(200)))
    deadline = time.monotonic() + 10
    while database.stat().st_size < before + 300_000:
        assert time.monotonic() < deadline, "the write-ahead log was not checkpointed"
        await asyncio.sleep(0.05)


async def test_what_cannot_cross_the_pipe_fails_clearly_and_writes_nothing(runner: ProcessRunner) -> None:
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        await runner.run(lambda conn: None)  # a closure cannot be sent: refused before anything is sent
    with pytest.raises(TypeError, match="cannot be sent back"):
        await runner.run(partial(units.insert_returning_unpicklable, 70))
    assert await runner.run(units.state_ids) == [], "the unit whose result could not be sent back was rolled back"


async def test_a_killed_writer_fails_what_was_in_flight_and_is_replaced(runner: ProcessRunner) -> None:
    first = await runner.run(units.writer_pid)
    os.kill(first, signal.SIGSTOP)  # hold it mid-way so units are surely in flight when it dies
    pending = [asyncio.ensure_future(runner.run(partial(units.insert_state, n))) for n in range(3)]
    await asyncio.sleep(0.2)
    os.kill(first, signal.SIGKILL)
    outcomes = await asyncio.gather(*pending, return_exceptions=True)
    assert all(isinstance(o, OperationalError) for o in outcomes), outcomes  # the webhook's retry path
    second = await asyncio.wait_for(runner.run(units.writer_pid), 30)
    assert second != first and runner.restarts == 1
    assert await runner.run(units.state_ids) == [], "nothing was half-written"
    assert await runner.run(partial(units.insert_state, 5)) == 5


async def test_the_writer_exits_when_the_server_goes(runner: ProcessRunner) -> None:
    pid = await runner.run(units.writer_pid)
    child = runner.child
    assert child is not None and child.pid == pid
    await runner.close()
    assert child.transport.get_returncode() == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
