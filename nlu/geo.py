"""Country recogniser: country names in three scripts, short forms, cities, and coordinates.

Names come from CLDR (babel) for Simplified, Traditional and English, plus the curated alias
and city files in ``data/geo/``. Mainland China, Hong Kong, Macao and Taiwan are recognised but
marked as not foreign: 12308 serves citizens in foreign countries.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml
from babel import Locale

from nlu.normalize import normalize

DOMESTIC = frozenset({"CN", "HK", "MO", "TW"})
# CLDR codes that are not countries or territories people live in.
NOT_PLACES = frozenset({"EU", "EZ", "UN", "QO", "ZZ", "XA", "XB", "AQ", "BV", "HM", "TF", "UM", "CP", "DG", "IC",
                        "EA", "AC", "TA"})
# Official-usage names for the domestic regions (CLDR's long forms are kept as aliases).
ZH_NAMES = {"HK": "中国香港", "MO": "中国澳门", "TW": "中国台湾", "CN": "中国"}
_WORD = re.compile(r"[a-z][a-z'’.&-]*")
_CJK = re.compile(r"[\u3400-\u9fff]")
_ACRONYM = re.compile(r"^(?:[A-Z]\.?){2,3}$")
MAX_WORDS = 5


@dataclass(frozen=True)
class Place:
    """A recognised mention of a country or city."""

    code: str
    kind: str  # country | city
    surface: str
    start: int
    end: int
    name: str

    @property
    def foreign(self) -> bool:
        return self.code not in DOMESTIC


class Gazetteer:
    """Finds country and city mentions in normalised text; longest match wins."""

    def __init__(self, names: dict[str, tuple[str, str, str]],
                 upper: dict[str, tuple[str, str, str]] | None = None) -> None:
        self.upper = upper or {}
        self._upper = (re.compile(r"(?<![A-Za-z])(" + "|".join(map(re.escape, sorted(self.upper, key=len, reverse=True)))
                                  + r")(?![A-Za-z])") if self.upper else None)
        self.cjk = {k: v for k, v in names.items() if _CJK.search(k)}
        self.latin = {k: v for k, v in names.items() if not _CJK.search(k)}
        # The lengths of the names that start with each character, longest first: most characters start none.
        starts: dict[str, set[int]] = {}
        for name in self.cjk:
            if len(name) > 1:
                starts.setdefault(name[0], set()).add(len(name))
        self._cjk_lengths = {ch: sorted(lengths, reverse=True) for ch, lengths in starts.items()}
        self.country_count = len({v[0] for v in names.values()})
        self.city_count = len({(v[0], v[2]) for v in names.values() if v[1] == "city"})

    @classmethod
    def load(cls, data_dir: Path) -> Gazetteer:
        """Build from CLDR and ``data/geo/*.yml``."""
        names: dict[str, tuple[str, str, str]] = {}
        upper: dict[str, tuple[str, str, str]] = {}
        for code, name in _cldr_names().items():
            for variant in name:
                _add(names, variant, code, "country", zh_name(code))
        aliases = _yaml(data_dir / "geo" / "country_aliases.yml")
        for group in ("aliases", "domestic"):
            for code, variants in (aliases.get(group) or {}).items():
                for variant in variants or []:
                    variant = str(variant)
                    if _ACRONYM.match(variant):
                        # "US", "UK": only in capitals, or "help us" would be the United States.
                        for form in (variant, variant.replace(".", "")):
                            upper.setdefault(form, (str(code), "country", zh_name(str(code))))
                    else:
                        _add(names, variant, str(code), "country", zh_name(str(code)))
        for city in (_yaml(data_dir / "geo" / "cities.yml").get("cities") or []):
            for variant in [city["name"], *(city.get("aliases") or [])]:
                _add(names, str(variant), str(city["country"]), "city", str(city["name"]))
        return cls(names, upper)

    def find(self, text: str, original: str = "") -> list[Place]:
        """Every mention in ``text`` (already normalised; ``original`` for capitalised acronyms), in order."""
        places = self._find_cjk(text) + self._find_latin(text)
        if self._upper is not None and original:
            for m in self._upper.finditer(original):
                hit = self.upper[m.group(1)]
                places.append(Place(hit[0], hit[1], m.group(0), m.start(), m.end(), hit[2]))
        return sorted(places, key=lambda p: p.start)

    def country_of(self, text: str, original: str = "") -> Place | None:
        """The place that says where the person is: the first foreign mention, else the first one."""
        places = self.find(text, original)
        for place in places:
            if place.foreign:
                return place
        return places[0] if places else None

    def _find_cjk(self, text: str) -> list[Place]:
        found: list[Place] = []
        i, n = 0, len(text)
        while i < n:
            lengths = self._cjk_lengths.get(text[i])
            if lengths is None or not _CJK.match(text[i]):
                i += 1
                continue
            for length in lengths:
                if length > n - i:
                    continue
                hit = self.cjk.get(text[i:i + length])
                if hit:
                    found.append(Place(hit[0], hit[1], text[i:i + length], i, i + length, hit[2]))
                    i += length
                    break
            else:
                i += 1
        return found

    def _find_latin(self, text: str) -> list[Place]:
        words = [(m.group().rstrip(".'’-"), m.start(), m.end()) for m in _WORD.finditer(text)]
        found: list[Place] = []
        i = 0
        while i < len(words):
            for size in range(min(MAX_WORDS, len(words) - i), 0, -1):
                key = " ".join(w for w, _, _ in words[i:i + size])
                hit = self.latin.get(key) or self.latin.get(text[words[i][1]:words[i + size - 1][2]])
                if hit:
                    start, end = words[i][1], words[i + size - 1][2]
                    found.append(Place(hit[0], hit[1], text[start:end], start, end, hit[2]))
                    i += size
                    break
            else:
                i += 1
        return found


def _add(names: dict[str, tuple[str, str, str]], variant: str, code: str, kind: str, name: str) -> None:
    """First name wins: countries are added before cities, so a city never takes a country's name."""
    key = normalize(variant).rstrip(".")
    if len(key) >= 2 and key not in names:
        names[key] = (code, kind, name)


@lru_cache(maxsize=1)
def _cldr_names() -> dict[str, tuple[str, ...]]:
    zh, hant, en = (_territories(tag) for tag in ("zh", "zh_Hant", "en"))
    result: dict[str, tuple[str, ...]] = {}
    for code, name in en.items():
        if len(code) != 2 or not code.isalpha() or code in NOT_PLACES:
            continue
        variants = {name, zh.get(code, ""), hant.get(code, ""), ZH_NAMES.get(code, "")}
        result[code] = tuple(sorted(v for v in variants if v))
    return result


@lru_cache(maxsize=4)
def _territories(locale: str) -> Mapping[str, str]:
    """CLDR's territory names in ``locale`` (babel parses the locale again on every call; about 9 µs)."""
    return Locale.parse(locale).territories


def zh_name(code: str) -> str:
    """The country's Simplified Chinese name in official usage."""
    return ZH_NAMES.get(code) or _territories("zh").get(code, code)


def en_name(code: str) -> str:
    """The country's English name."""
    if code in ("HK", "MO", "TW"):
        return {"HK": "Hong Kong, China", "MO": "Macao, China", "TW": "Taiwan, China"}[code]
    return _territories("en").get(code, code)


def locate(latitude: float, longitude: float) -> str | None:
    """The ISO country code at a coordinate, offline (GeoNames data in reverse_geocode)."""
    import reverse_geocode

    try:
        place = reverse_geocode.get((latitude, longitude))
    except (ValueError, IndexError):
        return None
    code = place.get("country_code") if isinstance(place, dict) else None
    return str(code) if code else None


def _yaml(path: Path) -> dict:  # type: ignore[type-arg]
    if not path.exists():
        return {}
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
