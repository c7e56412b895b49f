"""The live knowledge base: published entries, playbooks and the directory, cached per process.

Every read checks one small row (``kb_state.generation``); when another process publishes, the
next message here reloads, so a change reaches the very next message without a restart.

The FAQ matcher is a trained model (about a second of CPU, more under load). A turn never waits for it:
after a publish that changes what the matcher learns from (titles, questions), the new content is served at
once and the previous matcher keeps choosing entries until the new one is trained in the background, a
second or so later (``settled`` waits for that); entries it knows that are no longer published are never
offered. Only a process's first load trains before it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from phonenumbers import shortnumberinfo
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from knowledge.models import DirectoryCountry, KBEntry, KBState, KBVersion, SafetyAlert
from knowledge.retrieval import Hit, Retriever
from nlu.data import load_examples
from nlu.types import Understanding

# Territories served by the missions in the country they belong to.
SOVEREIGN = {
    "GU": "US", "MP": "US", "PR": "US", "VI": "US", "AS": "US",
    "RE": "FR", "GP": "FR", "MQ": "FR", "GF": "FR", "PF": "FR", "NC": "FR", "YT": "FR", "PM": "FR",
    "BL": "FR", "MF": "FR", "WF": "FR", "GL": "DK", "FO": "DK", "AW": "NL", "CW": "NL", "SX": "NL",
    "BQ": "NL", "GI": "GB", "BM": "GB", "KY": "GB", "VG": "GB", "TC": "GB", "MS": "GB", "AI": "GB",
    "FK": "GB", "SH": "GB", "IM": "GB", "JE": "GB", "GG": "GB", "CK": "NZ", "NU": "NZ", "CX": "AU",
    "CC": "AU", "NF": "AU",
}

# Answer directly when the best entry is at least this likely and clearly ahead of the runner-up;
# otherwise offer "did you mean" (FAQ test split: 86 of 99 answered directly, 82 of them right;
# the right entry is among the three offered for 99 of 99).
ANSWER_MIN = 0.30
ANSWER_MARGIN = 1.5

log = logging.getLogger(__name__)
Documents = tuple[tuple[str, str], ...]  # what a matcher learns from: (slug, question or title) in order


@dataclass(frozen=True)
class Match:
    """The retrieval result for one question."""

    hits: list[Hit]

    @property
    def confident(self) -> bool:
        if not self.hits or self.hits[0].score < ANSWER_MIN:
            return False
        return len(self.hits) == 1 or self.hits[0].score >= ANSWER_MARGIN * self.hits[1].score

    @property
    def best(self) -> str | None:
        return self.hits[0].slug if self.hits else None


@dataclass
class Snapshot:
    """Published content at one generation."""

    generation: int
    entries: dict[str, dict[str, Any]]
    directory: dict[str, DirectoryCountry]
    retriever: Retriever
    playbooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    documents: Documents = ()  # what this generation's matcher learns from
    stale_matcher: bool = False  # ``retriever`` is an earlier generation's while this one's is trained

    def live_alerts(self, code: str | None, now: datetime | None = None) -> list[dict[str, Any]]:
        """Published alerts for ``code`` in force now, most severe first (an expired one never shows,
        whenever the snapshot was loaded)."""
        from knowledge.validate import LEVELS, is_live

        found = [a for a in self.alerts.get(code or "", []) if is_live(a, now)]
        return sorted(found, key=lambda a: (-LEVELS.index(a["level"]), str(a["starts_at"])))

    def match(self, question: str, understood: Understanding | None = None) -> Match:
        """The closest entries to ``question`` (``understood``: its NLU result, which may carry them already)."""
        hits = self.retriever.search(question, k=3, understood=understood)
        # A matcher from an earlier generation (still training the new one) may know entries since withdrawn.
        return Match([hit for hit in hits if (self.entries.get(hit.slug) or {}).get("kind") == "faq"])

    def country(self, code: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """Emergency numbers and missions for ``code``.

        A territory without its own entry (Guam, Réunion…) gets the missions of the country it
        belongs to, and those of that country's emergency numbers that libphonenumber confirms
        are emergency numbers in the territory too.
        """
        row = self.directory.get(code)
        emergency = dict(row.emergency) if row and row.emergency else None
        missions = list(row.missions) if row else []
        parent = self.directory.get(SOVEREIGN.get(code, ""))
        if parent is not None:
            missions = missions or list(parent.missions)
            if emergency is None and parent.emergency:
                emergency = {k: v for k, v in parent.emergency.items()
                             if k in ("police", "ambulance", "fire", "unified") and v
                             and shortnumberinfo.is_emergency_number(str(v), code)} or None
        return emergency, missions


class KnowledgeBase:
    """Loads published content and keeps it current across processes."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], data_dir: Path) -> None:
        self.sessions = sessions
        self.extra_questions = training_questions(data_dir)
        self._snapshot: Snapshot | None = None
        self._lock = asyncio.Lock()
        self._training: asyncio.Task[None] | None = None
        self.on_snapshot: Callable[[Snapshot], None] | None = None  # told of each snapshot loaded or completed

    async def current(self, generation: int | None = None) -> Snapshot:
        """The snapshot for the database's current generation (reloaded when it changed).

        ``generation`` is the value the caller already read in its own transaction, if any.
        """
        if generation is None:
            generation = await self._generation()
        snapshot = self._snapshot
        if snapshot is not None and snapshot.generation == generation:
            return snapshot
        async with self._lock:
            if self._snapshot is None or self._snapshot.generation != generation:
                self._snapshot = await self._load(generation)
                self._announce()
                if self._snapshot.stale_matcher:
                    self._train_in_background()
            return self._snapshot

    async def settled(self) -> Snapshot:
        """The current snapshot once its matcher is the one trained on its own entries (the console, tests)."""
        snapshot = await self.current()
        while self._training is not None and not self._training.done():
            await asyncio.shield(self._training)
            snapshot = await self.current()
        return snapshot

    def _announce(self) -> None:
        if self.on_snapshot is not None and self._snapshot is not None:
            self.on_snapshot(self._snapshot)

    def _train_in_background(self) -> None:
        if self._training is None or self._training.done():
            self._training = asyncio.create_task(self._train_pending(), name="kb-matcher")

    async def _train_pending(self) -> None:
        """Train matchers until the current snapshot has its own (content published meanwhile is trained next)."""
        while (snapshot := self._snapshot) is not None and snapshot.stale_matcher:
            try:
                retriever = _matcher(snapshot.documents) or await _train(snapshot.documents)
            except Exception:  # task top: the previous matcher stays in use until the next publish
                log.exception("knowledge-base matcher could not be trained; the previous one stays in use")
                return
            if self._snapshot is not None and self._snapshot.documents == snapshot.documents:
                self._snapshot = replace(self._snapshot, retriever=retriever, stale_matcher=False)
                self._announce()

    async def close(self) -> None:
        """Stop training in the background (the process is stopping; it would be thrown away)."""
        if self._training is not None and not self._training.done():
            self._training.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._training

    async def _generation(self) -> int:
        async with self.sessions() as session:
            value = (await session.execute(select(KBState.generation).where(KBState.id == 1))).scalar_one_or_none()
            return int(value or 0)

    async def _load(self, generation: int) -> Snapshot:
        async with self.sessions() as session:
            rows = await session.execute(
                select(KBEntry.slug, KBVersion.data).join(KBVersion, KBVersion.entry_id == KBEntry.id)
                .where(KBEntry.status == "published", KBVersion.version == KBEntry.published_version))
            entries = {slug: dict(data) for slug, data in rows}
            directory = {c.iso: c for c in (await session.execute(select(DirectoryCountry))).scalars()}
            alerts: dict[str, list[dict[str, Any]]] = {}
            for alert_id, country, data in await session.execute(
                    select(SafetyAlert.id, SafetyAlert.country, SafetyAlert.data)
                    .where(SafetyAlert.status == "published")):
                if data:
                    alerts.setdefault(country, []).append({**data, "id": alert_id})
        documents = tuple(self._documents(entries))
        retriever, stale = _matcher(documents), False
        if retriever is None and self._snapshot is not None:
            retriever, stale = self._snapshot.retriever, True  # meanwhile (see the module's docstring)
        elif retriever is None:  # this process's first load: it serves nothing before it has a matcher
            retriever = await _train(documents)
        playbooks = {str(d.get("intent")): d for d in entries.values() if d.get("kind") == "playbook"}
        return Snapshot(generation, entries, directory, retriever, playbooks, alerts, documents, stale)

    def _documents(self, entries: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
        docs: list[tuple[str, str]] = []
        for slug, data in entries.items():
            if data.get("kind") != "faq":
                continue
            title = data.get("title") or {}
            docs.extend((slug, str(t)) for t in (title.get("zh"), title.get("en")) if t)
            docs.extend((slug, str(q)) for q in data.get("questions") or [])
            docs.extend((slug, q) for q in self.extra_questions.get(slug, []))
        return docs


# Trained matchers by what they learnt from, the most recently stored last; shared by the process's knowledge
# bases (a generation that changed only the directory, alerts or answers reuses its matcher).
_MATCHERS: OrderedDict[Documents, Retriever] = OrderedDict()
MATCHERS_KEPT = 4


def _matcher(documents: Documents) -> Retriever | None:
    retriever = _MATCHERS.get(documents)
    if retriever is not None:
        _MATCHERS.move_to_end(documents)
    return retriever


async def _train(documents: Documents) -> Retriever:
    """A matcher trained on ``documents`` (in a thread), kept for the next generation that has the same."""
    retriever = await asyncio.to_thread(Retriever, list(documents))
    _MATCHERS[documents] = retriever
    _MATCHERS.move_to_end(documents)
    while len(_MATCHERS) > MATCHERS_KEPT:
        _MATCHERS.popitem(last=False)
    return retriever


def training_questions(data_dir: Path) -> dict[str, list[str]]:
    """FAQ training examples by topic: more ways people ask, used as extra question variants."""
    questions: dict[str, list[str]] = {}
    for example in load_examples([data_dir / "nlu" / "train"]):
        if example.intent == "faq" and example.topic:
            questions.setdefault(example.topic, []).append(example.text)
    return questions
