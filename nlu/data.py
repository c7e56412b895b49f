"""Read the Rasa 3.x NLU YAML in ``data/`` (the format both engines train from)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# [surface](entity) or [surface]{"entity": "...", "value": "..."}
ANNOTATION = re.compile(r"\[([^\]]+)\](?:\(([^)]+)\)|(\{[^}]*\}))")


@dataclass(frozen=True)
class Example:
    """One training or test sentence, annotations removed, entities kept with offsets."""

    text: str
    intent: str
    topic: str | None = None
    entities: tuple[tuple[str, str, int, int], ...] = field(default=())  # (entity, surface, start, end)


def strip_annotations(line: str) -> tuple[str, tuple[tuple[str, str, int, int], ...]]:
    """Plain text and (entity, surface, start, end) for each ``[surface](entity)``."""
    out: list[str] = []
    entities: list[tuple[str, str, int, int]] = []
    pos = 0
    length = 0
    for match in ANNOTATION.finditer(line):
        before = line[pos:match.start()]
        out.append(before)
        length += len(before)
        surface = match.group(1)
        entity = match.group(2) or _entity_from_json(match.group(3))
        entities.append((entity, surface, length, length + len(surface)))
        out.append(surface)
        length += len(surface)
        pos = match.end()
    out.append(line[pos:])
    return "".join(out), tuple(entities)


def _entity_from_json(raw: str) -> str:
    found = re.search(r'"entity"\s*:\s*"([^"]+)"', raw)
    return found.group(1) if found else "unknown"


def load_examples(paths: list[Path]) -> list[Example]:
    """Every example in the given files (or directories of ``*.yml``), in file order."""
    examples: list[Example] = []
    for path in _files(paths):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for block in doc.get("nlu", []) or []:
            if "intent" not in block:
                continue
            topic = (block.get("metadata") or {}).get("topic")
            for line in _lines(block.get("examples", "")):
                text, entities = strip_annotations(line)
                examples.append(Example(text=text, intent=str(block["intent"]), topic=topic, entities=entities))
    return examples


def _lines(raw: Any) -> list[str]:
    lines = []
    for line in str(raw or "").splitlines():
        line = line.strip()
        if line.startswith("- "):
            lines.append(line[2:].strip())
    return [line for line in lines if line]


def _files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.glob("*.yml")))
        elif path.exists():
            files.append(path)
    return files


def fingerprint(paths: list[Path], salt: str = "") -> str:
    """A hash of the files' names and contents: the model cache key."""
    digest = hashlib.sha256(salt.encode())
    for path in _files(paths):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
