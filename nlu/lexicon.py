"""The emergency safety net: strong danger phrases that raise a message to an emergency intent."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from nlu.normalize import normalize

_LATIN = re.compile(r"^[a-z0-9 '’.-]+$")


@dataclass(frozen=True)
class Lexicon:
    """Phrases per emergency intent, matched on normalised text (Latin phrases on word boundaries)."""

    phrases: dict[str, tuple[str, ...]]
    _latin: dict[str, re.Pattern[str]]
    _cjk: dict[str, re.Pattern[str]]  # an intent's other phrases as one alternation: one search, not one per phrase

    @classmethod
    def load(cls, path: Path) -> Lexicon:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
        phrases: dict[str, tuple[str, ...]] = {}
        latin: dict[str, re.Pattern[str]] = {}
        for intent, items in ((doc or {}).get("intents") or {}).items():
            normalised = sorted({normalize(str(p)) for p in items or [] if str(p).strip()}, key=len, reverse=True)
            phrases[str(intent)] = tuple(p for p in normalised if not _LATIN.match(p))
            words = [re.escape(p) for p in normalised if _LATIN.match(p)]
            if words:
                latin[str(intent)] = re.compile(r"(?<![a-z])(?:" + "|".join(words) + r")(?![a-z])")
        cjk = {intent: re.compile("|".join(map(re.escape, items))) for intent, items in phrases.items() if items}
        return cls(phrases, latin, cjk)

    def match(self, normalized: str) -> list[str]:
        """Emergency intents with a phrase in the text, in the lexicon's order."""
        hits = []
        for intent in self.phrases:
            pattern = self._cjk.get(intent)
            if pattern is not None and pattern.search(normalized):  # some phrase occurs in the text
                hits.append(intent)
            elif intent in self._latin and self._latin[intent].search(normalized):
                hits.append(intent)
        for intent, pattern in self._latin.items():
            if intent not in hits and intent not in self.phrases and pattern.search(normalized):
                hits.append(intent)
        return hits

    def size(self) -> int:
        return sum(len(p) for p in self.phrases.values()) + len(self._latin)
