"""Understanding one message: normalise, rank intents (Rasa or built-in), safety net, confidence floor."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import aiohttp

from nlu.builtin import BuiltinModel, features, load_or_train, warm_up
from nlu.data import fingerprint
from nlu.geo import Gazetteer, Place
from nlu.lexicon import Lexicon
from nlu.normalize import language_of, normalize
from nlu.types import FALLBACK, Understanding
from nlu.worker import NLUWorker

log = logging.getLogger(__name__)

EMERGENCY_PREFIX = "emergency_"
CONFIDENCE_FLOOR = 0.30
EMERGENCY_FLOOR = 0.30
EMERGENCY_MASS = 0.70
MAX_CHARS = 1000
TOPICS = 3  # knowledge-base entries ranked alongside the intent (as many as "did you mean" offers)

Ranking = list[tuple[str, float]]


def is_emergency(intent: str) -> bool:
    return intent.startswith(EMERGENCY_PREFIX)


def decide(ranking: Ranking, hits: list[str], *, floor: float = CONFIDENCE_FLOOR) -> tuple[str, float, bool]:
    """(intent, confidence, raised by the safety net) from an engine's ranking and the lexicon's hits.

    Emergencies are judged first: a lexicon hit wins over any non-emergency guess, and an
    emergency the model leans towards survives a confidence that would send anything else to
    the fallback.
    """
    probs = dict(ranking)
    top, score = ranking[0] if ranking else (FALLBACK, 0.0)
    if hits:
        if is_emergency(top) and (top in hits or score >= 0.5):
            return top, score, False
        best = max(hits, key=lambda intent: probs.get(intent, 0.0))
        return best, max(probs.get(best, 0.0), floor), True
    if is_emergency(top):
        emergency_mass = sum(p for i, p in ranking if is_emergency(i))
        if score >= EMERGENCY_FLOOR or emergency_mass >= EMERGENCY_MASS:
            return top, score, False
    elif score < floor:
        emergency = [(i, p) for i, p in ranking if is_emergency(i)]
        if emergency and sum(p for _, p in emergency) >= EMERGENCY_MASS:
            return emergency[0][0], emergency[0][1], False
    if score >= floor:
        return top, score, False
    return FALLBACK, score, False


@dataclass
class RasaClient:
    """``POST {url}/model/parse`` with a deadline; errors are the caller's cue to use the built-in engine."""

    http: aiohttp.ClientSession
    url: str
    timeout: float
    token: str | None = None

    async def rank(self, normalized: str) -> Ranking:
        params = {"token": self.token} if self.token else None
        async with self.http.post(f"{self.url}/model/parse", json={"text": normalized}, params=params,
                                  timeout=aiohttp.ClientTimeout(total=self.timeout)) as response:
            if response.status != 200:
                raise RasaError(f"HTTP {response.status}")
            data = await response.json(content_type=None)
        ranking = data.get("intent_ranking") if isinstance(data, dict) else None
        if not isinstance(ranking, list):
            raise RasaError("no intent_ranking in answer")
        pairs = [(str(r["name"]), float(r["confidence"])) for r in ranking
                 if isinstance(r, dict) and r.get("name") != FALLBACK]
        total = sum(p for _, p in pairs) or 1.0
        return sorted(((i, p / total) for i, p in pairs), key=lambda x: -x[1])


class RasaError(Exception):
    """Rasa answered, but not with something usable."""


