"""Group commit: many units per transaction, each caller gets its own result, a failing unit fails alone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, text

from bot.storage.db import migrate
from bot.storage.runner import GroupCommitRunner


async def test_units_commit_together_and_fail_alone(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'g.db'}"
    await migrate(url)
    runner = GroupCommitRunner(url)

    def insert(n: int) -> object:
        def unit(conn: Connection) -> int:
            conn.execute(text("INSERT INTO kb_state (id, generation, updated_at) VALUES (:n, 0, '2026-01-01')"),
                         {"n": n})
            return n
        return unit

    def broken(conn: Connection) -> None:
        conn.execute(text("INSERT INTO kb_state (id, generation, updated_at) VALUES (999, 0, '2026-01-01')"))
        raise ValueError("this unit fails")

    try:
        results = await asyncio.gather(*(runner.run(insert(n)) for n in range(10, 60)), runner.run(broken),
                                       return_exceptions=True)
        assert results[:50] == list(range(10, 60))
        assert isinstance(results[50], ValueError)
        rows = await runner.run(lambda conn: conn.execute(text("SELECT id FROM kb_state ORDER BY id")).scalars().all())
        assert rows == list(range(10, 60)), "the failing unit's write was rolled back, nobody else's"
        assert runner.batches < runner.units, "several units shared a transaction"
        with pytest.raises(Exception):
            await runner.run(insert(10))  # duplicate key: an error for this caller only
    finally:
        await runner.close()


async def test_driver_fast_path_stores_what_sqlalchemy_would(tmp_path: Path) -> None:
    """Inserts and updates on the driver's cursor: same values read back through SQLAlchemy (UTC datetimes,
    JSON, booleans), RETURNING ids, rowcounts, and SQLAlchemy's exception types for driver errors."""
    from datetime import UTC, datetime

    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError

    from bot.storage.models import Conversation, User
    from bot.storage.statements import execute, run_insert, run_update
    from bot.storage.store import CONVERSATIONS, USERS

    url = f"sqlite+aiosqlite:///{tmp_path / 'f.db'}"
    await migrate(url)
    runner = GroupCommitRunner(url)
    seen = datetime(2026, 11, 28, 6, 30, 15, 123456, tzinfo=UTC)

    def write(conn: Connection) -> tuple[int, int, int]:
        user_id = run_insert(conn, USERS, dict(openid="oFast", first_seen=seen, last_seen=seen, subscribed=True,
                                               language="zh", cs_quota_left=5), "sqlite", returning=True).scalar_one()
        conversation = run_insert(conn, CONVERSATIONS, dict(user_id=user_id, state="idle", language="zh",
                                                            context={"choices": ["visa", "护照"]}, updated_at=seen),
                                  "sqlite", returning=True).scalar_one()
        changed = run_update(conn, USERS, user_id, dict(subscribed=False, country="TH")).rowcount
        return user_id, conversation, changed

    try:
        user_id, conversation_id, changed = await runner.run(write)
        assert changed == 1

        def read(conn: Connection) -> tuple[object, ...]:
            user = conn.execute(select(User.first_seen, User.subscribed, User.country).where(User.id == user_id)).one()
            context = conn.execute(select(Conversation.context).where(Conversation.id == conversation_id)).scalar_one()
            return user.first_seen, user.subscribed, user.country, context

        assert await runner.run(read) == (seen, False, "TH", {"choices": ["visa", "护照"]})

        def both(conn: Connection) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
            from bot.storage.store import READ_CONVERSATION
            direct = [tuple(r) for r in execute(conn, READ_CONVERSATION, {"user_id": user_id})]
            through = [tuple(r) for r in conn.execute(READ_CONVERSATION, {"user_id": user_id})]
            return direct, through

        direct, through = await runner.run(both)
        assert direct == through and direct[0][4] == {"choices": ["visa", "护照"]}
        with pytest.raises(IntegrityError):
            await runner.run(lambda conn: run_insert(conn, CONVERSATIONS, dict(
                user_id=user_id, state="idle", language="zh", context={}, updated_at=seen), "sqlite"))
    finally:
        await runner.close()


async def test_a_message_recorded_with_preload_carries_exactly_what_load_turn_reads(tmp_path: Path) -> None:
    """``record_inbound(…, preload)`` reads the turn's starting point in the recording transaction: the same
    conversation, generation and earlier open messages that ``load_turn`` reads right after."""
    from datetime import timedelta

    from bot.storage.store import Store
    from bot.wechat.messages import Inbound

    url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    await migrate(url)
    runner = GroupCommitRunner(url)
    store = Store(runner, "sqlite")
    window = timedelta(hours=6)

    def message(n: int) -> Inbound:
        return Inbound(account="gh", openid="oPreload", create_time=1_700_000_000 + n, msg_type="text",
                       msg_id=str(6_100_000 + n), text=f"第{n}条")

    try:
        await store.heartbeat()  # this process is alive: its leases are real
        first = await store.record_inbound(message(1), timedelta(seconds=30), window)
        assert first.loaded is not None and first.loaded.conversation.state == "idle"
        assert first.loaded == await store.load_turn(first.user_id, first.message_id, window)
        second = await store.record_inbound(message(2), timedelta(seconds=30), window)  # the first is still open
        assert second.loaded is not None and second.loaded.busy == [first.message_id]
        assert second.loaded == await store.load_turn(second.user_id, second.message_id, window)
        again = await store.record_inbound(message(2), timedelta(seconds=30), window)
        assert not again.is_new and again.loaded is None  # a re-sent message starts nothing
        plain = await store.record_inbound(message(3), timedelta(seconds=30))
        assert plain.loaded is None
    finally:
        await runner.close()


async def test_the_users_lock_tells_whether_anyone_held_it_since_a_moment() -> None:
    import time

    from bot.storage.locks import UserLocks

    locks = UserLocks()
    before = time.monotonic()
    async with locks.hold(7):
        assert locks.untouched_since(7, before)  # only the caller holds it
    async with locks.hold(7):
        assert not locks.untouched_since(7, before)  # someone (the first block) held it since
        assert locks.untouched_since(8, before)  # another user's lock says nothing about this one
    after = time.monotonic()
    async with locks.hold(7):
        assert locks.untouched_since(7, after)
    assert not locks.untouched_since(7, after - 3600)  # too long ago to know


@given(moment=st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1),
                           timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)),
                                                      timezone(timedelta(hours=-9, minutes=-30))])))
def test_utc_datetimes_are_bound_as_the_text_sqlalchemy_would_store(moment: datetime) -> None:
    """The writer binds UTC datetimes in one step; it must be exactly SQLAlchemy's own SQLite text for the
    same instant in UTC, whatever zone the value came in."""
    from sqlalchemy import DateTime
    from sqlalchemy.dialects import sqlite

    from bot.storage.models import UTCDateTime

    dialect = sqlite.dialect()
    ours = UTCDateTime().bind_processor(dialect)
    theirs = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert ours(moment) == theirs(moment.astimezone(UTC).replace(tzinfo=None))
    with pytest.raises(ValueError):
        ours(moment.replace(tzinfo=None))
    assert ours(None) is None
