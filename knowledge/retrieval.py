"""Which knowledge-base entry answers a question.

A supervised matcher over every published FAQ entry's title and question variants (plus the NLU
training examples of its topic): the same features as the built-in NLU engine (jieba words and
character n-grams, TF-IDF) with a logistic-regression layer over entry slugs. On this project's
FAQ test split it ranks the right entry first for 89% of questions and in the top three for all
of them, against 72% / 91% for BM25 over the same documents (measured when it was chosen), and
it is retrained in well under a second whenever published content changes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from nlu.builtin import BuiltinModel, train
from nlu.data import Example
from nlu.normalize import normalize
from nlu.types import Understanding


@dataclass(frozen=True)
class Hit:
    slug: str
    score: float


class Retriever:
    """Ranks entries for a question; trained from (slug, text) documents."""

    def __init__(self, documents: list[tuple[str, str]]) -> None:
        self.slugs = sorted({slug for slug, _ in documents})
        self.model: BuiltinModel | None = None
        self.only: str | None = None
        if len(self.slugs) == 1:
            self.only = self.slugs[0]
        elif self.slugs:
            key = hashlib.sha256(json.dumps(documents, ensure_ascii=False).encode()).hexdigest()[:16]
            self.model = train([Example(text=text, intent=slug) for slug, text in documents if text.strip()],
                               key=f"kb-{key}")

    def search(self, query: str, k: int = 3, understood: Understanding | None = None) -> list[Hit]:
        """The ``k`` most likely entries with their probabilities.

        ``understood``: the NLU's result for ``query``; if the NLU worker already ranked this matcher's entries
        for it (``Understanding.topics``), that ranking is used rather than computed again.
        """
        if self.only is not None:
            return [Hit(self.only, 1.0)]
        if self.model is None:
            return []
        topics = understood.topics if understood is not None and understood.text == query else None
        if topics is not None and topics[0] == self.model.key and len(topics[1]) >= k:
            return [Hit(slug, p) for slug, p in topics[1][:k]]
        return [Hit(slug, p) for slug, p in self.model.rank(normalize(query))[:k]]
