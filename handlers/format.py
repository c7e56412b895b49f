"""Formatting what a citizen reads: local numbers, missions, message splitting."""

from __future__ import annotations

from typing import Any

from nlu.geo import en_name, zh_name

# WeChat text messages carry at most 2048 bytes; 600 characters of Chinese stay well inside.
MAX_CHARS = 600
MAX_MESSAGES = 3

SERVICES_ZH = {"police": "报警", "ambulance": "急救", "fire": "消防", "unified": "统一紧急号码"}
SERVICES_EN = {"police": "police", "ambulance": "ambulance", "fire": "fire", "unified": "all services"}


def country_name(code: str | None, english: bool) -> str:
    if not code:
        return ""
    return en_name(code) if english else zh_name(code)


def local_numbers(emergency: dict[str, Any] | None, code: str, english: bool) -> str | None:
    """One line with the country's emergency numbers, or None when the directory has none."""
    if not emergency:
        return None
    names = SERVICES_EN if english else SERVICES_ZH
    parts: list[str] = []
    seen: dict[str, list[str]] = {}
    for service in ("police", "ambulance", "fire", "unified"):
        number = emergency.get(service)
        if number:
            seen.setdefault(str(number), []).append(names[service])
    for number, services in seen.items():
        parts.append(("/".join(services) + " " + number) if english else ("/".join(services) + number))
    if not parts:
        return None
    where = country_name(code, english)
    if english:
        return f"Local emergency numbers ({where}): " + " · ".join(parts)
    return f"当地紧急电话（{where}）：" + "｜".join(parts)


def pick_mission(missions: list[dict[str, Any]], hints: list[str]) -> dict[str, Any] | None:
    """The consulate whose city the person mentioned, else the embassy, else any mission."""
    for mission in missions:
        names = [str(mission.get("city") or ""), str(mission.get("city_en") or "").lower()]
        if any(n and any(n in h for h in hints) for n in names):
            return mission
    embassies = [m for m in missions if m.get("kind") == "embassy"]
    return (embassies or missions or [None])[0]


def duty_line(mission: dict[str, Any] | None, english: bool) -> str | None:
    """The mission's consular-protection (duty) phone, if the directory has a checked one."""
    if not mission:
        return None
    number = mission.get("duty_phone") or mission.get("phone")
    if not number:
        return None
    name = mission.get("name_en") if english else mission.get("name")
    if english:
        return f"{name}, consular protection: {number}"
    return f"{name}领事保护与协助电话：{number}"


def mission_card(mission: dict[str, Any], english: bool) -> str:
    """Several lines describing one mission (only the facts the directory has)."""
    name = mission.get("name_en") if english else mission.get("name")
    city = mission.get("city_en") if english else mission.get("city")
    lines = [f"{name}（{city}）" if city and not english else f"{name} ({city})" if city else str(name)]
    labels = (("duty_phone", "Consular protection (24 h)", "领事保护与协助"), ("phone", "Phone", "电话"),
              ("address", "Address", "地址"), ("website", "Website", "网站"))
    for key, en, zh in labels:
        value = mission.get(key)
        if value:
            lines.append(f"  {en}: {value}" if english else f"  {zh}：{value}")
    return "\n".join(lines)


def split_message(text: str, limit: int = MAX_CHARS, parts: int = MAX_MESSAGES) -> list[str]:
    """Split at paragraph breaks into at most ``parts`` messages of at most ``limit`` characters."""
    paragraphs = [p.strip() for p in text.strip().split("\n\n") if p.strip()]
    messages: list[str] = []
    current = ""
    for paragraph in paragraphs:
        while len(paragraph) > limit:
            cut = paragraph.rfind("\n", 0, limit)
            cut = cut if cut > limit // 2 else limit
            chunk, paragraph = paragraph[:cut].rstrip(), paragraph[cut:].lstrip()
            if current:
                messages.append(current)
                current = ""
            messages.append(chunk)
        candidate = f"{current}\n\n{paragraph}" if current else paragraph
        if len(candidate) > limit:
            messages.append(current)
            current = paragraph
        else:
            current = candidate
    if current:
        messages.append(current)
    if len(messages) > parts:
        head, tail = messages[:parts - 1], "\n\n".join(messages[parts - 1:])
        messages = head + [tail[:limit - 1] + "…" if len(tail) > limit else tail]
    return messages


def alert_line(alert: dict[str, Any], english: bool) -> str:
    """One live safety alert: level, text, who issued it, until when."""
    from knowledge.validate import LEVELS_EN

    text = alert.get("text") or {}
    body = str(text.get("en") if english and text.get("en") else text.get("zh", "")).strip()
    source = str((alert.get("source") or {}).get("title") or "")
    until = str(alert.get("ends_at", ""))[:10]
    if english:
        return f"⚠️ Safety alert ({LEVELS_EN.get(alert['level'], alert['level'])}): {body} ({source}, until {until})"
    return f"⚠️ 安全提醒（{alert['level']}）：{body}（{source}，有效期至{until}）"
