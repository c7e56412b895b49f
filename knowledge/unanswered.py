"""What users asked that the bot could not answer well, grouped by similarity, and what staff do with it.

A message counts as unanswered for one or more reasons:

- ``nlu_fallback``: no intent reached the confidence floor (the bot redirected or offered entries);
- ``low_confidence``: answered, but with intent confidence under ``LOW_CONFIDENCE`` (0.50). In a
  5-fold cross-validation of the built-in engine over the training and test data, non-emergency
  answers given with confidence in [0.30, 0.50) were right 79–82% of the time, against 95% and
  more from 0.50 up: below 0.50 about one answer in five is wrong;
- ``not_chosen``: the bot offered "did you mean" entries and the person's next text was not one
  of the numbers (``handlers.faq.CHOICE``), or they never answered within ``NOT_CHOSEN_AFTER``;
- ``low_rating``: the person rated the officer's help 1 or 2; their messages in the half hour
  before the case was opened (or, when they only asked for a person, their first messages to
  the officer) are what the bot did not resolve.

Messages already triaged, and messages whose text the retention purge removed, are left out.
Groups: TF-IDF over the built-in engine's features (character 1–3-grams and jieba words) of the
normalised text with place names removed (otherwise "in Manila" would join unrelated questions),
document frequencies taken from the NLU training data plus the messages (so words every
consular question uses weigh little, and words a handful of messages share weigh much), cosine
distance, complete-linkage agglomerative clustering cut at ``GROUP_DISTANCE`` (0.85): every two
messages in a group share at least 0.15 cosine similarity. On the NLU test split this put 53% of
the messages into groups of two or more at 0.74 topic purity, the best of the cuts tried
(0.75–0.90, average and complete linkage, with and without masking and training frequencies).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from bot.accounts import audit
from bot.retention import PURGED
from bot.storage.models import Escalation, Message, utcnow
from handlers.faq import CHOICE
from knowledge.base import KnowledgeBase, Snapshot
from knowledge.learning_models import NLUExample, UnansweredTriage
from nlu.builtin import features, training_files
from nlu.data import fingerprint, load_examples
from nlu.engine import NLU
from nlu.normalize import normalize
from nlu.retrain import INTENTS, LearningError, clean_example
from nlu.types import FALLBACK

LOW_CONFIDENCE = 0.50
NOT_CHOSEN_AFTER = timedelta(minutes=10)
BEFORE_CASE = timedelta(minutes=30)
WINDOW = timedelta(days=30)
MAX_MESSAGES = 1000
GROUP_DISTANCE = 0.85
SAMPLES = 5

REASONS = ("nlu_fallback", "low_confidence", "not_chosen", "low_rating")
REASONS_ZH = {"nlu_fallback": "未能识别", "low_confidence": "低置信度回答", "not_chosen": "推荐未被选择",
              "low_rating": "人工服务评分1–2"}
ACTIONS = ("variant", "training", "dismiss")
TEXT_KINDS = ("text", "voice")
ANSWERED_INTENTS = ("faq", "request_human", "greet", "thank", "goodbye", "out_of_scope")
ANSWER_HANDLERS = ("smalltalk", "escalation", "fallback", "did_you_mean", "unsure")
OFFERS = ("did_you_mean", "unsure")
NOT_A_QUESTION = ("request_human", "greet", "thank", "goodbye")
_BARE = re.compile(r"^[\s\d０-９.。,，、)）!！?？~～]*$")


@dataclass
class Item:
    """One unanswered message."""

    id: int
    text: str
    created_at: datetime
    intent: str | None
    confidence: float | None
    handler: str | None
    reasons: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "created_at": self.created_at.isoformat(),
                "intent": self.intent, "confidence": None if self.confidence is None else round(self.confidence, 3),
                "handler": self.handler, "reasons": [r for r in REASONS if r in self.reasons]}


@dataclass
class Group:
    """Similar unanswered messages, newest first, with what the bot would suggest doing with them."""

    items: list[Item]
    suggested_entry: str | None = None
    suggested_title: str | None = None
    suggested_intent: str | None = None

    @property
    def key(self) -> int:
        return min(i.id for i in self.items)

    def reasons(self) -> dict[str, int]:
        counts = Counter(r for i in self.items for r in i.reasons)
        return {r: counts[r] for r in REASONS if counts[r]}

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "count": len(self.items), "reasons": self.reasons(),
                "latest": max(i.created_at for i in self.items).isoformat(),
                "suggested_entry": self.suggested_entry, "suggested_title": self.suggested_title,
                "suggested_intent": self.suggested_intent,
                "suggested_topic": self.suggested_entry if self.suggested_intent == "faq" else None,
                "samples": [i.text for i in self.items[:SAMPLES]], "messages": [i.as_dict() for i in self.items]}


class Unanswered:
    """Finds, groups and triages unanswered messages."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], kb: KnowledgeBase, nlu: NLU,
                 data_dir: Path) -> None:
        self.sessions = sessions
        self.kb = kb
        self.nlu = nlu
        self.data_dir = data_dir
        self._reference: tuple[str, list[list[str]]] | None = None

    # ----------------------------------------------------------------------- finding

    async def items(self, now: datetime | None = None) -> list[Item]:
        """Unanswered, untriaged messages of the last ``WINDOW``, newest first (at most ``MAX_MESSAGES``)."""
        now = now or utcnow()
        found: dict[int, Item] = {}
        async with self.sessions() as session:
            await self._missed(session, now, found)
            await self._low_rated(session, now, found)
        return sorted(found.values(), key=lambda i: -i.id)[:MAX_MESSAGES]

    def _eligible(self, now: datetime) -> Any:
        return and_(Message.direction == "in", Message.sender == "user", Message.msg_type.in_(TEXT_KINDS),
                    Message.status == "answered", Message.text.is_not(None), Message.text != PURGED,
                    Message.created_at >= now - WINDOW,
                    ~exists().where(UnansweredTriage.message_id == Message.id))

    async def _missed(self, session: AsyncSession, now: datetime, found: dict[int, Item]) -> None:
        """Fallbacks, low-confidence answers and "did you mean" offers, with the person's next text."""
        later = aliased(Message)
        next_id = (select(func.min(later.id))
                   .where(later.user_id == Message.user_id, later.direction == "in", later.id > Message.id,
                          later.msg_type.in_(TEXT_KINDS))
                   .correlate(Message).scalar_subquery())
        answered = or_(Message.handler.like("faq:%"), Message.handler.in_(ANSWER_HANDLERS))
        missed = or_(
            and_(Message.intent == FALLBACK, Message.handler.in_(("fallback", "unsure"))),
            and_(Message.intent.in_(ANSWERED_INTENTS), Message.confidence < LOW_CONFIDENCE, answered),
            Message.handler.in_(OFFERS))
        rows = (await session.execute(
            select(Message.id, Message.text, Message.created_at, Message.intent, Message.confidence,
                   Message.handler, next_id.label("next_id"))
            .where(self._eligible(now), missed).order_by(Message.id.desc()).limit(MAX_MESSAGES))).all()
        next_ids = [r.next_id for r in rows if r.next_id is not None]
        replies: dict[int, str] = {}
        if next_ids:
            replies = {i: t or "" for i, t in (await session.execute(
                select(Message.id, Message.text).where(Message.id.in_(next_ids)))).all()}
        for row in rows:
            if _BARE.match(row.text):
                continue
            reasons = set()
            if row.intent == FALLBACK and row.handler in ("fallback", "unsure"):
                reasons.add("nlu_fallback")
            if (row.intent in ANSWERED_INTENTS and row.confidence is not None and row.confidence < LOW_CONFIDENCE
                    and ((row.handler or "").startswith("faq:") or row.handler in ANSWER_HANDLERS)):
                reasons.add("low_confidence")
            if row.handler in OFFERS:
                if row.next_id is not None:
                    if not CHOICE.match(replies.get(row.next_id, "")):
                        reasons.add("not_chosen")
                elif row.created_at < now - NOT_CHOSEN_AFTER:
                    reasons.add("not_chosen")
            if reasons:
                found[row.id] = Item(row.id, row.text, row.created_at, row.intent, row.confidence, row.handler,
                                     reasons)

    async def _low_rated(self, session: AsyncSession, now: datetime, found: dict[int, Item]) -> None:
        """The questions behind cases the person rated 1 or 2."""
        cases = (await session.execute(
            select(Escalation.user_id, Escalation.created_at, Escalation.closed_at)
            .where(Escalation.rating.in_((1, 2)), Escalation.created_at >= now - WINDOW)
            .order_by(Escalation.id.desc()).limit(200))).all()
        columns = (Message.id, Message.text, Message.created_at, Message.intent, Message.confidence,
                   Message.handler)
        for case in cases:
            mine = and_(self._eligible(now), Message.user_id == case.user_id,
                        or_(Message.intent.is_(None), Message.intent.not_in(NOT_A_QUESTION)))
            rows = (await session.execute(
                select(*columns).where(mine, Message.created_at >= case.created_at - BEFORE_CASE,
                                       Message.created_at <= case.created_at).order_by(Message.id))).all()
            rows = [r for r in rows if not _BARE.match(r.text)]
            if not rows:
                rows = [r for r in (await session.execute(
                    select(*columns).where(mine, Message.created_at > case.created_at,
                                           Message.created_at <= (case.closed_at or now))
                    .order_by(Message.id).limit(6))).all() if not _BARE.match(r.text)][:3]
            for row in rows:
                item = found.get(row.id) or Item(row.id, row.text, row.created_at, row.intent, row.confidence,
                                                 row.handler)
                item.reasons.add("low_rating")
                found[row.id] = item

    # ----------------------------------------------------------------------- grouping

    async def groups(self, now: datetime | None = None) -> list[Group]:
        """Unanswered messages grouped by similarity, largest (then most recent) group first."""
        items = await self.items(now)
        if not items:
            return []
        snapshot = await self.kb.current()
        return await asyncio.to_thread(self._group, items, snapshot)

    def _group(self, items: list[Item], snapshot: Snapshot) -> list[Group]:
        labels = cluster([features(self._masked(i.text)) for i in items], self._reference_features())
        by_label: dict[int, list[Item]] = {}
        for item, label in zip(items, labels):
            by_label.setdefault(label, []).append(item)
        groups = [self._suggest(Group(members), snapshot) for members in by_label.values()]
        groups.sort(key=lambda g: (-len(g.items), -max(i.id for i in g.items)))
        return groups

    def _reference_features(self) -> list[list[str]]:
        """Features of the (masked) training examples, for document frequencies; rebuilt when data/ changes."""
        files = training_files(self.data_dir)
        key = fingerprint(files)
        if self._reference is None or self._reference[0] != key:
            self._reference = (key, [features(self._masked(e.text)) for e in load_examples(files)])
        return self._reference[1]

    def _masked(self, text: str) -> str:
        """Normalised text without place names."""
        normalized = normalize(text)
        for place in sorted(self.nlu.gazetteer.find(normalized, normalize(text, lower=False)),
                            key=lambda p: -p.start):
            normalized = normalized[:place.start] + " " + normalized[place.end:]
        return normalized.strip() or normalize(text)

    def _suggest(self, group: Group, snapshot: Snapshot) -> Group:
        """The entry the knowledge base matches best across the group, and the likeliest intent."""
        entries: Counter[str] = Counter()
        intents: Counter[str] = Counter()
        for item in group.items:
            for hit in snapshot.match(item.text).hits:
                entries[hit.slug] += hit.score
            for intent, p in self.nlu.model.rank(normalize(item.text)):
                intents[intent] += p
        if entries:
            slug = entries.most_common(1)[0][0]
            title = (snapshot.entries.get(slug) or {}).get("title") or {}
            group.suggested_entry, group.suggested_title = slug, str(title.get("zh") or slug)
        if intents:
            group.suggested_intent = intents.most_common(1)[0][0]
        return group

    # ----------------------------------------------------------------------- acting

    async def act(self, message_ids: list[int], action: str, actor: str, *, slug: str | None = None,
                  intent: str | None = None, topic: str | None = None) -> dict[str, Any]:
        """Turn messages into question variants of an entry or into training examples, or dismiss them.

        Every message is recorded as triaged (so it leaves the list) and the action is audited.
        """
        if action not in ACTIONS:
            raise LearningError("action 必须是 variant、training 或 dismiss")
        ids = sorted({int(i) for i in message_ids})
        if not ids or len(ids) > MAX_MESSAGES:
            raise LearningError(f"请选择 1 到 {MAX_MESSAGES} 条消息")
        texts = await self._texts(ids)
        if action == "variant":
            return await self._variants(ids, texts, actor, slug)
        if action == "training":
            return await self._training(ids, texts, actor, intent, topic)
        async with self.sessions.begin() as session:
            await self._triage(session, ids, "dismissed", None, actor)
            await audit(session, actor, "unanswered_dismiss", None, messages=ids)
        return {"action": "dismiss", "messages": len(ids)}

    async def _texts(self, ids: list[int]) -> dict[int, str]:
        async with self.sessions() as session:
            rows = (await session.execute(
                select(Message.id, Message.text, Message.direction, Message.msg_type,
                       exists().where(UnansweredTriage.message_id == Message.id).label("done"))
                .where(Message.id.in_(ids)))).all()
        texts = {r.id: r.text for r in rows
                 if r.direction == "in" and r.msg_type in TEXT_KINDS and r.text and r.text != PURGED}
        missing = [i for i in ids if i not in texts]
        if missing:
            raise LearningError(f"这些消息不存在、不是用户的文字消息或内容已按保留期限删除：{missing[:10]}", 404)
        done = [r.id for r in rows if r.done]
        if done:
            raise LearningError(f"这些消息已经处理过了（可能是其他同事刚处理）：{done[:10]}", 409)
        return texts

    async def _triage(self, session: AsyncSession, ids: list[int], action: str, target: str | None,
                      actor: str) -> None:
        now = utcnow()
        session.add_all(UnansweredTriage(message_id=i, action=action, target=target, actor=actor, at=now) for i in ids)
        try:
            await session.flush()
        except IntegrityError:
            raise LearningError("这些消息刚被其他同事处理过了，请刷新页面。", 409) from None

    async def _variants(self, ids: list[int], texts: dict[int, str], actor: str, slug: str | None) -> dict[str, Any]:
        from knowledge.editor import Editor, EditorError

        snapshot = await self.kb.current()
        entry = snapshot.entries.get(slug or "")
        if not slug or entry is None or entry.get("kind") != "faq":
            raise LearningError("请选择一个已发布的常见问题条目")
        # Claim the messages first (a colleague acting on the same group gets a clear conflict), then
        # publish the variants; if publishing fails, the claim is undone and the messages stay listed.
        async with self.sessions.begin() as session:
            await self._triage(session, ids, "variant", f"kb:{slug}", actor)
        questions = list(dict.fromkeys(clean_example(texts[i]) for i in ids))
        try:
            version = await Editor(self.sessions).add_questions(slug, questions, actor=actor)
        except Exception as exc:
            async with self.sessions.begin() as session:
                await session.execute(UnansweredTriage.__table__.delete().where(
                    UnansweredTriage.message_id.in_(ids)))
            if isinstance(exc, EditorError):
                raise LearningError(str(exc), exc.status) from None
            raise
        async with self.sessions.begin() as session:
            await audit(session, actor, "unanswered_variant", f"kb:{slug}", messages=ids, version=version)
        return {"action": "variant", "messages": len(ids), "slug": slug, "version": version,
                "questions": len(questions)}

    async def _training(self, ids: list[int], texts: dict[int, str], actor: str, intent: str | None,
                        topic: str | None) -> dict[str, Any]:
        if intent not in INTENTS:
            raise LearningError("请选择一个意图：" + "、".join(INTENTS))
        if intent == "faq":
            snapshot = await self.kb.current()
            if not topic or (snapshot.entries.get(topic) or {}).get("kind") != "faq":
                raise LearningError("意图为 faq 时，请选择对应的常见问题条目（topic）")
        else:
            topic = None
        async with self.sessions.begin() as session:
            await self._triage(session, ids, "training", f"{intent}/{topic}" if topic else intent, actor)
            wanted = {clean_example(texts[i]): i for i in ids}
            wanted = {text: i for text, i in wanted.items() if text}
            have = set((await session.execute(select(NLUExample.text).where(
                NLUExample.intent == intent, NLUExample.text.in_(list(wanted))))).scalars())
            now = utcnow()
            new = [NLUExample(text=text, intent=intent, topic=topic, message_id=i, author=actor, created_at=now)
                   for text, i in wanted.items() if text not in have]
            session.add_all(new)
            await audit(session, actor, "unanswered_training", intent, topic=topic, messages=ids, added=len(new))
        return {"action": "training", "messages": len(ids), "intent": intent, "topic": topic, "added": len(new)}


def cluster(docs: list[list[str]], reference: list[list[str]], threshold: float = GROUP_DISTANCE) -> list[int]:
    """A group label per document (given as its features): complete-linkage clusters of TF-IDF cosine
    distance, document frequencies from ``reference`` and the documents themselves."""
    if len(docs) < 2:
        return [0] * len(docs)
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_distances

    vectorizer = TfidfVectorizer(analyzer=_as_is, sublinear_tf=True).fit(reference + docs)
    distances = cosine_distances(vectorizer.transform(docs))
    labels = AgglomerativeClustering(n_clusters=None, metric="precomputed", linkage="complete",
                                     distance_threshold=threshold).fit_predict(distances)
    return [int(label) for label in labels]


def _as_is(doc: list[str]) -> list[str]:
    return doc
