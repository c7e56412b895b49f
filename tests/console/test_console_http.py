"""Console security without a browser: login required, roles, CSRF on every form, no session fixation."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from bot.api import ACCOUNTS
from bot.console.views import transcript_html
from bot.queue import Transcript
from tests.conftest import Running
from tests.fakes.wechat_server import text

pytestmark = pytest.mark.databases

FORMS = ["/console/logout", "/console/presence", "/console/case/1/claim", "/console/case/1/close",
         "/console/case/1/transfer", "/console/case/1/reply", "/console/case/1/note"]
PAGES = ["/console/", "/console/case/1", "/console/case/1/transcript", "/console/team", "/console/reports",
         "/console/audit"]


async def signed_in(bot: Running, name: str, role: str) -> tuple[aiohttp.ClientSession, str]:
    await bot.app[ACCOUNTS].add(name, role, f"{name}-password")
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    login_csrf = await login_token(session, bot)
    async with session.post(f"{bot.wechat.base}/console/login",
                            data={"name": name, "password": f"{name}-password", "csrf": login_csrf}) as r:
        assert r.status == 200
    async with session.get(f"{bot.wechat.base}/console/team") as r:
        csrf = re.search(r'name="csrf" value="([^"]+)"', await r.text())
    assert csrf
    return session, csrf.group(1)


async def login_token(session: aiohttp.ClientSession, bot: Running) -> str:
    async with session.get(f"{bot.wechat.base}/console/login") as r:
        found = re.search(r'name="csrf" value="([^"]+)"', await r.text())
    assert found
    return found.group(1)


async def test_login_form_needs_its_csrf_token(bot: Running) -> None:
    await bot.app[ACCOUNTS].add("zoe", "officer", "zoe-password")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.post(f"{bot.wechat.base}/console/login", data={"name": "zoe", "password": "zoe-password"},
                                allow_redirects=False) as r:
            assert r.status == 403, "a cross-site login (no token) is refused"
        token = await login_token(session, bot)
        async with session.post(f"{bot.wechat.base}/console/login",
                                data={"name": "zoe", "password": "zoe-password", "csrf": token},
                                allow_redirects=False) as r:
            assert r.status == 303


@pytest.mark.parametrize("path", PAGES)
async def test_anonymous_users_are_sent_to_login(bot: Running, path: str) -> None:
    async with bot.wechat.http.get(f"{bot.wechat.base}{path}", allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/console/login"


@pytest.mark.parametrize("path", FORMS)
async def test_anonymous_posts_are_refused(bot: Running, path: str) -> None:
    async with bot.wechat.http.post(f"{bot.wechat.base}{path}", data={"csrf": "x"}, allow_redirects=False) as r:
        assert r.status == 401


async def test_every_form_needs_the_csrf_token(bot: Running) -> None:
    await bot.wechat.post(text("oCsrf", "转人工"))
    session, csrf = await signed_in(bot, "alice", "officer")
    async with session:
        for path in FORMS:
            for data in ({}, {"csrf": "forged"}):
                async with session.post(f"{bot.wechat.base}{path}", data=data, allow_redirects=False) as r:
                    assert r.status == 403, (path, data)
        assert bot.rows("SELECT status FROM escalations") == [("waiting",)]
        async with session.post(f"{bot.wechat.base}/console/case/1/claim", data={"csrf": csrf},
                                allow_redirects=False) as r:
            assert r.status == 303
        assert bot.rows("SELECT status, assignee FROM escalations") == [("assigned", "alice")]


async def test_login_issues_a_new_session_id(bot: Running) -> None:
    await bot.app[ACCOUNTS].add("bob", "officer", "bob-password")
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        session.cookie_jar.update_cookies({"lb_session": "attacker-chosen-id"})
        async with session.get(f"{bot.wechat.base}/console/", allow_redirects=False) as r:
            assert r.status == 303, "an unknown session id is not a session"
        token = await login_token(session, bot)
        async with session.post(f"{bot.wechat.base}/console/login",
                                data={"name": "bob", "password": "bob-password", "csrf": token},
                                allow_redirects=False) as r:
            assert r.status == 303
            cookie = r.cookies["lb_session"]
        assert cookie.value != "attacker-chosen-id"
        assert cookie["httponly"] and cookie["samesite"] == "Strict"


@pytest.mark.parametrize("path,status", [("/console/", 403), ("/console/reports", 403), ("/console/audit", 403),
                                         ("/console/team", 200)])
async def test_roles(bot: Running, path: str, status: int) -> None:
    session, _ = await signed_in(bot, "olga", "ops")
    async with session:
        async with session.get(f"{bot.wechat.base}{path}", allow_redirects=False) as r:
            assert r.status == status


async def test_officers_cannot_read_the_audit_log_but_supervisors_can(bot: Running) -> None:
    officer, _ = await signed_in(bot, "carl", "officer")
    supervisor, _ = await signed_in(bot, "sue", "supervisor")
    async with officer, supervisor:
        async with officer.get(f"{bot.wechat.base}/console/audit") as r:
            assert r.status == 403
        async with supervisor.get(f"{bot.wechat.base}/console/audit") as r:
            assert r.status == 200 and "login" in await r.text()


async def test_user_text_is_escaped_in_queue_transcript_and_reports(bot: Running) -> None:
    await bot.wechat.post(text("oXss", "<img src=x onerror=alert(1)> 转人工"))
    session, _ = await signed_in(bot, "dana", "supervisor")
    async with session:
        for path in ("/console/", "/console/case/1", "/console/case/1/transcript", "/console/reports",
                     "/console/team"):
            async with session.get(f"{bot.wechat.base}{path}") as r:
                body = await r.text()
            assert r.status == 200, path
            assert "<img src=x" not in body, path
            if "case" in path:
                assert "&lt;img src=x onerror=alert(1)&gt;" in body, path


async def test_the_open_case_page_refreshes_its_transcript_without_auditing_each_refresh(bot: Running) -> None:
    await bot.wechat.post(text("oLive", "转人工"))
    session, _ = await signed_in(bot, "vera", "officer")
    async with session:
        async with session.get(f"{bot.wechat.base}/console/case/1") as r:
            assert r.status == 200 and "转人工" in await r.text()
        await bot.wechat.post(text("oLive", "我的护照被偷了"))
        for _ in range(3):
            async with session.get(f"{bot.wechat.base}/console/case/1/transcript") as r:
                body = await r.text()
            assert r.status == 200 and "我的护照被偷了" in body and "转人工" in body
    assert bot.rows("SELECT action, target FROM audit_log WHERE actor='vera' AND action='view'") == [
        ("view", "escalation:1")], "opening the case is audited once, its refreshes are not"


async def test_reports_show_charts(bot: Running) -> None:
    await bot.wechat.post(text("oRep", "你好"))
    session, _ = await signed_in(bot, "eve", "officer")
    async with session:
        async with session.get(f"{bot.wechat.base}/console/reports") as r:
            body = await r.text()
    assert r.status == 200 and "<svg" in body and "greet" in body


async def test_the_live_queue_ends_with_the_session(bot: Running) -> None:
    """A signed-out (or expired, or revoked) session stops receiving the queue, and cannot open it again."""
    await bot.wechat.post(text("oStream", "转人工"))
    session, csrf = await signed_in(bot, "walt", "officer")
    async with session:
        async with session.get(f"{bot.wechat.base}/console/events") as stream:
            assert stream.status == 200
            assert (await asyncio.wait_for(stream.content.readline(), 5)).startswith(b"event: queue")
            async with session.post(f"{bot.wechat.base}/console/logout", data={"csrf": csrf}) as r:
                assert r.status == 200

            async def to_the_end() -> None:
                while await stream.content.readline():
                    pass

            await asyncio.wait_for(to_the_end(), 5)
        async with session.get(f"{bot.wechat.base}/console/events") as again:
            assert again.status == 401


def test_a_transcript_cut_at_its_latest_messages_says_so() -> None:
    message = {"id": 9, "sender": "user", "author": None, "text": "最后一条", "type": "text",
               "created_at": "2026-11-28T10:00:00+00:00", "delivery": None, "error": None, "error_code": None}
    cut = transcript_html(Transcript([message], more=True))
    assert "只显示最近 1 条消息" in cut and "最后一条" in cut
    assert "只显示最近" not in transcript_html(Transcript([message], more=False))
