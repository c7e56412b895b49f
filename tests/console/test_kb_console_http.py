"""The ops pages without a browser: roles, CSRF, drafts from the form, preview, stale flag, escaping."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from bot.api import ACCOUNTS
from tests.conftest import Running, StartBot
from tests.console.test_console_http import signed_in
from tests.knowledge.test_editor import SOURCE, call

pytestmark = pytest.mark.databases

PAGES = ["/console/kb", "/console/kb/new", "/console/kb/visa", "/console/kb/visa/diff?from=1&to=1",
         "/console/directory", "/console/directory/TH", "/console/alerts"]
FORMS = ["/console/kb/new", "/console/kb/visa/save", "/console/kb/visa/publish", "/console/kb/visa/rollback",
         "/console/kb/visa/archive", "/console/directory/TH/save", "/console/directory/TH/publish",
         "/console/alerts/new", "/console/alerts/1/publish"]


@pytest.mark.parametrize("path", PAGES)
async def test_anonymous_users_are_sent_to_login(bot: Running, path: str) -> None:
    async with bot.wechat.http.get(f"{bot.wechat.base}{path}", allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/console/login"


async def test_officers_and_supervisors_cannot_reach_the_editor(bot: Running) -> None:
    for name, role in (("oscar", "officer"), ("sue", "supervisor")):
        session, csrf = await signed_in(bot, name, role)
        async with session:
            for path in PAGES:
                async with session.get(f"{bot.wechat.base}{path}", allow_redirects=False) as r:
                    assert r.status == 403, (role, path)
            for path in FORMS:
                async with session.post(f"{bot.wechat.base}{path}", data={"csrf": csrf, "version": "1"},
                                        allow_redirects=False) as r:
                    assert r.status == 403, (role, path)
            async with session.get(f"{bot.wechat.base}/console/team") as r:
                assert 'href="/console/kb"' not in await r.text(), "no editor link for them either"
    assert bot.count("kb_versions") == bot.count("kb_entries") and bot.count("doc_versions") == 0


async def test_every_editor_form_needs_the_csrf_token(bot: Running) -> None:
    session, _ = await signed_in(bot, "olga", "ops")
    async with session:
        for path in FORMS:
            for data in ({}, {"csrf": "forged", "version": "1"}):
                async with session.post(f"{bot.wechat.base}{path}", data=data, allow_redirects=False) as r:
                    assert r.status == 403, (path, data)
    assert bot.count("kb_versions") == bot.count("kb_entries") and bot.count("audit_log", "actor='olga' AND action != 'login'") == 0


async def test_ops_save_a_draft_from_the_form_preview_it_and_publish(bot: Running) -> None:
    session, csrf = await signed_in(bot, "olga", "ops")
    form = {"csrf": csrf, "base_version": "1", "title_zh": "签证问题", "title_en": "Visas",
            "questions": "去泰国要签证吗\n落地签怎么办", "answer_zh": "第一段：先查目的国使馆网站。\n\n" + "很长的说明。" * 120,
            "sources": f'{SOURCE[0]["title"]} | {SOURCE[0]["url"]} | {SOURCE[0]["date"]}', "tags": "签证，出行",
            "last_reviewed": "2026-11-20", "overrides_zh": "TH: 泰国对中国公民免签，停留不超过30天。", "note": "改写"}
    async with session:
        async with session.post(f"{bot.wechat.base}/console/kb/visa/save", data=form, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/console/kb/visa?saved=1"
        async with session.get(f"{bot.wechat.base}/console/kb/visa") as r:
            page = await r.text()
        assert "已保存为草稿" in page or "有未发布的修改" in page
        bubbles = re.findall(r'<div class="bubble">', page)
        assert len(bubbles) >= 2, "a long answer is previewed as the several messages WeChat will show"
        assert "第 2 条（客服消息）" in page
        async with session.get(f"{bot.wechat.base}/console/kb/visa?country=TH") as r:
            assert "泰国对中国公民免签" in await r.text(), "the preview applies the country's override"

        status, entry = await call(bot, "GET", "/api/v1/faq/visa", await _token(bot))
        assert entry["published_version"] == 1 and entry["latest"]["tags"] == ["签证", "出行"]
        assert entry["latest"]["overrides"] == {"TH": {"zh": "泰国对中国公民免签，停留不超过30天。"}}

        stale = {**form, "base_version": "1", "title_zh": "别人的旧页面"}
        async with session.post(f"{bot.wechat.base}/console/kb/visa/save", data=stale) as r:
            assert r.status == 409 and "changed since you opened it" in await r.text()
        bad = {**form, "base_version": "2", "questions": "", "sources": "no url here"}
        async with session.post(f"{bot.wechat.base}/console/kb/visa/save", data=bad) as r:
            text = await r.text()
            assert r.status == 400 and "questions" in text
            assert "no url here" in text, "the rejected form comes back with what was typed"

        async with session.post(f"{bot.wechat.base}/console/kb/visa/publish", data={"csrf": csrf, "version": "2"},
                                allow_redirects=False) as r:
            assert r.status == 303
        async with session.get(f"{bot.wechat.base}/console/kb/visa/diff?from=1&to=2") as r:
            assert '<span class="add">+' in await r.text()
    assert bot.rows("SELECT published_version FROM kb_entries WHERE slug='visa'") == [(2,)]


async def _token(bot: Running) -> str:
    await bot.app[ACCOUNTS].add("api-ops", "ops", "a-long-password")
    return await bot.app[ACCOUNTS].create_token("api-ops")


async def test_stale_entries_are_flagged_and_staff_text_is_escaped(bot: Running) -> None:
    token = await _token(bot)
    status, _ = await call(bot, "POST", "/api/v1/faq", token, {
        "slug": "old_topic", "title": "旧条目<script>alert(1)</script>", "questions": ["很久以前的问题"],
        "answer": "旧答案", "sources": SOURCE, "last_reviewed": "2024-01-15"})
    assert status == 201
    session, _ = await signed_in(bot, "olga", "ops")
    async with session:
        async with session.get(f"{bot.wechat.base}/console/kb?q=旧条目") as r:
            page = await r.text()
    assert "超过12个月未复核" in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def test_ops_export_edit_and_import_a_zip_and_nothing_is_imported_on_a_problem(bot: Running) -> None:
    import io
    import zipfile

    session, csrf = await signed_in(bot, "olga", "ops")
    async with session:
        async with session.get(f"{bot.wechat.base}/console/kb/export") as r:
            assert r.status == 200 and r.content_type == "application/zip"
            exported = zipfile.ZipFile(io.BytesIO(await r.read()))
        names = exported.namelist()
        assert "kb/visa.yml" in names and "directory/missions.yml" in names

        def repacked(change: dict[str, bytes]) -> bytes:
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as archive:
                for name in names:
                    archive.writestr(name, change.get(name, exported.read(name)))
                for name in set(change) - set(names):
                    archive.writestr(name, change[name])
            return buffer.getvalue()

        async def upload(payload: bytes) -> tuple[int, str, str]:
            form = aiohttp.FormData()
            form.add_field("csrf", csrf)
            form.add_field("file", payload, filename="kb.zip", content_type="application/zip")
            async with session.post(f"{bot.wechat.base}/console/kb/import", data=form, allow_redirects=False) as r:
                return r.status, await r.text(), r.headers.get("Location", "")

        visa = exported.read("kb/visa.yml").decode()
        broken = visa.replace("slug: visa", "slug: Visa!")
        status, page, _ = await upload(repacked({"kb/visa.yml": broken.encode(), "../../evil.yml": b"x: 1"}))
        assert status == 400 and "visa.yml: Visa!: slug:" in page and "../../evil.yml" in page
        assert bot.rows("SELECT published_version FROM kb_entries WHERE slug='visa'") == [(1,)]
        status, page, _ = await upload(b"not a zip")
        assert status == 400 and "不是一个 zip" in page

        edited = visa.replace("tags:", "tags:\n- 导入测试", 1)
        status, _, location = await upload(repacked({"kb/visa.yml": edited.encode()}))
        assert status == 303 and location.startswith("/console/kb?imported=0,1,")
        async with session.get(f"{bot.wechat.base}{location}") as r:
            assert "已导入并发布" in await r.text()
    assert bot.rows("SELECT published_version FROM kb_entries WHERE slug='visa'") == [(2,)]
    assert bot.count("audit_log", "actor='olga' AND action='kb_import'") == 1


async def test_officers_can_neither_export_nor_import(bot: Running) -> None:
    session, csrf = await signed_in(bot, "oscar", "officer")
    async with session:
        async with session.get(f"{bot.wechat.base}/console/kb/export", allow_redirects=False) as r:
            assert r.status == 403
        async with session.post(f"{bot.wechat.base}/console/kb/import", data={"csrf": csrf},
                                allow_redirects=False) as r:
            assert r.status == 403


async def test_demo_prints_a_working_ops_login(start_bot: StartBot, tmp_path: Path) -> None:
    from bot.app import DEMO_LOGIN
    from bot.settings import Settings

    settings = Settings.from_env({"BOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}",
                                  "BOT_VAR_DIR": str(tmp_path / "var")}, demo=True)
    demo = await start_bot(settings)
    line = next(line for line in demo.app[DEMO_LOGIN] if "user: ops" in line)
    password = line.rsplit("password: ", 1)[1].rstrip(")")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(f"{demo.wechat.base}/console/login") as r:
            token = re.search(r'name="csrf" value="([^"]+)"', await r.text())
        assert token
        async with session.post(f"{demo.wechat.base}/console/login",
                                data={"name": "ops", "password": password, "csrf": token.group(1)}) as r:
            assert r.status == 200 and str(r.url).endswith("/console/kb") and 'id="entries"' in await r.text()
