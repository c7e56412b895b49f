"""Evaluate an engine on the held-out test split: per-intent P/R/F1, emergency recall, confusion matrix."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from nlu.data import Example
from nlu.engine import is_emergency
from nlu.types import FALLBACK, Understanding


@dataclass
class Report:
    """Figures for one engine on one test split."""

    engine: str
    labels: list[str]
    per_intent: dict[str, tuple[float, float, float, int]]  # precision, recall, f1, support
    macro_f1: float
    accuracy: float
    emergency_recall: float
    false_emergency_rate: float
    latency_p50_ms: float
    latency_p99_ms: float
    confusion: list[list[int]]
    errors: list[tuple[str, str, str, float]] = field(default_factory=list)
    fallbacks: int = 0

    def markdown(self) -> str:
        lines = [
            f"# NLU evaluation: {self.engine}",
            "",
            f"- examples: {sum(s for *_, s in self.per_intent.values())}",
            f"- macro-F1: **{self.macro_f1:.3f}**",
            f"- accuracy: {self.accuracy:.3f}",
            f"- emergency recall (any emergency predicted as some emergency): **{self.emergency_recall:.3f}**",
            f"- false-emergency rate (non-emergency predicted as an emergency): **{self.false_emergency_rate:.3f}**",
            f"- predicted `nlu_fallback`: {self.fallbacks}",
            f"- latency per message: p50 {self.latency_p50_ms:.2f} ms, p99 {self.latency_p99_ms:.2f} ms",
            "",
            "| intent | precision | recall | F1 | support |",
            "|---|---|---|---|---|",
        ]
        for intent, (p, r, f, s) in self.per_intent.items():
            lines.append(f"| `{intent}` | {p:.3f} | {r:.3f} | {f:.3f} | {s} |")
        if self.errors:
            lines += ["", "## Errors", "", "| expected | predicted | confidence | text |", "|---|---|---|---|"]
            for expected, predicted, text, conf in self.errors:
                safe = text.replace("|", "\\|")[:80]
                lines.append(f"| {expected} | {predicted} | {conf:.2f} | {safe} |")
        return "\n".join(lines) + "\n"


async def evaluate(examples: list[Example], understand: Callable[[str], Awaitable[Understanding]],
                   engine: str) -> Report:
    """Run every example through ``understand`` and score it."""
    expected: list[str] = []
    predicted: list[str] = []
    latencies: list[float] = []
    errors: list[tuple[str, str, str, float]] = []
    for example in examples:
        started = time.perf_counter()
        result = await understand(example.text)
        latencies.append((time.perf_counter() - started) * 1000)
        expected.append(example.intent)
        predicted.append(result.intent)
        if result.intent != example.intent:
            errors.append((example.intent, result.intent, example.text, result.confidence))
    return score(expected, predicted, latencies, errors, engine)


def score(expected: list[str], predicted: list[str], latencies: list[float],
          errors: list[tuple[str, str, str, float]], engine: str) -> Report:
    labels = sorted(set(expected))
    per_intent: dict[str, tuple[float, float, float, int]] = {}
    for label in labels:
        tp = sum(1 for e, p in zip(expected, predicted) if e == label and p == label)
        fp = sum(1 for e, p in zip(expected, predicted) if e != label and p == label)
        fn = sum(1 for e, p in zip(expected, predicted) if e == label and p != label)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_intent[label] = (precision, recall, f1, tp + fn)
    emergencies = [p for e, p in zip(expected, predicted) if is_emergency(e)]
    others = [p for e, p in zip(expected, predicted) if not is_emergency(e)]
    columns = labels + [FALLBACK]
    confusion = [[sum(1 for e, p in zip(expected, predicted) if e == row and p == col) for col in columns]
                 for row in labels]
    ordered = sorted(latencies)
    return Report(
        engine=engine, labels=labels, per_intent=per_intent,
        macro_f1=sum(f for _, _, f, _ in per_intent.values()) / len(per_intent),
        accuracy=sum(1 for e, p in zip(expected, predicted) if e == p) / len(expected),
        emergency_recall=sum(1 for p in emergencies if is_emergency(p)) / max(len(emergencies), 1),
        false_emergency_rate=sum(1 for p in others if is_emergency(p)) / max(len(others), 1),
        latency_p50_ms=_percentile(ordered, 50), latency_p99_ms=_percentile(ordered, 99),
        confusion=confusion, errors=errors, fallbacks=predicted.count(FALLBACK),
    )


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def save(report: Report, out_dir: Path) -> tuple[Path, Path]:
    """Write the Markdown report and the confusion-matrix PNG; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / f"nlu-{report.engine}.md"
    png = out_dir / f"nlu-{report.engine}-confusion.png"
    md.write_text(report.markdown() + f"\n![confusion matrix]({png.name})\n", encoding="utf-8")
    columns = report.labels + [FALLBACK]
    fig, ax = plt.subplots(figsize=(10, 8))
    ax.imshow(report.confusion, cmap="Blues")
    ax.set_xticks(range(len(columns)), labels=columns, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(report.labels)), labels=report.labels, fontsize=8)
    for i, row in enumerate(report.confusion):
        for j, value in enumerate(row):
            if value:
                ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                        color="white" if value > max(map(max, report.confusion)) / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("expected")
    ax.set_title(f"{report.engine}: macro-F1 {report.macro_f1:.3f}, emergency recall {report.emergency_recall:.3f}")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return md, png
