"""Conversation helpers for the handler tests: a person chatting through the real /wechat path.

Expectations are read from the seed files a human maintains (``data/kb``, ``data/directory``),
never from the handlers' own constants, so a test says what the content says the bot must do.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import Running
from tests.fakes.wechat_api import FakeWeChatAPI
from tests.fakes.wechat_server import event, text, xml_message

DATA = Path(__file__).resolve().parents[2] / "data"
HOTLINE_NUMBERS = ("+86-10-12308", "+86-10-65612308")
MAX_PASSIVE_BYTES = 2048
EMERGENCIES = ("emergency_arrest", "emergency_crime", "emergency_medical", "emergency_missing",
               "emergency_kidnap", "emergency_disaster", "emergency_death")
# The priorities the brief (and the playbooks) give each emergency.
PRIORITY = {"emergency_kidnap": 1, "emergency_medical": 1, "emergency_disaster": 1, "emergency_crime": 1,
            "emergency_arrest": 2, "emergency_missing": 2, "emergency_death": 2}
SERVICES = ("police", "ambulance", "fire", "unified")


# --------------------------------------------------------------------------- seed content


@lru_cache(maxsize=None)
def kb(slug: str) -> dict[str, Any]:
    """One knowledge-base seed entry (data/kb/SLUG.yml)."""
    return dict(yaml.safe_load((DATA / "kb" / f"{slug}.yml").read_text(encoding="utf-8")))


def faq_slugs() -> list[str]:
    return sorted(p.stem for p in (DATA / "kb").glob("*.yml") if kb(p.stem).get("kind") == "faq")


def first_line(value: str) -> str:
    """The first non-empty line of a seed text (a distinctive sentence of it)."""
    return next(line.strip() for line in value.strip().splitlines() if line.strip())


@lru_cache(maxsize=1)
def _numbers() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load((DATA / "directory" / "emergency_numbers.yml").read_text(encoding="utf-8"))
    return {str(row["iso"]): row for row in data["countries"]}


@lru_cache(maxsize=1)
def _missions() -> dict[str, list[dict[str, Any]]]:
    data = yaml.safe_load((DATA / "directory" / "missions.yml").read_text(encoding="utf-8"))
    result: dict[str, list[dict[str, Any]]] = {}
    for mission in data["missions"]:
        result.setdefault(str(mission["iso"]), []).append(mission)
    return result


def directory_countries() -> list[str]:
    return sorted(set(_numbers()) | set(_missions()))


def local_numbers(iso: str) -> list[str]:
    """The country's distinct emergency numbers from emergency_numbers.yml (empty when not known)."""
    row = _numbers().get(iso) or {}
    found: list[str] = []
    for service in SERVICES:
        value = row.get(service)
        if value and str(value) not in found:
            found.append(str(value))
    return found


def missions(iso: str) -> list[dict[str, Any]]:
    return list(_missions().get(iso, []))


def duty_phones(iso: str) -> list[str]:
    return [str(m["duty_phone"]) for m in missions(iso) if m.get("duty_phone")]


def expected_duty_phone(iso: str, city: str | None = None) -> str | None:
    """The mission in the city the person named if it has a duty phone, else the embassy's."""
    listed = missions(iso)
    for mission in listed:
        if city and city in (mission.get("city"), mission.get("city_en")) and mission.get("duty_phone"):
            return str(mission["duty_phone"])
    for mission in listed:
        if mission.get("kind") == "embassy" and mission.get("duty_phone"):
            return str(mission["duty_phone"])
    phones = duty_phones(iso)
    return phones[0] if phones else None


def steps(intent: str, english: bool = False) -> list[Any]:
    return list(kb(intent)["steps"]["en" if english else "zh"])


# --------------------------------------------------------------------------- assertions on replies


def assert_hotline(reply: str) -> None:
    for number in HOTLINE_NUMBERS:
        assert number in reply, f"12308 number {number} missing from:\n{reply}"


def numbers_line(reply: str) -> str:
    """The reply's line listing local emergency numbers."""
    for line in reply.splitlines():
        if line.startswith("当地紧急电话") or line.startswith("Local emergency numbers"):
            return line
    raise AssertionError(f"no local emergency numbers line in:\n{reply}")


def assert_local_numbers(reply: str, iso: str) -> None:
    expected = local_numbers(iso)
    assert expected, f"the directory has no emergency numbers for {iso}"
    line = numbers_line(reply)
    for number in expected:
        assert re.search(rf"(?<![\d+-]){re.escape(number)}(?!\d)", line), f"{number} ({iso}) missing from: {line}"


def assert_no_local_numbers(reply: str) -> None:
    starts = ("当地紧急电话", "Local emergency numbers")
    assert not any(line.startswith(starts) for line in reply.splitlines()), reply


