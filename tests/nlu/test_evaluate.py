"""The real built-in model on the held-out test split (nlu.evaluate), against the project's quality bar."""

from __future__ import annotations

import asyncio

import pytest

from nlu.data import load_examples
from nlu.engine import NLU
from nlu.evaluate import Report, evaluate
from tests.nlu.conftest import DATA


@pytest.fixture(scope="module")
def report(nlu: NLU) -> Report:
    """Every test example through the async NLU.understand (no Rasa configured: the built-in engine)."""
    result = asyncio.run(evaluate(load_examples([DATA / "nlu" / "test"]), nlu.understand, "builtin"))
    assert nlu.stats["rasa"] == 0 and nlu.stats["builtin"] >= len(result.errors)
    return result


def test_report_shape(report: Report) -> None:
    assert report.engine == "builtin"
    assert "faq" in report.labels and "emergency_kidnap" in report.labels
    assert sum(s for *_, s in report.per_intent.values()) == len(load_examples([DATA / "nlu" / "test"]))
    assert len(report.confusion) == len(report.labels)
    assert all(len(row) == len(report.labels) + 1 for row in report.confusion)
    assert "macro-F1" in report.markdown()


def test_macro_f1(report: Report) -> None:
    assert report.macro_f1 >= 0.92, report.markdown()


def test_emergency_recall(report: Report) -> None:
    assert report.emergency_recall >= 0.99, report.markdown()


def test_false_emergency_rate(report: Report) -> None:
    assert report.false_emergency_rate <= 0.03, report.markdown()


def test_every_emergency_intent_recall(report: Report) -> None:
    """Not just "some emergency": each emergency kind is mostly recognised as itself."""
    for intent, (_, recall, _, support) in report.per_intent.items():
        if intent.startswith("emergency_"):
            assert support > 0 and recall >= 0.8, (intent, recall)


def test_latency(report: Report) -> None:
    assert report.latency_p50_ms < 50
