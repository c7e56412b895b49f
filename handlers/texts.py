"""Fixed copy a citizen reads (Simplified Chinese, with English versions)."""

from __future__ import annotations

HOTLINE_ZH = "12308热线（24小时）：+86-10-12308 或 +86-10-65612308，接通后按0再按9可直接找人工。"
HOTLINE_EN = ("12308 hotline (24 h): +86-10-12308 or +86-10-65612308; "
              "after it connects press 0 then 9 to reach a person.")

CAPABILITIES_ZH = "我是领保助手，可以：紧急情况下告诉您第一步该做什么；解答护照、旅行证、签证、公证等领事问题；为您转接值班人员。"
CAPABILITIES_EN = ("I'm Lingbao, the consular help assistant. I can tell you what to do first in an emergency, "
                   "answer questions about passports, travel documents, visas and notarisation, "
                   "and put you in touch with a duty officer.")


def hotline(english: bool) -> str:
    """The 12308 line in the reader's language."""
    return HOTLINE_EN if english else HOTLINE_ZH


def pick(english: bool, zh: str, en: str) -> str:
    """``en`` for English readers, else ``zh``."""
    return en if english else zh
