"""The country recogniser on the real gazetteer: CLDR names, data/geo aliases and cities, and coordinates."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nlu.geo import DOMESTIC, Gazetteer, en_name, locate, zh_name
from nlu.normalize import normalize


def country(gazetteer: Gazetteer, text: str) -> str | None:
    place = gazetteer.country_of(normalize(text), normalize(text, lower=False))
    return place.code if place else None


@pytest.mark.parametrize(("text", "code"), [
    ("法国", "FR"), ("法國", "FR"), ("France", "FR"), ("I am in France now", "FR"),
    ("阿联酋", "AE"), ("阿聯酋", "AE"), ("UAE", "AE"), ("United Arab Emirates", "AE"), ("U.A.E.", "AE"),
    ("英国", "GB"), ("英國", "GB"), ("UK", "GB"), ("Britain", "GB"), ("the United Kingdom", "GB"),
    ("美国", "US"), ("美國", "US"), ("USA", "US"), ("America", "US"), ("U.S.", "US"),
    ("I'm stuck in the U.S. without a passport", "US"), ("united states", "US"),
    ("日本", "JP"), ("Japan", "JP"), ("柬埔寨", "KH"), ("Cambodia", "KH"),
])
def test_country_names_in_three_scripts(gazetteer: Gazetteer, text: str, code: str) -> None:
    assert country(gazetteer, text) == code


def test_country_place_fields(gazetteer: Gazetteer) -> None:
    text = "我在法國"
    place = gazetteer.country_of(normalize(text), normalize(text, lower=False))
    assert place is not None
    assert (place.code, place.kind, place.name, place.surface) == ("FR", "country", "法国", "法国")
    assert (place.start, place.end) == (2, 4)
    assert place.foreign is True


@pytest.mark.parametrize("text", [
    "please help us", "help us now", "can you help us?", "tell us what to do", "Us two are lost",
])
def test_pronoun_us_is_not_the_united_states(gazetteer: Gazetteer, text: str) -> None:
    assert gazetteer.find(normalize(text), normalize(text, lower=False)) == []


def test_acronyms_need_the_original_capitals(gazetteer: Gazetteer) -> None:
    # Without the original text there is nothing to say "US" was written in capitals.
    assert gazetteer.find(normalize("we are in the US")) == []
    assert country(gazetteer, "we are in the US") == "US"


@pytest.mark.parametrize(("text", "code"), [
    ("迪拜", "AE"), ("杜拜", "AE"), ("Dubai", "AE"), ("西港", "KH"), ("米兰", "IT"), ("Milan", "IT"),
    ("I live in Milan", "IT"), ("曼谷", "TH"), ("曼谷機場", "TH"), ("马拉喀什", "MA"), ("巴黎", "FR"),
    ("Paris", "FR"), ("new york city", "US"), ("São Paulo", "BR"), ("sao paulo", "BR"),
])
def test_cities_give_their_country(gazetteer: Gazetteer, text: str, code: str) -> None:
    place = gazetteer.country_of(normalize(text), normalize(text, lower=False))
    assert place is not None and place.kind == "city"
    assert place.code == code


@pytest.mark.parametrize(("text", "code", "surface"), [
    ("马德里", "ES", "马德里"),  # not 德里 (Delhi, IN)
    ("我在马德里丢了护照", "ES", "马德里"),
    ("白俄罗斯", "BY", "白俄罗斯"),  # not 俄罗斯
    ("印度尼西亚", "ID", "印度尼西亚"),  # not 印度
    ("南苏丹", "SS", "南苏丹"),  # not 苏丹
    ("巴布亚新几内亚", "PG", "巴布亚新几内亚"),
    ("South Sudan", "SS", "south sudan"),
    ("Papua New Guinea", "PG", "papua new guinea"),
])
def test_longest_match_wins(gazetteer: Gazetteer, text: str, code: str, surface: str) -> None:
    places = gazetteer.find(normalize(text), normalize(text, lower=False))
    assert [(p.code, p.surface) for p in places] == [(code, surface)]


def test_delhi_alone_is_still_india(gazetteer: Gazetteer) -> None:
    assert country(gazetteer, "德里") == "IN"


def test_compound_words(gazetteer: Gazetteer) -> None:
    assert country(gazetteer, "美国签证") == "US"
    text = "中国驻法国大使馆"
    places = gazetteer.find(normalize(text), normalize(text, lower=False))
    assert [p.code for p in places] == ["CN", "FR"]
    where = gazetteer.country_of(normalize(text), normalize(text, lower=False))
    assert where is not None and where.code == "FR"  # the first foreign mention, not China


def test_several_mentions_in_order(gazetteer: Gazetteer) -> None:
    text = "Paris, France"
    places = gazetteer.find(normalize(text), normalize(text, lower=False))
    assert [(p.code, p.kind) for p in places] == [("FR", "city"), ("FR", "country")]
    text = "印度尼西亚的雅加达"
    assert [(p.code, p.kind) for p in gazetteer.find(normalize(text), normalize(text, lower=False))] == [("ID", "country"), ("ID", "city")]


@pytest.mark.parametrize(("text", "code"), [
    ("香港", "HK"), ("Hong Kong", "HK"), ("在HK", "HK"), ("澳門", "MO"), ("澳门", "MO"), ("Macau", "MO"),
    ("台北", "TW"), ("臺北", "TW"), ("台灣", "TW"), ("北京", "CN"), ("中国", "CN"), ("China", "CN"),
])
def test_domestic_regions_are_recognised_but_not_foreign(gazetteer: Gazetteer, text: str, code: str) -> None:
    place = gazetteer.country_of(normalize(text), normalize(text, lower=False))
    assert place is not None
    assert place.code == code
    assert place.code in DOMESTIC
    assert place.foreign is False


def test_domestic_official_names() -> None:
    assert zh_name("HK") == "中国香港"
    assert zh_name("TW") == "中国台湾"
    assert zh_name("FR") == "法国"
    assert en_name("MO") == "Macao, China"
    assert en_name("AE") == "United Arab Emirates"


def test_gazetteer_size(gazetteer: Gazetteer) -> None:
    assert gazetteer.city_count >= 400
    assert gazetteer.country_count >= 200


def test_nothing_found_in_plain_text(gazetteer: Gazetteer) -> None:
    for text in ("护照丢了怎么办", "my passport was stolen", "转人工", ""):
        assert gazetteer.find(normalize(text), normalize(text, lower=False)) == []
        assert gazetteer.country_of(normalize(text), normalize(text, lower=False)) is None


@pytest.mark.parametrize(("lat", "lon", "code"), [
    (48.8566, 2.3522, "FR"),  # Paris
    (25.2048, 55.2708, "AE"),  # Dubai
    (22.3193, 114.1694, "HK"),  # Hong Kong
    (25.0330, 121.5654, "TW"),  # Taipei
    (13.7563, 100.5018, "TH"),  # Bangkok
    (40.7128, -74.0060, "US"),  # New York
])
def test_locate(lat: float, lon: float, code: str) -> None:
    assert locate(lat, lon) == code


@pytest.mark.parametrize("text", ["我在ＵＳＡ", "我在ＵＫ读书"])
def test_full_width_acronyms(gazetteer: Gazetteer, text: str) -> None:
    assert country(gazetteer, text) in ("US", "GB")


def test_offsets_all_index_the_same_text(gazetteer: Gazetteer) -> None:
    text = "  I am in the  UK, near London"
    normalized = normalize(text)
    places = gazetteer.find(normalized, normalize(text, lower=False))
    assert [p.code for p in places] == ["GB", "GB"]
    for place in places:
        assert normalized[place.start:place.end] == place.surface.lower()


@pytest.mark.parametrize("text", ["关岛", "Guam"])
def test_guam_is_its_own_territory(gazetteer: Gazetteer, text: str) -> None:
    """Guam keeps its ISO code; the directory serves it from the US (tests/knowledge)."""
    assert country(gazetteer, text) == "GU"


def test_saipan_is_routed_to_the_us(gazetteer: Gazetteer) -> None:
    assert country(gazetteer, "塞班岛") == "US"


def _longest_first_scan(gazetteer: Gazetteer, text: str) -> list[tuple[str, int, int]]:
    """The plain scan the gazetteer's Chinese matcher must agree with: at each Chinese character try every
    length from the longest name down to two characters; a hit is taken whole and the scan goes on after it."""
    found, i = [], 0
    while i < len(text):
        if not re.match(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]", text[i]):
            i += 1
            continue
        for length in range(min(max(map(len, gazetteer.cjk)), len(text) - i), 1, -1):
            if text[i:i + length] in gazetteer.cjk:
                found.append((text[i:i + length], i, i + length))
                i += length
                break
        else:
            i += 1
    return found


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_chinese_place_names_are_found_as_by_a_plain_longest_first_scan(gazetteer: Gazetteer,
                                                                          data: st.DataObject) -> None:
    names = sorted(gazetteer.cjk)
    pieces = data.draw(st.lists(st.one_of(st.sampled_from(names), st.sampled_from(names).map(lambda n: n[:-1]),
                                          st.text(alphabet="我在的了被人市中国北京巴黎东A 1", max_size=4)),
                                max_size=8))
    text = "".join(pieces)
    assert [(p.surface, p.start, p.end) for p in gazetteer._find_cjk(text)] == _longest_first_scan(gazetteer, text)
