"""normalize() and language_of(): the canonical form every engine, the lexicon and the gazetteer see."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nlu.normalize import language_of, normalize


@pytest.mark.parametrize(("raw", "expected"), [
    ("護照", "护照"),
    ("阿聯酋", "阿联酋"),
    ("我在臺灣遺失了護照", "我在台湾遗失了护照"),
    ("綁架", "绑架"),
])
def test_traditional_to_simplified(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("ＵＳＡ１２３", "usa123"),
    ("你好，！？（）：；", "你好,!?():;"),
    ("ｐａｓｓｐｏｒｔ　ｌｏｓｔ", "passport lost"),  # full-width letters and the ideographic space
    ("１２３０８", "12308"),
])
def test_full_width_to_half_width(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_case_folding() -> None:
    assert normalize("HeLLo UAE Embassy") == "hello uae embassy"


@pytest.mark.parametrize(("raw", "expected"), [
    ("  hello   world \t x \n", "hello world x"),
    ("护照\n\n丢了　　怎么办", "护照 丢了 怎么办"),
    ("   ", ""),
])
def test_whitespace_collapsed_and_stripped(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_all_rules_together() -> None:
    assert normalize("  我在ＤＵＢＡＩ　的護照丟了！！ ") == "我在dubai 的护照丢了!!"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(
    list("護照阿聯酋綁架护照丢了我在美國")
    + [chr(c) for c in range(0xFF01, 0xFF5F)]  # full-width ASCII
    + list("AbcXYZ 09\t\n\u3000,.!?")
), max_size=30))
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once
    assert once == once.strip() and "  " not in once


@pytest.mark.parametrize(("text", "language"), [
    ("My passport was stolen in Paris", "en"),
    ("help me please", "en"),
    ("我的护照在巴黎被偷了", "zh"),
    ("我的護照在巴黎被偷了", "zh"),
    ("我在Paris, passport丢了", "zh"),  # mixed: any Chinese makes it Chinese
    ("I'm in 巴黎", "zh"),
    ("12308", "zh"),  # no letters at all
])
def test_language_of(text: str, language: str) -> None:
    assert language_of(text) == language


def test_language_of_full_width_english() -> None:
    assert language_of("ＨＥＬＰ ＭＥ ＰＬＥＡＳＥ") == "en"
