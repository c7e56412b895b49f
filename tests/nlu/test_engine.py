"""decide() (safety net and confidence floor) and NLU.understand_now on the real built-in model."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlu.engine import CONFIDENCE_FLOOR, EMERGENCY_FLOOR, MAX_CHARS, NLU, decide, is_emergency
from nlu.lexicon import Lexicon
from nlu.normalize import normalize
from nlu.types import FALLBACK
from tests.nlu.conftest import DATA

EMERGENCIES = ["emergency_arrest", "emergency_crime", "emergency_medical", "emergency_missing",
               "emergency_kidnap", "emergency_disaster", "emergency_death"]


# --- the safety net ---------------------------------------------------------------------------------------------

def test_lexicon_hit_raises_a_non_emergency_top() -> None:
    ranking = [("faq", 0.6), ("emergency_kidnap", 0.1), ("greet", 0.1), ("emergency_crime", 0.08), ("thank", 0.12)]
    assert decide(ranking, ["emergency_kidnap"]) == ("emergency_kidnap", CONFIDENCE_FLOOR, True)


def test_lexicon_hit_keeps_a_probability_above_the_floor() -> None:
    ranking = [("faq", 0.5), ("emergency_arrest", 0.45), ("greet", 0.05)]
    assert decide(ranking, ["emergency_arrest"]) == ("emergency_arrest", 0.45, True)


def test_lexicon_hit_raises_a_low_confidence_result() -> None:
    flat = [("out_of_scope", 0.15), ("faq", 0.14), ("greet", 0.13), ("emergency_death", 0.05)]
    intent, confidence, raised = decide(flat, ["emergency_death"])
    assert (intent, raised) == ("emergency_death", True)
    assert confidence >= CONFIDENCE_FLOOR


def test_several_hits_the_model_chooses_among_them() -> None:
    ranking = [("faq", 0.5), ("emergency_crime", 0.1), ("emergency_kidnap", 0.3), ("greet", 0.1)]
    assert decide(ranking, ["emergency_crime", "emergency_kidnap"])[:1] == ("emergency_kidnap",)
    assert decide(ranking, ["emergency_kidnap", "emergency_crime"])[:1] == ("emergency_kidnap",)


def test_hit_with_an_empty_ranking() -> None:
    assert decide([], ["emergency_missing"]) == ("emergency_missing", CONFIDENCE_FLOOR, True)
    assert decide([], []) == (FALLBACK, 0.0, False)


@pytest.mark.parametrize("hits", [["emergency_kidnap"], ["emergency_crime"], ["emergency_crime", "emergency_kidnap"]])
def test_confident_emergency_top_is_not_lowered(hits: list[str]) -> None:
    ranking = [("emergency_kidnap", 0.8), ("emergency_crime", 0.15), ("faq", 0.05)]
    assert decide(ranking, hits) == ("emergency_kidnap", 0.8, False)


def test_emergency_top_confirmed_by_the_lexicon_stays_even_when_weak() -> None:
    ranking = [("emergency_arrest", 0.2), ("faq", 0.19), ("greet", 0.18), ("thank", 0.17)]
    assert decide(ranking, ["emergency_arrest"]) == ("emergency_arrest", 0.2, False)


def test_weak_emergency_top_yields_to_the_lexicon_hit() -> None:
    ranking = [("emergency_kidnap", 0.35), ("emergency_crime", 0.3), ("faq", 0.35)]
    intent, _, raised = decide(ranking, ["emergency_crime"])
    assert (intent, raised) == ("emergency_crime", True)


# --- the confidence floor ---------------------------------------------------------------------------------------

def test_flat_ranking_below_the_floor_is_fallback() -> None:
    flat = [("faq", 0.25), ("greet", 0.2), ("out_of_scope", 0.2), ("thank", 0.2), ("emergency_crime", 0.15)]
    assert decide(flat, []) == (FALLBACK, 0.25, False)


def test_custom_floor() -> None:
    ranking = [("faq", 0.5), ("greet", 0.5)]
    assert decide(ranking, [], floor=0.6)[0] == FALLBACK
    assert decide(ranking, [], floor=0.4) == ("faq", 0.5, False)


def test_result_at_the_floor_is_kept() -> None:
    assert decide([("faq", CONFIDENCE_FLOOR), ("greet", 0.2)], []) == ("faq", CONFIDENCE_FLOOR, False)


def test_emergency_top_at_the_emergency_floor_survives() -> None:
    ranking = [("emergency_medical", EMERGENCY_FLOOR), ("faq", 0.25), ("greet", 0.25), ("thank", 0.2)]
    assert decide(ranking, []) == ("emergency_medical", EMERGENCY_FLOOR, False)
    # …even with a stricter general floor.
    assert decide(ranking, [], floor=0.9)[0] == "emergency_medical"


def test_weak_emergency_top_with_emergency_mass_survives() -> None:
    ranking = [("emergency_crime", 0.2), ("emergency_kidnap", 0.2), ("emergency_arrest", 0.18),
               ("emergency_missing", 0.15), ("faq", 0.15), ("greet", 0.12)]
    assert decide(ranking, [])[:1] == ("emergency_crime",)


def test_weak_non_emergency_top_over_emergency_mass_goes_to_the_emergency() -> None:
    ranking = [("faq", 0.22), ("emergency_crime", 0.21), ("emergency_kidnap", 0.2), ("emergency_arrest", 0.19),
               ("emergency_missing", 0.18)]
    assert decide(ranking, []) == ("emergency_crime", 0.21, False)


def test_weak_emergency_without_mass_falls_back() -> None:
    ranking = [("emergency_death", 0.25), ("faq", 0.25), ("greet", 0.25), ("thank", 0.25)]
    assert decide(ranking, [])[0] == FALLBACK


# --- the real lexicon --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return Lexicon.load(DATA / "nlu" / "emergency_lexicon.yml")


def test_lexicon_covers_every_emergency(lexicon: Lexicon) -> None:
    assert sorted(lexicon.phrases) == sorted(EMERGENCIES)
    assert lexicon.size() > 100


@pytest.mark.parametrize(("text", "intent"), [
    ("我被綁架了", "emergency_kidnap"),  # Traditional
    ("I was ＫＩＤＮＡＰＰＥＤ", "emergency_kidnap"),  # full-width
    ("I WAS KIDNAPPED", "emergency_kidnap"),
    ("救命", "emergency_crime"),
    ("I got mugged", "emergency_crime"),
])
def test_lexicon_matches_normalised_text(lexicon: Lexicon, text: str, intent: str) -> None:
    assert intent in lexicon.match(normalize(text))


@pytest.mark.parametrize("text", [
    "my phone died", "护照丢了怎么办", "逾期会被拘留吗", "will I be arrested if I overstay", "ridiculous",
    "遇到抢劫怎么办", "累死了",
])
def test_lexicon_ignores_routine_messages(lexicon: Lexicon, text: str) -> None:
    assert lexicon.match(normalize(text)) == []


# --- the real model end to end -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "intent"), [
    ("救命 我被绑架了", "emergency_kidnap"),
    ("救命 我被綁架了", "emergency_kidnap"),
    ("my friend has been arrested in Dubai", "emergency_arrest"),
    ("救救我", "emergency_crime"),
    ("我在缅甸被卖到电诈园区了", "emergency_kidnap"),
])
def test_lexicon_phrases_end_as_emergencies(nlu: NLU, text: str, intent: str) -> None:
    result = nlu.understand_now(text)
    assert result.intent == intent
    assert result.engine == "builtin"
    assert result.confidence >= EMERGENCY_FLOOR
    # safety_net is set exactly when the model alone would have said something else
    assert result.safety_net == (result.ranking[0][0] != intent)


def test_safety_net_raises_what_the_model_missed(nlu: NLU) -> None:
    """At least one of these lexicon-only phrasings is not the model's own choice, and still ends as an emergency."""
    raised = []
    for text in ("请问被捕了怎么办", "my friend has been arrested in Dubai", "救救我", "收容所"):
        result = nlu.understand_now(text)
        assert is_emergency(result.intent), text
        if result.safety_net:
            assert not (is_emergency(result.ranking[0][0]) and result.ranking[0][0] == result.intent)
            raised.append(text)
    assert raised


