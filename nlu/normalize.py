"""Text normalisation applied before every engine: one canonical form for matching and features."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import opencc

_SPACE = re.compile(r"\s+")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[a-zA-Z]")


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def normalize(text: str, *, lower: bool = True) -> str:
    """Traditional → Simplified, full-width → half-width (NFKC), lower case, single spaces.

    ``lower=False`` keeps the case (for acronyms such as "US"); positions are the same either way.
    """
    text = unicodedata.normalize("NFKC", text)
    text = _SPACE.sub(" ", _t2s().convert(text)).strip()
    return text.lower() if lower else text


def language_of(text: str) -> str:
    """``en`` when the message is written in English (Latin letters and no Chinese), else ``zh``."""
    text = unicodedata.normalize("NFKC", text)
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN.findall(text))
    return "en" if latin >= 2 and cjk == 0 else "zh"
