"""The NLU training and test data themselves, read with the project's Rasa YAML loader."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from nlu.data import Example, fingerprint, load_examples, strip_annotations
from nlu.normalize import normalize
from tests.nlu.conftest import DATA

EMERGENCIES = ["emergency_arrest", "emergency_crime", "emergency_medical", "emergency_missing",
               "emergency_kidnap", "emergency_disaster", "emergency_death"]
OTHERS = ["faq", "request_human", "greet", "thank", "goodbye", "out_of_scope"]
DESIGN_INTENTS = EMERGENCIES + OTHERS


@pytest.fixture(scope="module")
def train() -> list[Example]:
    return load_examples([DATA / "nlu" / "train"])


@pytest.fixture(scope="module")
def test() -> list[Example]:
    return load_examples([DATA / "nlu" / "test"])


def faq_topics() -> set[str]:
    topics = set()
    for path in sorted((DATA / "kb").glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if doc.get("kind") == "faq":
            topics.add(str(doc["slug"]))
    return topics


def test_design_intents_and_nothing_else(train: list[Example], test: list[Example]) -> None:
    assert {e.intent for e in train} == set(DESIGN_INTENTS)
    assert {e.intent for e in test} == set(DESIGN_INTENTS)


@pytest.mark.parametrize("intent", DESIGN_INTENTS)
def test_enough_training_examples(train: list[Example], intent: str) -> None:
    count = sum(1 for e in train if e.intent == intent)
    assert count >= (80 if intent in EMERGENCIES else 50), count


def test_design_seed_topics_exist() -> None:
    assert faq_topics() >= {"lost_passport", "passport_renewal", "travel_document", "visa", "notarization",
                            "consular_scope", "embassy_contact", "safety_alert", "registration", "labor_dispute",
                            "hotline", "fraud_check", "money_trouble"}


def test_faq_examples_cover_every_topic(train: list[Example], test: list[Example]) -> None:
    topics = faq_topics()
    train_topics = Counter(e.topic for e in train if e.intent == "faq")
    test_topics = Counter(e.topic for e in test if e.intent == "faq")
    assert set(train_topics) == topics  # every seed topic, and no topic without a KB entry
    assert set(test_topics) == topics
    assert min(train_topics.values()) >= 10, train_topics


def test_test_split_is_large_enough(train: list[Example], test: list[Example]) -> None:
    assert len(test) / (len(train) + len(test)) >= 0.15
    for intent in DESIGN_INTENTS:
        assert sum(1 for e in test if e.intent == intent) >= 5, intent


def test_no_sentence_shared_between_train_and_test(train: list[Example], test: list[Example]) -> None:
    train_texts = {normalize(e.text) for e in train}
    shared = [e.text for e in test if normalize(e.text) in train_texts]
    assert shared == []


def test_no_duplicates_within_a_split(train: list[Example], test: list[Example]) -> None:
    # Exact repeats only: 謝謝 next to 谢谢 is a deliberate Traditional variant.
    for examples in (train, test):
        counts = Counter(e.text for e in examples)
        assert [t for t, c in counts.items() if c > 1] == []


def test_no_contradictory_labels(train: list[Example], test: list[Example]) -> None:
    labels: dict[str, set[str]] = {}
    for e in train + test:
        labels.setdefault(normalize(e.text), set()).add(e.intent)
    assert {t: ls for t, ls in labels.items() if len(ls) > 1} == {}


def test_entity_annotations_are_country_or_city(train: list[Example], test: list[Example]) -> None:
    entities = Counter(entity for e in train + test for entity, *_ in e.entities)
    assert set(entities) == {"country", "city"}
    for e in train + test:
        for _, surface, start, end in e.entities:
            assert e.text[start:end] == surface


def test_no_annotation_left_in_text(train: list[Example], test: list[Example]) -> None:
    leftover = re.compile(r"\]\(|\]\{")
    assert [e.text for e in train + test if leftover.search(e.text)] == []


def test_every_file_is_rasa_nlu_yaml() -> None:
    for path in sorted((DATA / "nlu").glob("*/*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert str(doc["version"]).startswith("3"), path
        for block in doc["nlu"]:
            assert set(block) <= {"intent", "examples", "metadata"}, (path, block.get("intent"))
            assert isinstance(block["examples"], str)


# --- the loader's own behaviour ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("line", "text", "entities"), [
    ("我在[迪拜](city)被抓了", "我在迪拜被抓了", (("city", "迪拜", 2, 4),)),
    ("在[美国](country)[洛杉矶](city)护照丢了", "在美国洛杉矶护照丢了",
     (("country", "美国", 1, 3), ("city", "洛杉矶", 3, 6))),
    ('lost in [Madrid]{"entity": "city", "value": "马德里"}', "lost in Madrid", (("city", "Madrid", 8, 14),)),
    ("no annotation here", "no annotation here", ()),
])
def test_strip_annotations(line: str, text: str, entities: tuple[tuple[str, str, int, int], ...]) -> None:
    assert strip_annotations(line) == (text, entities)


def test_loader_reads_topics_and_skips_other_blocks(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(
        'version: "3.1"\nnlu:\n'
        "- intent: faq\n  metadata:\n    topic: visa\n  examples: |\n    - 签证过期了\n    - [UAE](country) visa\n"
        "- synonym: dubai\n  examples: |\n    - 迪拜\n"
        "- intent: greet\n  examples: |\n    - 你好\n\n    not a list item\n",
        encoding="utf-8")
    examples = load_examples([tmp_path])
    assert [(e.intent, e.topic, e.text) for e in examples] == [
        ("faq", "visa", "签证过期了"), ("faq", "visa", "UAE visa"), ("greet", None, "你好")]
    assert examples[1].entities == (("country", "UAE", 0, 3),)


def test_fingerprint_follows_content(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("nlu: []\n", encoding="utf-8")
    first = fingerprint([tmp_path])
    assert fingerprint([tmp_path]) == first
    assert fingerprint([tmp_path], salt="v2") != first
    (tmp_path / "a.yml").write_text("nlu: []\n# changed\n", encoding="utf-8")
    assert fingerprint([tmp_path]) != first