@pytest.mark.parametrize(("text", "intent"), [
    ("护照被偷了，人没事，怎么补办", "faq"),
    ("will I be arrested for overstaying my visa?", "faq"),
    ("immigration is holding me at the airport", "emergency_arrest"),
    ("两个人拿刀抢了我的包", "emergency_crime"),
    ("我护照丢了", "faq"),
    ("签证过期了会被抓吗", "faq"),
    ("你好", "greet"),
    ("谢谢你们", "thank"),
    ("转人工", "request_human"),
])
def test_near_misses(nlu: NLU, text: str, intent: str) -> None:
    result = nlu.understand_now(text)
    assert result.intent == intent, result.ranking[:3]
    assert result.confidence >= CONFIDENCE_FLOOR


def test_understanding_fields(nlu: NLU) -> None:
    text = "我老公在迪拜被警察抓走了"
    result = nlu.understand_now(text)
    assert result.text == text
    assert result.intent == "emergency_arrest"
    assert (result.country, result.foreign, result.language) == ("AE", True, "zh")
    assert result.entities == [{"entity": "city", "value": "迪拜", "text": "迪拜", "start": 4, "end": 6,
                                "country": "AE", "located": True}]
    assert 1 <= len(result.ranking) <= 5
    assert abs(sum(p for _, p in nlu.model.rank(normalize(text))) - 1.0) < 1e-6
    assert result.as_json()["intent"] == "emergency_arrest"


def test_foreign_country_preferred_over_china(nlu: NLU) -> None:
    result = nlu.understand_now("怎么联系中国驻法国大使馆")
    assert (result.country, result.foreign) == ("FR", True)
    assert [e["country"] for e in result.entities] == ["CN", "FR"]


def test_domestic_only(nlu: NLU) -> None:
    result = nlu.understand_now("我在香港护照丢了")
    assert (result.country, result.foreign) == ("HK", False)
    result = nlu.understand_now("护照丢了怎么办")
    assert (result.country, result.foreign, result.entities) == (None, None, [])


def test_english_message(nlu: NLU) -> None:
    result = nlu.understand_now("I was robbed at gunpoint in Johannesburg")
    assert result.language == "en"
    assert result.intent == "emergency_crime"
    assert result.country == "ZA"


def test_very_long_message_is_truncated_not_rejected(nlu: NLU) -> None:
    result = nlu.understand_now("我被绑架了 " + "啊" * (MAX_CHARS * 3))
    assert result.intent == "emergency_kidnap"


def test_empty_message(nlu: NLU) -> None:
    result = nlu.understand_now("")
    assert result.intent in (FALLBACK, "out_of_scope", "greet")
    assert result.country is None


async def test_understand_without_rasa_uses_builtin(nlu_cache: Path) -> None:
    engine = NLU.load(DATA, nlu_cache)
    result = await engine.understand("救命 我被绑架了")
    assert (result.intent, result.engine) == ("emergency_kidnap", "builtin")
    assert engine.stats == {"rasa": 0, "rasa_fallbacks": 0, "builtin": 1}
