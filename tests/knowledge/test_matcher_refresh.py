"""A publish that changes what the FAQ matcher learns from never makes a message wait for the matcher's training:
the new content is served at once, the previous matcher chooses entries meanwhile (never a withdrawn one), and
the new matcher takes over when it is trained."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.settings import REPO_ROOT
from knowledge import seed
from knowledge.base import KnowledgeBase, Snapshot
from knowledge.editor import Editor

DATA = REPO_ROOT / "data"
PET = {"slug": "pet_travel", "kind": "faq", "title": {"zh": "携带宠物出境"},
       "questions": ["带宠物出国要办什么手续", "猫狗出境检疫证明怎么办理", "宠物可以带出国吗需要什么证明"],
       "answer": {"zh": "带宠物出境，先查目的国的入境检疫要求，再到海关办理动物检疫证明。"},
       "sources": [{"title": "海关总署", "url": "https://www.customs.gov.cn/", "date": "2026-11-01"}],
       "last_reviewed": "2026-11-01"}
PET_QUESTION = "带宠物出国要办什么手续"


@pytest.fixture(autouse=True)
async def seeded(sessions: async_sessionmaker[AsyncSession]) -> None:
    await seed.apply(sessions, seed.read(DATA))


async def test_new_content_is_served_at_once_and_the_new_matcher_takes_over_once_trained(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    kb = KnowledgeBase(sessions, DATA)
    told: list[Snapshot] = []
    kb.on_snapshot = told.append
    first = await kb.current()
    assert not first.stale_matcher and told == [first]  # the first load trains before it serves
    editor = Editor(sessions)
    await editor.create(PET, actor="test")
    await editor.publish("pet_travel", actor="test")

    during = await kb.current()
    assert during.generation > first.generation and "pet_travel" in during.entries  # served at once
    assert during.stale_matcher and during.retriever is first.retriever  # not trained yet: the previous matcher
    assert during.match(PET_QUESTION).best != "pet_travel"

    settled = await kb.settled()
    assert settled.generation == during.generation and not settled.stale_matcher
    assert settled.retriever is not first.retriever
    assert settled.match(PET_QUESTION).best == "pet_travel"
    assert await kb.current() is settled
    assert [s.retriever for s in told] == [first.retriever, first.retriever, settled.retriever]  # the NLU worker too


async def test_while_the_new_matcher_trains_a_withdrawn_entry_is_never_offered(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    kb = KnowledgeBase(sessions, DATA)
    editor = Editor(sessions)
    before = await kb.current()
    question = "大使馆能帮我做什么"
    assert "consular_scope" in [h.slug for h in before.match(question).hits]
    await editor.archive("consular_scope", actor="test")

    during = await kb.current()
    assert during.stale_matcher and "consular_scope" not in during.entries
    assert "consular_scope" in [h.slug for h in during.retriever.search(question)]  # the old matcher knows it
    assert "consular_scope" not in [h.slug for h in during.match(question).hits]  # and it is not offered
    settled = await kb.settled()
    assert "consular_scope" not in [h.slug for h in settled.match(question).hits]


async def test_a_publish_that_leaves_the_questions_alone_keeps_the_trained_matcher(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    kb = KnowledgeBase(sessions, DATA)
    editor = Editor(sessions)
    before = await kb.current()
    entry = await editor.entry("hotline")
    data = dict(entry["latest"])
    data["answer"] = {**data["answer"], "zh": data["answer"]["zh"] + "\n（更新）"}
    await editor.update("hotline", data, actor="test")
    await editor.publish("hotline", actor="test")

    after = await kb.current()
    assert after.generation > before.generation and after.entries["hotline"]["answer"]["zh"].endswith("（更新）")
    assert not after.stale_matcher and after.retriever is before.retriever