@dataclass
class NLU:
    """The bot's understanding of a message, with the built-in engine always ready as a fallback."""

    model: BuiltinModel
    lexicon: Lexicon
    gazetteer: Gazetteer
    rasa: RasaClient | None = None
    floor: float = CONFIDENCE_FLOOR
    on_rasa_fallback: Callable[[str], None] | None = None
    worker: NLUWorker | None = None
    stats: dict[str, int] = field(default_factory=lambda: {"rasa": 0, "rasa_fallbacks": 0, "builtin": 0})

    @classmethod
    def load(cls, data_dir: Path, cache_dir: Path, *, rasa: RasaClient | None = None) -> NLU:
        """Load (training if needed) the built-in model, the lexicon and the gazetteer.

        The loaded parts are read-only and shared by every app in the process, keyed by a hash
        of their data files, so a change to ``data/`` is picked up by the next load.
        """
        model, _ = load_or_train(data_dir, cache_dir)
        lexicon, gazetteer = _static_parts(data_dir, fingerprint(_static_files(data_dir)))
        return cls(model=model, lexicon=lexicon, gazetteer=gazetteer, rasa=rasa)

    def swap(self, model: BuiltinModel) -> None:
        """Serve ``model`` from the next message on (a retrained model went live; one assignment, atomic)."""
        self.model = model
        if self.worker is not None:
            self.worker.swap(model)

    async def understand(self, text: str) -> Understanding:
        """Intent, confidence, country and entities of ``text``."""
        if self.rasa is None and self.worker is not None:
            understood = await self.worker.understand(text)
            if understood is not None:
                self.stats["builtin"] += 1
                return understood
        return await self.understand_here(text)

    def submit(self, text: str) -> asyncio.Future[Understanding | None] | None:
        """``text`` sent to the NLU worker now, when the built-in engine runs there: the future of its answer
        (None in it: the worker could not answer, classify with ``understand_here``). None when there is no
        worker in use."""
        if self.rasa is not None or self.worker is None:
            return None
        return self.worker.submit(text)

    async def understand_here(self, text: str) -> Understanding:
        """``understand`` in this process (Rasa if configured, with its fallback; else the built-in engine)."""
        cased, normalized = _normal_forms(text)
        ranking, engine = await self._rank(normalized)
        return self._build(text, normalized, cased, ranking, engine)

    def understand_now(self, text: str, *, topics: BuiltinModel | None = None) -> Understanding:
        """The same with the built-in engine only, without awaiting (CLI, evaluation, the NLU worker).

        ``topics``: the knowledge base's matcher, to rank its entries from the same features too (see
        ``Understanding.topics``; the matcher normalises the whole text, so only texts within MAX_CHARS). An
        emergency goes to its playbook, never to the matcher, so it is not ranked (the matcher would rank the
        text itself if some route still asked)."""
        cased, normalized = _normal_forms(text)
        counted = Counter(features(normalized))
        understood = self._build(text, normalized, cased, self.model.rank_counts(counted), "builtin")
        if topics is None or len(text) > MAX_CHARS or is_emergency(understood.intent):
            return understood
        return replace(understood, topics=(topics.key, topics.rank_counts(counted)[:TOPICS]))

    def _build(self, text: str, normalized: str, cased: str, ranking: Ranking, engine: str) -> Understanding:
        hits = self.lexicon.match(normalized)
        places = self.gazetteer.find(normalized, cased)
        place_only = bool(places) and not hits and only_places(normalized, places)
        if place_only:
            # "我在巴黎" says where, not what happened: never an emergency on its own.
            intent, confidence, raised = FALLBACK, ranking[0][1] if ranking else 0.0, False
        else:
            intent, confidence, raised = decide(ranking, hits, floor=self.floor)
        where = next((p for p in places if p.foreign), places[0] if places else None)
        entities: list[dict[str, Any]] = [
            {"entity": p.kind, "value": p.name, "text": p.surface, "start": p.start, "end": p.end, "country": p.code,
             "located": bool(_LOCATED.search(normalized[:p.start]))}
            for p in places
        ]
        return Understanding(
            text=text, intent=intent, confidence=confidence, engine=engine,
            country=where.code if where else None, foreign=where.foreign if where else None,
            language=language_of(text), entities=entities, safety_net=raised, place_only=place_only,
            ranking=ranking[:5],
        )

    async def _rank(self, normalized: str) -> tuple[Ranking, str]:
        if self.rasa is not None:
            try:
                ranking = await self.rasa.rank(normalized)
                self.stats["rasa"] += 1
                return ranking, "rasa"
            except (aiohttp.ClientError, asyncio.TimeoutError, RasaError, ValueError, KeyError, TypeError) as exc:
                self.stats["rasa_fallbacks"] += 1
                log.warning("rasa unavailable, using the built-in engine", extra={"error": type(exc).__name__})
                if self.on_rasa_fallback:
                    self.on_rasa_fallback(type(exc).__name__)
        self.stats["builtin"] += 1
        return self.model.rank(normalized), "builtin"


def _normal_forms(text: str) -> tuple[str, str]:
    """``text`` normalised keeping its case (for acronyms), and as ``normalize`` gives it, normalising once."""
    cased = normalize(text[:MAX_CHARS], lower=False)
    return cased, cased.lower()


_LOCATED = re.compile(r"(?:在|位于|住在|in|at)\s*$")
_FILLER = re.compile(
    r"我们|我|她|他|人|现在|目前|刚到|到了|住在|位于|在|是|了|呢|啊|呀|的|这里|这边|那边|"
    r"\b(?:i'm|i am|i|we|we're|are|she|he|is|my|now|currently|in|at|here|from|the|city|of)\b|[\s\W\d_]+")


def only_places(normalized: str, places: list[Place]) -> bool:
    """True when nothing but places and filler words ("我在", "I am in") is left of the message."""
    rest = normalized
    for place in sorted(places, key=lambda p: -p.start):
        rest = rest[:place.start] + " " + rest[place.end:]
    return not _FILLER.sub("", rest).strip()


def _static_files(data_dir: Path) -> list[Path]:
    return [data_dir / "nlu" / "emergency_lexicon.yml", data_dir / "geo"]


@lru_cache(maxsize=4)
def _static_parts(data_dir: Path, key: str) -> tuple[Lexicon, Gazetteer]:
    del key  # part of the cache key only
    warm_up()
    return Lexicon.load(data_dir / "nlu" / "emergency_lexicon.yml"), Gazetteer.load(data_dir)
