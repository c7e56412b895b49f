"""The built-in engine in a worker process: the same understanding as in the server, batches of concurrent
messages, a retrained model swapped in, and the server classifying by itself whenever the worker is not there."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import replace

import pytest

from knowledge.retrieval import Retriever
from nlu.builtin import train
from nlu.data import Example, load_examples
from nlu.engine import MAX_CHARS, NLU, is_emergency
from nlu.worker import NLUWorker
from tests.nlu.conftest import DATA


async def ready(worker: NLUWorker, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while worker.pid is None:
        assert time.monotonic() < deadline, "the worker did not come up"
        await asyncio.sleep(0.05)
    return worker.pid


@pytest.fixture
async def worker(nlu: NLU):  # type: ignore[no-untyped-def]
    started = NLUWorker(DATA, timeout=5.0, restart_after=0.1)
    await started.start(nlu.model)
    await ready(started)
    yield started
    await started.close()


async def test_the_worker_understands_exactly_as_the_server_does(nlu: NLU, worker: NLUWorker) -> None:
    texts = [e.text for e in load_examples([DATA / "nlu" / "test"])][:300]
    texts += ["我在迪拜被抓了", "Help, my passport was stolen in Paris", "]]><x>\u202e\x00", "", "啊" * 1500]
    results = await asyncio.gather(*(worker.understand(t) for t in texts))  # concurrent: they go in batches
    assert results == [nlu.understand_now(t) for t in texts]
    assert worker.fallbacks == 0


async def test_each_answer_comes_back_without_waiting_for_the_rest_of_its_batch(nlu: NLU,
                                                                                 worker: NLUWorker) -> None:
    long = "我在迪拜机场护照被偷了请问怎么办，" * (MAX_CHARS // 16)  # several milliseconds each
    started = time.monotonic()
    futures = [worker.submit(t) for t in ["救命"] + [long] * 40]  # submitted in one loop pass: one batch
    assert all(f is not None for f in futures)
    first = await futures[0]  # type: ignore[misc]
    first_after = time.monotonic() - started
    rest = await asyncio.gather(*futures[1:])  # type: ignore[misc]
    all_after = time.monotonic() - started
    assert first == nlu.understand_now("救命") and rest == [nlu.understand_now(long)] * 40
    assert first_after < all_after / 3, (first_after, all_after)
    assert worker.fallbacks == 0


async def test_a_retrained_model_reaches_the_worker_before_later_messages(nlu: NLU, worker: NLUWorker) -> None:
    tiny = train([Example(text=t, intent=i) for t, i in [
        ("你好", "greet"), ("您好呀", "greet"), ("谢谢", "thank"), ("多谢你", "thank")]], key="tiny")
    swapped = NLU(model=tiny, lexicon=nlu.lexicon, gazetteer=nlu.gazetteer)
    worker.swap(tiny)
    assert await worker.understand("护照丢了怎么办") == swapped.understand_now("护照丢了怎么办")
    worker.swap(nlu.model)
    assert await worker.understand("护照丢了怎么办") == nlu.understand_now("护照丢了怎么办")


async def test_the_worker_ranks_knowledge_base_entries_exactly_as_the_matcher_does(nlu: NLU,
                                                                                  worker: NLUWorker) -> None:
    examples = [e for e in load_examples([DATA / "nlu" / "train"]) if e.intent == "faq" and e.topic]
    matcher = Retriever([(str(e.topic), e.text) for e in examples])
    other = Retriever([(str(e.topic), e.text) for e in examples[:-5]])  # another generation of the knowledge base
    assert matcher.model is not None and other.model is not None and matcher.model.key != other.model.key
    texts = [e.text for e in load_examples([DATA / "nlu" / "test"])][:200] + ["", "护照" * 600]
    worker.set_topics(matcher.model)
    results = await asyncio.gather(*(worker.understand(t) for t in texts))
    assert all(r is not None for r in results)
    # Ranked: every text but emergencies (they go to a playbook) and the text too long to classify whole.
    expected_ranked = [r is not None and not is_emergency(r.intent) and len(r.text) <= MAX_CHARS for r in results]
    assert [r is not None and r.topics is not None for r in results] == expected_ranked
    assert 0 < sum(expected_ranked) < len(texts) - 1
    for text, understood in zip(texts, results):
        assert understood is not None
        expected = [(h.slug, h.score) for h in matcher.search(text, k=3)]
        assert matcher.search(text, k=3, understood=understood) == matcher.search(text, k=3)
        if understood.topics is not None:
            assert understood.topics == (matcher.model.key, expected)
        # The intent is the server's own; only the extra ranking differs.
        assert replace(understood, topics=None) == nlu.understand_now(text)
    # A ranking from another matcher, or for another text, is never taken for this one.
    forged = replace(results[0], topics=(other.model.key, [("visa", 1.0)] * 3))
    assert matcher.search(texts[0], understood=forged) == matcher.search(texts[0])
    assert matcher.search(texts[1], understood=results[0]) == matcher.search(texts[1])
    worker.set_topics(None)
    assert (await worker.understand(texts[0])) == nlu.understand_now(texts[0])


async def test_without_its_worker_the_server_classifies_itself_until_a_new_one_is_up(nlu: NLU,
                                                                                     worker: NLUWorker) -> None:
    served = NLU(model=nlu.model, lexicon=nlu.lexicon, gazetteer=nlu.gazetteer, worker=worker)
    first = await ready(worker)
    os.kill(first, signal.SIGKILL)
    text = "我在曼谷被抢了，护照也没了"
    answers = [await served.understand(text) for _ in range(5)]  # right away, while no worker is there
    assert all(a == nlu.understand_now(text) for a in answers)
    second = await ready(worker)
    assert second != first and worker.restarts >= 1
    assert await worker.understand(text) == nlu.understand_now(text)


async def test_a_stuck_worker_costs_one_timeout_then_is_replaced(nlu: NLU) -> None:
    stuck = NLUWorker(DATA, timeout=0.3, restart_after=0.1)
    await stuck.start(nlu.model)
    try:
        first = await ready(stuck)
        os.kill(first, signal.SIGSTOP)
        started = time.monotonic()
        assert await stuck.understand("你好") is None  # the caller classifies it itself
        assert time.monotonic() - started < 1.0
        second = await ready(stuck)
        assert second != first
        assert await stuck.understand("你好") == nlu.understand_now("你好")
    finally:
        await stuck.close()


async def test_the_worker_yields_the_cpu_to_the_server(worker: NLUWorker) -> None:
    from bot.children import HELPER_NICE

    pid = await ready(worker)
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + HELPER_NICE)