def assert_numbered_steps(reply: str, intent: str, english: bool = False) -> None:
    lines = reply.splitlines()
    for i, step in enumerate(steps(intent, english), 1):
        assert f"{i}. {step}" in lines, f"step {i} ({step!r}) is not a numbered line of:\n{reply}"


def assert_passive_ok(reply: str | None) -> str:
    assert reply is not None and reply.strip(), "the passive reply is empty"
    size = len(reply.encode("utf-8"))
    assert size <= MAX_PASSIVE_BYTES, f"passive reply is {size} bytes (> {MAX_PASSIVE_BYTES})"
    return reply


# --------------------------------------------------------------------------- a person in a chat


@dataclass
class Chat:
    """One WeChat user talking to the bot; every passive reply is checked (non-empty, ≤ 2048 bytes)."""

    bot: Running
    api: FakeWeChatAPI
    openid: str
    replies: list[str] = field(default_factory=list)

    async def send(self, xml: str) -> str:
        reply = await self.bot.wechat.post(xml)
        assert reply.status == 200, reply.body
        assert reply.fields.get("ToUserName") == self.openid, reply.body
        assert reply.fields.get("MsgType") == "text", reply.body
        self.replies.append(assert_passive_ok(reply.text))
        return self.replies[-1]

    async def say(self, content: str) -> str:
        return await self.send(text(self.openid, content))

    async def location(self, lat: float, lon: float, label: str = "") -> str:
        return await self.send(xml_message(self.openid, "location", Location_X=lat, Location_Y=lon, Scale=15,
                                           Label=label))

    async def click(self, key: str, later: int = 0) -> str:
        """A menu click; WeChat tells events apart by sender and CreateTime, so a second click needs ``later``."""
        return await self.send(event(self.openid, "CLICK", EventKey=key, create_time=int(time.time()) + later))

    def moved_to(self, bot: Running) -> Chat:
        """The same person, now talking to another bot process."""
        return Chat(bot, self.api, self.openid, self.replies)

    # What the bot stored.

    def conversation(self) -> dict[str, Any]:
        rows = self.bot.rows(
            "SELECT c.state, c.country, c.language, c.context FROM conversations c "
            "JOIN users u ON u.id = c.user_id WHERE u.openid = ?", self.openid)
        assert len(rows) == 1, rows
        state, country, language, context = rows[0]
        return {"state": state, "country": country, "language": language,
                "context": json.loads(context) if isinstance(context, str) else (context or {})}

    def user(self) -> dict[str, Any]:
        rows = self.bot.rows("SELECT country, language, latitude, longitude FROM users WHERE openid = ?",
                             self.openid)
        country, language, latitude, longitude = rows[0]
        return {"country": country, "language": language, "latitude": latitude, "longitude": longitude}

    def escalations(self) -> list[dict[str, Any]]:
        rows = self.bot.rows(
            'SELECT e.priority, e.reason, e.status, e."case" FROM escalations e '
            "JOIN users u ON u.id = e.user_id WHERE u.openid = ? ORDER BY e.id", self.openid)
        return [{"priority": p, "reason": r, "status": s, "case": json.loads(c) if isinstance(c, str) else c}
                for p, r, s, c in rows]

    def escalation(self) -> dict[str, Any]:
        found = self.escalations()
        assert len(found) == 1, found
        return found[0]

    def last_inbound(self) -> tuple[str | None, str | None]:
        """(intent, handler) recorded on the person's latest message."""
        rows = self.bot.rows(
            "SELECT m.intent, m.handler FROM messages m JOIN users u ON u.id = m.user_id "
            "WHERE u.openid = ? AND m.direction = 'in' ORDER BY m.id DESC LIMIT 1", self.openid)
        return rows[0]

    async def later(self, count: int = 1, timeout: float = 10.0) -> list[str]:
        """Messages the bot sent this person through the outbox (waits until there are ``count``)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.api.texts_for(self.openid)) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"only {self.api.texts_for(self.openid)} sent to {self.openid}")
            await asyncio.sleep(0.05)
        return self.api.texts_for(self.openid)

    async def followup_text(self, intent: str, english: bool = False, timeout: float = 10.0) -> str:
        """Wait for a playbook's whole follow-up to arrive through the outbox; return what was sent."""
        followup = kb(intent)["followup"]["en" if english else "zh"]
        last = first_line(followup.strip().split("\n\n")[-1])[:20]
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            sent = "\n\n".join(self.api.texts_for(self.openid))
            if last in sent:
                return sent
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"follow-up of {intent} never fully arrived; sent: {sent!r}")
            await asyncio.sleep(0.05)
