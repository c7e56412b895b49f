"""Retention: old message text is purged by `python -m bot purge`; case metadata and the audit log stay."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from bot.settings import REPO_ROOT
from tests import databases
from tests.conftest import Running
from tests.fakes.wechat_server import text

pytestmark = pytest.mark.databases


async def test_purge_blanks_old_text_and_keeps_metadata(bot: Running) -> None:
    await bot.wechat.post(text("oOld", "我在迪拜被警察抓了，护照号E1234"))
    await bot.wechat.post(text("oNew", "你好"))
    # Age the first conversation by 200 days.
    older = "created_at - interval '200 days'" if bot.postgres else "datetime(created_at, '-200 days')"
    # Writes from outside the bot run off the event loop: the bot (same loop) may be between a write and its
    # commit (the outbox storing a fresh access token, say) and must be able to finish it.
    url = bot.settings.database_url
    await asyncio.to_thread(databases.execute, url, f"UPDATE messages SET created_at = {older} WHERE user_id = "
                                                    "(SELECT id FROM users WHERE openid='oOld')")
    await asyncio.to_thread(databases.execute, url, f"UPDATE escalations SET created_at = {older}, status='closed'")
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "bot", "--log-level", "WARNING", "purge"], cwd=REPO_ROOT,
        capture_output=True, text=True, env={"BOT_DATABASE_URL": url, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    texts = bot.rows("SELECT u.openid, m.text, m.intent FROM messages m JOIN users u ON u.id=m.user_id "
                     "WHERE m.direction='in' ORDER BY m.id")
    assert texts[0][0] == "oOld" and "E1234" not in texts[0][1] and texts[0][2] == "emergency_arrest"
    assert texts[1] == ("oNew", "你好", "greet")
    said, country = (("\"case\"->>'said'", "\"case\"->>'country'") if bot.postgres else
                     ("json_extract(\"case\", '$.said')", "json_extract(\"case\", '$.country')"))
    case = bot.rows(f"SELECT priority, reason, {said}, {country} FROM escalations")[0]
    assert case[0] == 2 and case[1] == "emergency_arrest" and "E1234" not in case[2] and case[3] == "AE"
    assert bot.count("audit_log", "action='purge'") == 1
