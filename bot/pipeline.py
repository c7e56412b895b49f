"""The message pipeline: record → lock → classify → route → handle → save → deliver.

A webhook request waits for its message's answer only within the time budget. Retries of the
same message (WeChat re-sends after 5 s) join the same in-flight work instead of starting new
work. Whatever is not answered passively goes through the outbox.

One user's messages are handled one at a time and in the order they were recorded (message id), also
when several processes share a PostgreSQL database and the user's messages reach different processes:
a message is handled under the user's lock (bot/storage/locks.py) and only once every earlier message of
that user is answered. An earlier one that a live process holds is waited for; one whose worker failed or
died is taken over and handled first, here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeAlias

from bot.outbox import Outbox
from bot.storage.locks import UserLocks
from bot.storage.store import ConversationState, Loaded, Recorded, Store
from bot.wechat.messages import Inbound
from handlers.base import Outcome, Turn
from handlers.texts import HOTLINE_EN, HOTLINE_ZH
from nlu.types import Understanding

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=30)
SAVE_MARGIN = 0.15  # seconds kept back for saving and rendering before a waiter's deadline
POLL = 0.05
ORDER_POLL = 0.02  # how often a message waiting for an earlier one of its user looks again
RECOVERY_WINDOW = timedelta(hours=6)  # unanswered messages older than this are neither recovered nor waited for

SAFE_REPLY = ("抱歉，系统暂时出了点问题，您的消息已收到。如有危险请先拨打当地报警电话。\n" + HOTLINE_ZH +
              "\n\nSorry, something went wrong on our side. If you are in danger call local police first. " +
              HOTLINE_EN)

Respond = Callable[[Turn], Awaitable[Outcome]]
# A classification under way (a task, or the NLU worker's future: None in it means classify in the server).
Early: TypeAlias = "asyncio.Future[Understanding | None]"
TurnFactory = Callable[[Inbound, ConversationState, int, "Early | None"], Awaitable[Turn]]
Classify = Callable[[Inbound], "Early | None"]


@dataclass
class Slot:
    """Where a message's passive reply meets the HTTP requests waiting for it (WeChat's first try and its
    retries), each within its own deadline.

    A waiter's future is set directly by ``finish``, so the request resumes in the loop pass after the reply
    is ready (``asyncio.wait`` on one shared future took two passes more; each is about a millisecond under load)."""

    waiting: list[asyncio.Future[str | None]] = field(default_factory=list)
    deadline: float = 0.0  # the latest deadline of any request that waited
    done: bool = False
    value: str | None = None  # the passive reply, once done (None: the requests answer ``success``)

    @property
    def waiters(self) -> int:
        """Requests still waiting within their deadline."""
        return len(self.waiting)

    def finish(self, value: str | None) -> None:
        """Give every waiting request ``value`` (only the first call counts)."""
        if self.done:
            return
        self.done, self.value = True, value
        waiting, self.waiting = self.waiting, []
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(value)

    async def wait(self, deadline: float) -> str | None:
        """The passive reply, or None once ``deadline`` (monotonic) has passed without one."""
        if self.done:
            return self.value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[str | None] = loop.create_future()
        self.waiting.append(waiter)
        self.deadline = max(self.deadline, deadline)
        timer = loop.call_later(remaining, self._give_up, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            if waiter in self.waiting:  # the request itself was cancelled
                self.waiting.remove(waiter)

    def _give_up(self, waiter: asyncio.Future[str | None]) -> None:
        if not waiter.done():
            self.waiting.remove(waiter)
            waiter.set_result(None)


class Pipeline:
    """Runs each inbound message once, in order per user, and delivers its answer."""

    def __init__(self, store: Store, make_turn: TurnFactory, respond: Respond, *, budget: float,
                 outbox: Outbox | None = None, locks: UserLocks | None = None,
                 on_handled: Callable[[str, str | None, str | None], None] | None = None,
                 classify: Classify | None = None) -> None:
        self.store = store
        self.classify = classify
        self.on_handled = on_handled
        self.make_turn = make_turn
        self.respond = respond
        self.budget = budget
        self.outbox = outbox
        self._slots: dict[int, Slot] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.locks = locks or UserLocks()

    async def handle(self, msg: Inbound, arrived: float) -> str | None:
        """Record ``msg`` and return its passive reply, or None to answer ``success``."""
        deadline = arrived + self.budget
        # Classification needs only the text: started now, it overlaps recording the message and waiting
        # for the user's turn (a retry of a message already in hand drops it).
        early = self.classify(msg) if self.classify is not None else None
        try:
            # With one process's locks deciding (SQLite), the turn's starting point is read as the message is
            # recorded, and used if nobody has held the user's lock since (see _in_order).
            asked = time.monotonic()
            recorded = await self.store.record_inbound(msg, LEASE, None if self.locks.shared else RECOVERY_WINDOW)
            slot = self._slots.get(recorded.message_id)
            if slot is None:
                if recorded.is_new or await self._take_over(recorded):
                    slot, early = self._start(msg, recorded, early, asked), None
                elif recorded.status == "answered":
                    return await self._stored_passive(recorded.message_id)
                else:
                    return await self._poll_elsewhere(msg, recorded, deadline)
            return await slot.wait(deadline)
        finally:
            _drop(early)

    async def _take_over(self, recorded: Recorded) -> bool:
        """An unanswered duplicate with no live worker anywhere (its lease ran out): handle it here."""
        return recorded.status == "received" and await self.store.claim(recorded.message_id, LEASE)

    def _start(self, msg: Inbound, recorded: Recorded, early: Early | None = None,
               asked: float = 0.0) -> Slot:
        slot = Slot()
        self._slots[recorded.message_id] = slot
        task = asyncio.create_task(self._run(msg, recorded, slot, early, asked), name=f"message-{recorded.message_id}")
        self._tasks.add(task)  # a strong reference, or the task may be collected mid-flight
        task.add_done_callback(self._tasks.discard)
        return slot

    async def _poll_elsewhere(self, msg: Inbound, recorded: Recorded, deadline: float) -> str | None:
        """Another process holds the message: wait for its answer within our budget, or take it over
        as soon as that process is found dead."""
        while time.monotonic() < deadline - POLL:
            await asyncio.sleep(POLL * 4)
            status, _ = await self.store.status_of(recorded.message_id)
            if status == "answered":
                return await self._stored_passive(recorded.message_id)
            if recorded.message_id in self._slots:
                return await self._slots[recorded.message_id].wait(deadline)
            if await self.store.claim(recorded.message_id, LEASE):
                return await self._start(msg, recorded).wait(deadline)
        return None

    async def _stored_passive(self, message_id: int) -> str | None:
        replies = await self.store.replies_to(message_id)
        if replies and replies[0][2] == "passive":
            return replies[0][1]
        return None

    async def _run(self, msg: Inbound, recorded: Recorded, slot: Slot,
                   early: Early | None = None, asked: float = 0.0) -> None:
        started = time.monotonic()
        try:
            await self._in_order(msg, recorded, slot, started, early, asked)
        except asyncio.CancelledError:
            raise
        except Exception:  # task top: the person must still hear something, and 12308
            log.exception("message failed after recording", extra={"message_id": recorded.message_id})
            slot.finish(SAFE_REPLY if slot.waiters else None)
            await self._release(recorded.message_id)
        finally:
            self._slots.pop(recorded.message_id, None)
            _drop(early)

    async def _in_order(self, msg: Inbound, recorded: Recorded, slot: Slot, started: float,
                        early: Early | None = None, asked: float = 0.0) -> None:
        """Handle the message under the user's lock once every earlier message of the user is answered.

        The turn starts from what was read when the message was recorded (``recorded.loaded``, read after
        ``asked``) if nobody has held the user's lock since: every change to a conversation is made under that
        lock (turns, officers), so the state read then is the state now. Otherwise it is read again."""
        tried: set[int] = set()  # earlier abandoned messages taken over once; if they fail again, go on
        preloaded = recorded.loaded
        while True:
            async with self.locks.hold(recorded.user_id):
                while True:
                    if preloaded is not None and self.locks.untouched_since(recorded.user_id, asked):
                        loaded = preloaded
                    else:
                        loaded = await self.store.load_turn(recorded.user_id, recorded.message_id, RECOVERY_WINDOW)
                    preloaded = None
                    if loaded.busy:
                        break  # a live worker holds an earlier message: let it have the lock
                    stale = [m for m in loaded.abandoned if m not in tried]
                    if not stale:
                        await self._handle(msg, recorded, slot, started, loaded, early)
                        return
                    for earlier in stale:
                        tried.add(earlier)
                        await self._take_over_earlier(earlier)
            await asyncio.sleep(ORDER_POLL)

    async def _take_over_earlier(self, message_id: int) -> None:
        """An earlier message of the user whose worker failed or died: handle it now (we hold the user's lock);
        its replies go through the outbox unless a retry of it is waiting here."""
        if message_id in self._slots or not await self.store.claim(message_id, LEASE):
            return
        openid, kind, text, user_id = await self.store.inbound_for_retry(message_id)
        recorded = Recorded(message_id, user_id, False, "received", None)
        slot = self._slots[message_id] = Slot()
        try:
            loaded = await self.store.load_turn(user_id, message_id, RECOVERY_WINDOW)
            await self._handle(_rebuild(openid, kind, text), recorded, slot, time.monotonic(), loaded)
        except asyncio.CancelledError:
            raise
        except Exception:  # the later message still gets its turn; this one is left for recovery
            log.exception("taking over an earlier message failed", extra={"message_id": message_id})
            slot.finish(SAFE_REPLY if slot.waiters else None)
            await self._release(message_id)
        finally:
            self._slots.pop(message_id, None)

    async def _handle(self, msg: Inbound, recorded: Recorded, slot: Slot, started: float, loaded: Loaded,
                      early: Early | None = None) -> None:
        turn = await self.make_turn(msg, loaded.conversation, loaded.generation, early)
        outcome = await self._respond_safely(turn, recorded)
        await self._save_and_deliver(turn, outcome, recorded, slot, started)

    async def _release(self, message_id: int) -> None:
        try:
            await self.store.release(message_id)
        except Exception:  # the lease then simply runs out
            log.warning("could not release the lease of a failed message", exc_info=True,
                        extra={"message_id": message_id})

    async def _respond_safely(self, turn: Turn, recorded: Recorded) -> Outcome:
        try:
            return await self.respond(turn)
        except Exception:  # error boundary around every handler: log, then a safe answer with 12308
            log.exception("handler failed", extra={"message_id": recorded.message_id})
            return Outcome(replies=[SAFE_REPLY], handler="error")

    async def _save_and_deliver(self, turn: Turn, outcome: Outcome, recorded: Recorded, slot: Slot,
                                started: float) -> None:
        passive = bool(outcome.replies) and slot.waiters > 0 and time.monotonic() < slot.deadline - SAVE_MARGIN
        nlu = turn.nlu
        saved = await self.store.save_turn(
            message_id=recorded.message_id, conversation=turn.conversation, replies=outcome.replies,
            passive=passive, openid=turn.message.openid, user_update=outcome.user_update,
            escalation=outcome.escalation.as_record() if outcome.escalation else None,
            inbound_update={
                "intent": nlu.intent if nlu else turn.message.kind,
                "confidence": nlu.confidence if nlu else None,
                "handler": outcome.handler,
                "latency_ms": round((time.monotonic() - started) * 1000, 2),
            },
        )
        if self.on_handled is not None:
            self.on_handled(turn.message.kind, nlu.intent if nlu else None, nlu.engine if nlu else None)
        if saved.passive_id is not None and slot.waiters > 0:
            slot.finish(outcome.replies[0])
        else:
            if saved.passive_id is not None:
                await self.store.move_passive_to_outbox(saved.passive_id, turn.message.openid, recorded.user_id)
            slot.finish(None)
        if self.outbox is not None and (len(saved.reply_ids) > (1 if slot.value else 0)):
            self.outbox.wake()

    async def recover(self, older_than: timedelta = RECOVERY_WINDOW) -> int:
        """Answer messages whose worker died before answering (a crash); replies go to the outbox."""
        done = 0
        for message_id in await self.store.stale_unanswered(older_than):
            if message_id in self._slots or not await self.store.claim(message_id, LEASE):
                continue
            openid, kind, text, user_id = await self.store.inbound_for_retry(message_id)
            msg = _rebuild(openid, kind, text)
            recorded = Recorded(message_id, user_id, False, "received", None)
            await self._run(msg, recorded, Slot())
            done += 1
        return done

    async def close(self) -> None:
        """Let in-flight messages finish (bounded), so nothing half-handled is left behind."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=10)


def _drop(early: Early | None) -> None:
    """An early classification nobody will use (a retry, or the message failed first): stop it, mark it seen."""
    if early is not None:
        early.cancel()  # no effect once it is done
        early.add_done_callback(lambda task: task.cancelled() or task.exception())


def _rebuild(openid: str, kind: str, text: str | None) -> Inbound:
    """An Inbound good enough to handle again from what was stored."""
    if kind.startswith("event:"):
        return Inbound(account="", openid=openid, create_time=int(time.time()), msg_type="event",
                       event=kind.split(":", 1)[1], event_key=text)
    return Inbound(account="", openid=openid, create_time=int(time.time()), msg_type=kind, text=text)
