"""Validation of knowledge-base entries and directory data: every problem names file, entry, field, reason."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import phonenumbers
from babel import Locale
from phonenumbers import shortnumberinfo

SLUG = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
KINDS = ("faq", "playbook")
EMERGENCY_SERVICES = ("police", "ambulance", "fire", "unified")
MAX_ANSWER_ZH = 1200
LEVELS = ("注意安全", "谨慎前往", "暂勿前往")  # safety-alert levels, lowest to highest
LEVELS_EN = {"注意安全": "Stay alert", "谨慎前往": "Travel with caution", "暂勿前往": "Do not travel for now"}
MAX_ALERT_ZH = 300
# The emergency first reply is one passive message (WeChat: at most 2048 bytes): title, opening, numbers,
# duty phone, 12308, up to six steps and the queue line must fit, in Chinese (3 bytes a character) and English.
PLAYBOOK_LIMITS = {"answer.zh": 100, "answer.en": 300, "step.zh": 40, "step.en": 120}
BEIJING = timezone(timedelta(hours=8))


@dataclass(frozen=True)
class Problem:
    """One validation failure."""

    file: str
    entry: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.entry}: {self.field}: {self.reason}"


def iso_codes() -> set[str]:
    return {c for c in Locale.parse("en").territories if len(c) == 2 and c.isalpha()}


def check_entry(data: Any, file: str) -> list[Problem]:
    """Problems with one knowledge-base entry (an empty list when it is valid)."""
    if not isinstance(data, dict):
        return [Problem(file, "?", "(entry)", "must be a mapping")]
    slug = str(data.get("slug", "?"))
    problems: list[Problem] = []

    def bad(field: str, reason: str) -> None:
        problems.append(Problem(file, slug, field, reason))

    if not SLUG.match(slug):
        bad("slug", "lower-case letters, digits and _ only, starting with a letter")
    kind = data.get("kind")
    if kind not in KINDS:
        bad("kind", f"must be one of {', '.join(KINDS)}")
    _text_map(data.get("title"), "title", bad, required=True)
    questions = data.get("questions")
    if not isinstance(questions, list) or not questions or not all(isinstance(q, str) and q.strip()
                                                                     for q in questions):
        bad("questions", "a non-empty list of non-empty strings")
    _text_map(data.get("answer"), "answer", bad, required=True, limit=MAX_ANSWER_ZH)
    overrides = data.get("overrides") or {}
    if not isinstance(overrides, dict):
        bad("overrides", "a mapping of ISO country code to {zh, en}")
    else:
        codes = iso_codes()
        for code, text in overrides.items():
            if code not in codes:
                bad(f"overrides.{code}", "not an ISO 3166-1 alpha-2 code")
            _text_map(text, f"overrides.{code}", bad, required=True, limit=MAX_ANSWER_ZH)
    _check_sources(data.get("sources"), bad)
    _check_date(data.get("last_reviewed"), "last_reviewed", bad)
    if kind == "playbook":
        if not str(data.get("intent", "")).startswith("emergency_"):
            bad("intent", "a playbook needs an emergency_* intent")
        if data.get("priority") not in (1, 2):
            bad("priority", "1 (danger to life now) or 2")
        steps = data.get("steps")
        if not isinstance(steps, dict) or not isinstance(steps.get("zh"), list) or not 1 <= len(steps["zh"]) <= 6:
            bad("steps.zh", "a list of 1 to 6 steps")
        else:
            for lang in ("zh", "en"):
                for i, step in enumerate(steps.get(lang) or []):
                    if not isinstance(step, str) or not step.strip():
                        bad(f"steps.{lang}[{i}]", "each step is one line of text (quote it if it contains ': ')")
                    elif len(step) > PLAYBOOK_LIMITS[f"step.{lang}"]:
                        bad(f"steps.{lang}[{i}]", f"{len(step)} characters; keep a step under "
                                                  f"{PLAYBOOK_LIMITS[f'step.{lang}']} so the first reply fits")
        answer = data.get("answer") if isinstance(data.get("answer"), dict) else {}
        for lang in ("zh", "en"):
            if len(str(answer.get(lang) or "")) > PLAYBOOK_LIMITS[f"answer.{lang}"]:
                bad(f"answer.{lang}", f"the opening of an emergency reply: keep it under "
                                      f"{PLAYBOOK_LIMITS[f'answer.{lang}']} characters so the first reply fits")
        _text_map(data.get("followup"), "followup", bad, required=True)
    return problems


def _text_map(value: Any, field: str, bad: Any, *, required: bool, limit: int | None = None) -> None:
    if value is None and not required:
        return
    if not isinstance(value, dict) or not isinstance(value.get("zh"), str) or not value["zh"].strip():
        bad(f"{field}.zh", "required text")
        return
    if limit and len(value["zh"]) > limit:
        bad(f"{field}.zh", f"{len(value['zh'])} characters; keep it under {limit}")
    if "en" in value and not isinstance(value["en"], str):
        bad(f"{field}.en", "must be text")


def _check_sources(sources: Any, bad: Any) -> None:
    if not isinstance(sources, list) or not sources:
        bad("sources", "at least one source with url and date")
        return
    for i, source in enumerate(sources):
        if not isinstance(source, dict) or not str(source.get("url", "")).startswith(("http://", "https://")):
            bad(f"sources[{i}].url", "an http(s) URL")
        elif not source.get("date"):
            bad(f"sources[{i}].date", "the source's date (or n.d.)")


def _check_date(value: Any, field: str, bad: Any) -> None:
    if isinstance(value, date):
        return
    try:
        date.fromisoformat(str(value))
    except ValueError:
        bad(field, "a date as YYYY-MM-DD")


def check_emergency(entry: Any, file: str) -> list[Problem]:
    """An emergency-numbers entry: every number an emergency number for that country, or explained."""
    if not isinstance(entry, dict):
        return [Problem(file, "?", "(entry)", "must be a mapping")]
    iso = str(entry.get("iso", "?"))
    problems: list[Problem] = []
    if iso not in iso_codes():
        problems.append(Problem(file, iso, "iso", "not an ISO 3166-1 alpha-2 code"))
    exceptions = entry.get("exceptions") or {}
    numbers = [(s, entry.get(s)) for s in EMERGENCY_SERVICES if entry.get(s)]
    if not numbers:
        problems.append(Problem(file, iso, "police/ambulance/fire/unified", "at least one number"))
    for service, number in numbers:
        if not re.fullmatch(r"[0-9]{2,6}", str(number)):
            problems.append(Problem(file, iso, service, f"{number!r} is not a short number"))
        elif not shortnumberinfo.is_emergency_number(str(number), iso) and not exceptions.get(service):
            problems.append(Problem(file, iso, service,
                                    f"{number} is not an emergency number for {iso} in libphonenumber; "
                                    "correct it or explain it under exceptions"))
    if not (entry.get("source") or {}).get("url"):
        problems.append(Problem(file, iso, "source", "a source with url and date"))
    return problems


def check_mission(entry: Any, file: str) -> list[Problem]:
    """A mission: its phone numbers parse and are valid numbers of that country."""
    if not isinstance(entry, dict):
        return [Problem(file, "?", "(entry)", "must be a mapping")]
    iso = str(entry.get("iso", "?"))
    name = str(entry.get("name", "?"))
    problems: list[Problem] = []
    if iso not in iso_codes():
        problems.append(Problem(file, name, "iso", "not an ISO 3166-1 alpha-2 code"))
    if entry.get("kind") not in ("embassy", "consulate"):
        problems.append(Problem(file, name, "kind", "embassy or consulate"))
    for field in ("phone", "duty_phone", "duty_phone_alt"):
        number = entry.get(field)
        if number is None:
            continue
        try:
            parsed = phonenumbers.parse(str(number), None)
        except phonenumbers.NumberParseException as exc:
            problems.append(Problem(file, name, field, f"{number!r} does not parse: {exc}"))
            continue
        if not phonenumbers.is_valid_number(parsed):
            problems.append(Problem(file, name, field, f"{number} is not a valid number"))
        elif phonenumbers.region_code_for_number(parsed) != iso and iso in iso_codes():
            problems.append(Problem(file, name, field, f"{number} is not a number in {iso}"))
    if not (entry.get("source") or {}).get("url"):
        problems.append(Problem(file, name, "source", "a source with url and date"))
    return problems


def alert_window(data: dict[str, Any]) -> tuple[datetime, datetime]:
    """When an alert starts and stops being shown (UTC).

    A plain date is a day in Beijing time: ``starts_at`` from its first moment, ``ends_at``
    through its last (an alert "valid until 31 December" is shown all of that day).
    """
    return _moment(data["starts_at"], end=False), _moment(data["ends_at"], end=True)


def is_live(data: dict[str, Any], now: datetime | None = None) -> bool:
    starts, ends = alert_window(data)
    now = now or datetime.now(UTC)
    return starts <= now < ends


def _moment(value: Any, *, end: bool) -> datetime:
    text = str(value)
    if len(text) == 10:
        day = date.fromisoformat(text)
        if end:
            return datetime.combine(day + timedelta(days=1), time(0), BEIJING).astimezone(UTC)
        return datetime.combine(day, time(0), BEIJING).astimezone(UTC)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=BEIJING)
    return moment.astimezone(UTC)


def check_alert(data: Any, entry: str = "alert", file: str = "console") -> list[Problem]:
    """Problems with one alert's content."""
    if not isinstance(data, dict):
        return [Problem(file, entry, "(alert)", "must be a mapping")]
    problems: list[Problem] = []

    def bad(field: str, reason: str) -> None:
        problems.append(Problem(file, entry, field, reason))

    if data.get("country") not in iso_codes():
        bad("country", "an ISO 3166-1 alpha-2 code such as TH")
    if data.get("level") not in LEVELS:
        bad("level", "one of " + " / ".join(LEVELS))
    text = data.get("text")
    if not isinstance(text, dict) or not str(text.get("zh") or "").strip():
        bad("text.zh", "required text")
    else:
        if len(text["zh"]) > MAX_ALERT_ZH:
            bad("text.zh", f"{len(text['zh'])} characters; keep it under {MAX_ALERT_ZH}")
        if text.get("en") is not None and not isinstance(text.get("en"), str):
            bad("text.en", "must be text")
        elif len(str(text.get("en") or "")) > 2 * MAX_ALERT_ZH:
            bad("text.en", f"keep it under {2 * MAX_ALERT_ZH} characters")
    moments: dict[str, datetime] = {}
    for field in ("starts_at", "ends_at"):
        value = data.get(field)
        try:
            moments[field] = _moment(value, end=field == "ends_at")
        except (TypeError, ValueError):
            bad(field, "a date (YYYY-MM-DD, Beijing time) or an ISO date-time")
    if len(moments) == 2 and moments["ends_at"] <= moments["starts_at"]:
        bad("ends_at", "must be after starts_at")
    source = data.get("source")
    if not isinstance(source, dict) or not str(source.get("url", "")).startswith(("http://", "https://")):
        bad("source.url", "an http(s) URL")
    elif not source.get("title"):
        bad("source.title", "who published the alert")
    return problems
