"""The ops staff's pages: knowledge-base editor, country directory, safety alerts.

Forms post to the server (no script needed); each save is a draft version, each publish goes
live in every bot process from the next message. The preview shows the latest version exactly
as WeChat will show it: the same composition and splitting as the bot's own answers.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from datetime import date
from pathlib import Path, PurePosixPath
from typing import Any

from aiohttp import web

from bot.api_kb import EDITOR, KB
from bot.console.app import CSRF, PRINCIPAL, html_response, requires
from bot.console.views import csrf_field, h, page
from handlers.emergency import first_reply, followup_messages
from handlers.faq import EMBASSY_SLUG, compose_answer, missions_text
from handlers.format import MAX_CHARS, split_message
from bot.accounts import audit
from bot.storage.models import utcnow
from knowledge import seed
from knowledge.base import KnowledgeBase
from knowledge.editor import Editor, EditorError
from knowledge.validate import LEVELS
from nlu.geo import zh_name

OPS = ("ops", "admin")
SERVICES = (("police", "报警"), ("ambulance", "急救"), ("fire", "消防"), ("unified", "统一紧急号码"))
IMPORT_FOLDERS = ("kb", "directory", "alerts")
NOT_A_ZIP = "这不是一个 zip 文件。"
MAX_IMPORT_BYTES = 10 * 1024 * 1024  # unpacked; the upload itself is capped by the app's 1 MiB body limit
MISSION_FIELDS = (("name", "名称", True), ("name_en", "英文名称", False), ("city", "城市", False),
                  ("city_en", "城市（英文）", False), ("address", "地址", False), ("phone", "总机", False),
                  ("duty_phone", "领事保护与协助电话", False), ("website", "网站", False))


def add_kb_routes(console: web.Application) -> None:
    r = console.router
    r.add_get("/kb", kb_list)
    r.add_get("/kb/new", kb_new)
    r.add_get("/kb/export", kb_export)
    r.add_post("/kb/import", kb_import)
    r.add_post("/kb/new", kb_create)
    r.add_get("/kb/{slug}", kb_edit)
    r.add_get("/kb/{slug}/diff", kb_diff)
    r.add_post("/kb/{slug}/{action}", kb_action)
    r.add_get("/directory", directory_list)
    r.add_get("/directory/{iso}", directory_edit)
    r.add_post("/directory/{iso}/{action}", directory_action)
    r.add_get("/alerts", alerts_list)
    r.add_post("/alerts/new", alert_create)
    r.add_get("/alerts/{id}", alert_edit)
    r.add_post("/alerts/{id}/{action}", alert_action)


def _editor(request: web.Request) -> Editor:
    return request.config_dict[EDITOR]


def _page(request: web.Request, title: str, body: str, active: str, status: int = 200) -> web.Response:
    return html_response(page(title, body, request[PRINCIPAL], request[CSRF], active), status=status)


def _problems(exc: EditorError) -> str:
    items = "".join(f'<li><b>{h(p.field)}</b>：{h(p.reason)}</li>' for p in exc.problems)
    return f'<div class="error" role="alert"><p>{h(str(exc))}</p><ul>{items}</ul></div>'


# --- preview ----------------------------------------------------------------------------------------------------

async def preview(kb: KnowledgeBase, slug: str, data: dict[str, Any], country: str | None,
                  english: bool) -> list[str]:
    """The messages a citizen would receive for this content (one version, published or not)."""
    snapshot = await kb.current()
    if data.get("kind") == "playbook":
        first = first_reply(snapshot, data, country, english, [])
        return [first] + followup_messages(data, english)
    if slug == EMBASSY_SLUG and country:
        return split_message(missions_text(snapshot, country, english))
    return compose_answer(snapshot, slug, data, country, english)


def _preview_html(messages: list[str]) -> str:
    bubbles = []
    for i, text in enumerate(messages, 1):
        size = len(text.encode())
        warn = ' <b class="error">超过微信 2048 字节上限</b>' if size > 2048 else ""
        how = "被动回复" if i == 1 else "客服消息"
        bubbles.append(f'<div class="bubble"><div class="meta">第 {i} 条（{how}）· {len(text)} 字 · {size} 字节{warn}'
                       f'</div><div class="text">{h(text)}</div></div>')
    note = (f'<p class="muted">共 {len(messages)} 条。超过 {MAX_CHARS} 字在段落处拆分，最多 3 条；'
            f'第一条随回复即时送达，其余经客服消息接口发送。</p>')
    return f'<div class="phone" id="preview">{"".join(bubbles)}</div>{note}'


# --- knowledge base ---------------------------------------------------------------------------------------------

@requires(*OPS)
async def kb_list(request: web.Request) -> web.StreamResponse:
    query = request.query.get("q", "")
    items = await _editor(request).entries(query)
    stale = sum(1 for i in items if i["stale"] and i["status"] != "archived")
    rows = "".join(
        f'<tr class="{"archived" if i["status"] == "archived" else ""}"><td><a href="/console/kb/{h(i["slug"])}">'
        f'{h(i["title"])}</a><div class="muted">{h(i["slug"])} · {h("应急预案" if i["kind"] == "playbook" else "问答")}'
        f'</div></td><td>{_status(i)}</td><td>{h(i["published_version"] or "—")} / {h(i["latest_version"])}</td>'
        f'<td class="{"stale" if i["stale"] else ""}">{h(i["last_reviewed"] or "—")}'
        f'{" · 超过12个月未复核" if i["stale"] else ""}</td><td>{h(", ".join(i["tags"]))}</td></tr>' for i in items)
    body = (f'<h1>知识库</h1><form method="get" action="/console/kb" class="search">'
            f'<input name="q" value="{h(query)}" placeholder="搜索标题、问法、答案、标签" aria-label="搜索">'
            f'<button>搜索</button> <a class="button" href="/console/kb/new">新建条目</a></form>'
            f'<p class="muted">{len(items)} 条{f"，其中 {stale} 条超过12个月未复核" if stale else ""}。'
            f'保存的修改是草稿，发布后才会回答用户。</p>{_imported(request)}'
            f'<details class="bulk"><summary>导入 / 导出 YAML</summary>'
            f'<p><a href="/console/kb/export">下载全部（知识库、国家目录、安全提醒）</a>：zip 中是 kb/、directory/、alerts/ 下的 YAML，'
            f'格式与 data/ 相同。</p><form method="post" action="/console/kb/import" enctype="multipart/form-data" '
            f'id="import-form">{csrf_field(request[CSRF])}<label>上传修改后的 zip（校验全部通过才会导入，并立即发布）'
            f'<input type="file" name="file" accept=".zip" required></label><button>导入并发布</button></form></details>'
            f'<table id="entries"><thead><tr><th>条目</th><th>状态</th><th>已发布/最新版本</th><th>上次复核</th>'
            f'<th>标签</th></tr></thead><tbody>{rows or "<tr><td colspan=5>没有找到</td></tr>"}</tbody></table>')
    return _page(request, "知识库", body, "kb")


def _imported(request: web.Request) -> str:
    counts = request.query.get("imported", "")
    parts = counts.split(",")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return ""
    return (f'<p class="ok" role="status">已导入并发布：新增 {int(parts[0])} 项，更新 {int(parts[1])} 项，'
            f'{int(parts[2])} 项没有变化。</p>')


@requires(*OPS)
async def kb_export(request: web.Request) -> web.StreamResponse:
    """The published knowledge base, directory and alerts as a zip of YAML files in the data/ layout."""
    with tempfile.TemporaryDirectory() as tmp:
        await seed.export(_editor(request).sessions, Path(tmp))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(Path(tmp).rglob("*.yml")):
                archive.write(path, path.relative_to(tmp).as_posix())
    name = f"lingbao-knowledge-{utcnow():%Y%m%d-%H%M}.zip"
    return web.Response(body=buffer.getvalue(), content_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


@requires(*OPS)
async def kb_import(request: web.Request) -> web.StreamResponse:
    """Import an exported (and edited) zip: everything is checked first; any problem imports nothing."""
    form = await request.post()
    upload = form.get("file")
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = None
        if not isinstance(upload, web.FileField):
            problems.append("请选择一个 zip 文件。")
        else:
            unpacked = _unpack(upload.file.read(), Path(tmp))
            problems.extend(unpacked)
            if unpacked != [NOT_A_ZIP]:
                data = seed.read(Path(tmp))
        if data is not None:
            problems.extend(str(p) for p in data.problems)
            if not data.entries and not data.emergency and not data.missions and not data.alerts:
                problems.append("zip 中没有 kb/、directory/ 或 alerts/ 下的 .yml 文件。")
        if problems or data is None:
            items = "".join(f"<li>{h(p)}</li>" for p in problems)
            body = (f'<p><a href="/console/kb">← 知识库</a></p><h1>没有导入</h1>'
                    f'<div class="error" role="alert"><p>发现 {len(problems)} 个问题（文件: 条目: 字段: 原因），'
                    f'什么都没有改。</p><ul id="problems">{items}</ul></div>')
            return _page(request, "导入失败", body, "kb", status=400)
        who = request[PRINCIPAL].name
        report = await seed.apply(_editor(request).sessions, data, author=who, staff=True)
    async with _editor(request).sessions.begin() as session:
        await audit(session, who, "kb_import", "kb", created=report.created, upgraded=report.upgraded)
    raise web.HTTPSeeOther(f"/console/kb?imported={report.created},{report.upgraded},{report.unchanged}")


def _unpack(payload: bytes, into: Path) -> list[str]:
    """Extract the YAML files of an export into ``into``; anything else (paths outside it, other files,
    an oversized archive) is a problem, not a write."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
    except zipfile.BadZipFile:
        return [NOT_A_ZIP]
    members = [m for m in archive.infolist() if not m.is_dir()]
    if sum(m.file_size for m in members) > MAX_IMPORT_BYTES:
        return ["zip 解压后超过 10 MB。"]
    problems = []
    for member in members:
        parts = PurePosixPath(member.filename).parts
        if len(parts) != 2 or parts[0] not in IMPORT_FOLDERS or not parts[1].endswith(".yml") \
                or parts[1].startswith("."):
            problems.append(f"{member.filename}: 只能包含 kb/、directory/、alerts/ 下的 .yml 文件")
            continue
        target = into / parts[0] / parts[1]
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(archive.read(member))
    return problems


def _status(item: dict[str, Any]) -> str:
    label = {"published": "已发布", "draft": "草稿", "archived": "已下线"}.get(item["status"], item["status"])
    draft = ' <span class="badge">有未发布的修改</span>' if item["has_draft"] and item["status"] == "published" else ""
    return f'{h(label)}{draft}'


@requires(*OPS)
async def kb_new(request: web.Request) -> web.StreamResponse:
    blank = {"kind": "faq", "last_reviewed": date.today().isoformat()}
    return _page(request, "新建条目", _entry_form(request[CSRF], None, blank, "/console/kb/new"), "kb")


@requires(*OPS)
async def kb_create(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    data = entry_from_form(form, kind=str(form.get("kind", "faq")))
    data["slug"] = str(form.get("slug", "")).strip()
    try:
        await _editor(request).create(data, actor=request[PRINCIPAL].name, note=str(form.get("note", "")) or None)
    except EditorError as exc:
        return _page(request, "新建条目", _problems(exc) + _entry_form(request[CSRF], None, data, "/console/kb/new"),
                     "kb", status=exc.status)
    raise web.HTTPSeeOther(f"/console/kb/{data['slug']}?saved=1")


@requires(*OPS)
async def kb_edit(request: web.Request) -> web.StreamResponse:
    return await _kb_edit(request)


async def _kb_edit(request: web.Request, error: str = "", form_data: dict[str, Any] | None = None,
                  status: int = 200) -> web.StreamResponse:
    slug = request.match_info["slug"]
    try:
        entry = await _editor(request).entry(slug)
        versions = await _editor(request).versions(slug)
    except EditorError as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    country = (request.query.get("country") or "").upper() or None
    english = request.query.get("lang") == "en"
    messages = await preview(request.config_dict[KB], slug, entry["latest"], country, english)
    notice = ""
    if request.query.get("saved"):
        notice = '<p class="ok" role="status">已保存为草稿。用户看到的仍是已发布的版本，点“发布”后生效。</p>'
    elif request.query.get("published"):
        notice = '<p class="ok" role="status">已发布：从下一条消息起，所有进程都用这个版本回答。</p>'
    state = _status(entry)
    stale = '<p class="stale">这个条目超过12个月未复核，请核对内容和来源后更新“上次复核”日期。</p>' if entry["stale"] else ""
    csrf = request[CSRF]
    actions = (f'<form method="post" action="/console/kb/{h(slug)}/publish" class="inline">{csrf_field(csrf)}'
               f'<input type="hidden" name="version" value="{entry["latest_version"]}">'
               f'<button class="primary" {"disabled" if not entry["has_draft"] and entry["status"] == "published" else ""}>'
               f'发布第 {entry["latest_version"]} 版</button></form>')
    if entry["kind"] == "faq" and entry["status"] != "archived":
        actions += (f'<form method="post" action="/console/kb/{h(slug)}/archive" class="inline">{csrf_field(csrf)}'
                    f'<button>下线</button></form>')
    history = _history(versions, f"/console/kb/{slug}", csrf, diffs=True)
    options = "".join(f'<option value="{c}" {"selected" if c == country else ""}>{h(zh_name(c))}</option>'
                      for c in sorted(entry["latest"].get("overrides") or {}))
    picker = (f'<form method="get" action="/console/kb/{h(slug)}" class="inline">'
              f'<label>用户所在国家 <input name="country" value="{h(country or "")}" size="3" placeholder="如 TH" '
              f'list="override-countries"></label><datalist id="override-countries">{options}</datalist> '
              f'<label>语言 <select name="lang"><option value="zh">中文</option>'
              f'<option value="en" {"selected" if english else ""}>English</option></select></label> '
              f'<button>预览</button></form>')
    body = (f'<p><a href="/console/kb">← 知识库</a></p><h1>{h(entry["title"])} <small>{h(slug)}</small></h1>'
            f'{notice}{error}{stale}<p>状态：{state} · 线上第 {h(entry["published_version"] or "—")} 版 · '
            f'最新第 {entry["latest_version"]} 版</p><div class="actions">{actions}</div>'
            f'<div class="cols wide"><div>'
            f'{_entry_form(csrf, slug, form_data or entry["latest"], f"/console/kb/{slug}/save", entry["latest_version"])}'
            f'</div><div><h2>预览（最新版本，微信中的样子）</h2>{picker}{_preview_html(messages)}</div></div>'
            f'<h2>版本历史</h2>{history}')
    return _page(request, entry["title"], body, "kb", status=status)


@requires(*OPS)
async def kb_diff(request: web.Request) -> web.StreamResponse:
    slug = request.match_info["slug"]
    try:
        a, b = int(request.query.get("from", "")), int(request.query.get("to", ""))
        lines = await _editor(request).diff(slug, a, b)
    except (ValueError, EditorError):
        raise web.HTTPNotFound() from None
    body = (f'<p><a href="/console/kb/{h(slug)}">← 返回条目</a></p><h1>{h(slug)}：第 {a} 版 → 第 {b} 版</h1>'
            f'{_diff_html(lines)}')
    return _page(request, "版本比较", body, "kb")


def _history(versions: list[dict[str, Any]], base: str, csrf: str, *, diffs: bool = False) -> str:
    """Version history: who, when, why; a diff with the previous version; restore-and-publish."""
    rows = []
    for v in versions:
        number = int(v["version"])
        links = (f'<a href="{h(base)}/diff?from={number - 1}&to={number}">与上一版比较</a> '
                 if diffs and number > 1 else "")
        if not v["published"]:
            links += (f'<form method="post" action="{h(base)}/rollback" class="inline">{csrf_field(csrf)}'
                      f'<input type="hidden" name="version" value="{number}"><button>恢复此版并发布</button></form>')
        live = " · <b>线上</b>" if v["published"] else ""
        rows.append(f'<tr><td>第 {number} 版{live}</td><td>{h(v["author"])}</td>'
                    f'<td>{h(v["created_at"][:16].replace("T", " "))}</td><td>{h(v["note"] or "")}</td>'
                    f'<td>{links}</td></tr>')
    body = "".join(rows) or '<tr><td colspan="5">尚无版本（来自初始数据）</td></tr>'
    return (f'<table id="versions"><thead><tr><th>版本</th><th>作者</th><th>时间</th><th>说明</th><th></th></tr>'
            f'</thead><tbody>{body}</tbody></table>')


def _diff_html(lines: list[str]) -> str:
    if not lines:
        return '<p class="muted">两个版本内容相同。</p>'
    out = []
    for line in lines:
        cls = "add" if line.startswith("+") and not line.startswith("+++") else \
            "del" if line.startswith("-") and not line.startswith("---") else "hunk" if line.startswith("@@") else ""
        out.append(f'<span class="{cls}">{h(line)}</span>')
    return f'<pre class="diff" id="diff">{chr(10).join(out)}</pre>'


@requires(*OPS)
async def kb_action(request: web.Request) -> web.StreamResponse:
    slug, action = request.match_info["slug"], request.match_info["action"]
    editor, who = _editor(request), request[PRINCIPAL].name
    form = await request.post()
    try:
        if action == "save":
            current = await editor.entry(slug)
            data = entry_from_form(form, kind=current["kind"], base=current["latest"])
            try:
                base_version = int(str(form.get("base_version", "")))
            except ValueError:
                base_version = None
            try:
                await editor.update(slug, data, actor=who, base_version=base_version,
                                    note=str(form.get("note", "")) or None)
            except EditorError as exc:
                return await _kb_edit(request, _problems(exc), data, status=exc.status)
            raise web.HTTPSeeOther(f"/console/kb/{slug}?saved=1")
        if action == "publish":
            await editor.publish(slug, actor=who, version=_version(form))
        elif action == "rollback":
            await editor.rollback(slug, _required_version(form), actor=who)
        elif action == "archive":
            await editor.archive(slug, actor=who)
            raise web.HTTPSeeOther("/console/kb")
        else:
            raise web.HTTPNotFound()
    except EditorError as exc:
        if exc.status == 404:
            raise web.HTTPNotFound(text=str(exc)) from None
        return await _kb_edit(request, _problems(exc), status=exc.status)
    raise web.HTTPSeeOther(f"/console/kb/{slug}?published=1")


def _version(form: Any) -> int | None:
    value = str(form.get("version", ""))
    return int(value) if value.isdigit() else None


def _required_version(form: Any) -> int:
    version = _version(form)
    if version is None:
        raise EditorError("choose a version", 400)
    return version


def entry_from_form(form: Any, *, kind: str, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """An entry's content from the editor form (fields the form does not show are kept from ``base``)."""
    data: dict[str, Any] = {k: v for k, v in (base or {}).items()
                            if k not in ("title", "questions", "answer", "overrides", "tags", "sources",
                                         "last_reviewed", "steps", "followup")}
    data["kind"] = kind
    data["title"] = {"zh": _field(form, "title_zh"), "en": _field(form, "title_en")}
    data["questions"] = _lines(form, "questions")
    data["answer"] = {"zh": _field(form, "answer_zh"), "en": _field(form, "answer_en")}
    overrides: dict[str, dict[str, str]] = {}
    for lang in ("zh", "en"):
        for line in _lines(form, f"overrides_{lang}"):
            code, sep, text = line.partition(":")
            if not sep:
                code, sep, text = line.partition("：")
            if sep and text.strip():
                overrides.setdefault(code.strip().upper(), {})[lang] = text.strip()
    data["overrides"] = overrides
    data["tags"] = [t.strip() for t in _field(form, "tags").replace("，", ",").split(",") if t.strip()]
    sources = []
    for line in _lines(form, "sources"):
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 3:
            sources.append({"title": parts[0], "url": parts[1], "date": parts[2]})
        elif parts:
            sources.append({"title": parts[0], "url": parts[1] if len(parts) > 1 else "", "date": ""})
    data["sources"] = sources
    data["last_reviewed"] = _field(form, "last_reviewed")
    if kind == "playbook":
        data["steps"] = {"zh": _lines(form, "steps_zh"), "en": _lines(form, "steps_en")}
        data["followup"] = {"zh": _field(form, "followup_zh"), "en": _field(form, "followup_en")}
        if isinstance(data.get("priority"), str) and data["priority"].isdigit():
            data["priority"] = int(data["priority"])
    return data


def _field(form: Any, name: str) -> str:
    return str(form.get(name, "")).replace("\r\n", "\n").strip()


def _lines(form: Any, name: str) -> list[str]:
    return [line.strip() for line in _field(form, name).split("\n") if line.strip()]


def _entry_form(csrf: str, slug: str | None, data: dict[str, Any], action: str, base_version: int | None = None) -> str:
    def text(key: str, lang: str) -> str:
        return h((data.get(key) or {}).get(lang, ""))

    overrides = data.get("overrides") or {}
    over = {lang: "\n".join(f'{code}: {v.get(lang)}' for code, v in overrides.items() if v.get(lang))
            for lang in ("zh", "en")}
    sources = "\n".join(f'{s.get("title", "")} | {s.get("url", "")} | {s.get("date", "")}'
                        for s in data.get("sources") or [])
    slug_field = "" if slug else (
        f'<label>标识（slug，英文小写和下划线，创建后不能改）<input name="slug" required pattern="[a-z][a-z0-9_]{{1,63}}" '
        f'value="{h(data.get("slug", ""))}"></label>')
    playbook = ""
    if data.get("kind") == "playbook":
        steps = data.get("steps") or {}
        playbook = (f'<fieldset><legend>应急步骤（每行一步，最多6步）</legend>'
                    f'<label>中文<textarea name="steps_zh" rows="6">{h(chr(10).join(steps.get("zh") or []))}</textarea></label>'
                    f'<label>English<textarea name="steps_en" rows="6">{h(chr(10).join(steps.get("en") or []))}</textarea></label>'
                    f'</fieldset><fieldset><legend>后续说明（使馆能做和不能做的）</legend>'
                    f'<label>中文<textarea name="followup_zh" rows="6">{text("followup", "zh")}</textarea></label>'
                    f'<label>English<textarea name="followup_en" rows="6">{text("followup", "en")}</textarea></label></fieldset>')
    base = f'<input type="hidden" name="base_version" value="{base_version}">' if base_version else ""
    return (f'<form method="post" action="{h(action)}" class="editor" id="entry-form">{csrf_field(csrf)}{base}{slug_field}'
            f'<label>标题<input name="title_zh" required value="{text("title", "zh")}"></label>'
            f'<label>标题（英文）<input name="title_en" value="{text("title", "en")}"></label>'
            f'<label>用户的问法（每行一个）<textarea name="questions" rows="6" required>'
            f'{h(chr(10).join(data.get("questions") or []))}</textarea></label>'
            f'<label>{"开场说明" if data.get("kind") == "playbook" else "答案"}（中文）'
            f'<textarea name="answer_zh" rows="10" required>{text("answer", "zh")}</textarea></label>'
            f'<label>答案（英文，用户用英文提问时使用）<textarea name="answer_en" rows="6">{text("answer", "en")}</textarea></label>'
            f'{playbook}'
            f'<label>按国家的不同答案（每行“国家代码: 答案”，如 TH: …）<textarea name="overrides_zh" rows="3">'
            f'{h(over["zh"])}</textarea></label>'
            f'<label>按国家的不同答案（英文）<textarea name="overrides_en" rows="2">{h(over["en"])}</textarea></label>'
            f'<label>标签（逗号分隔）<input name="tags" value="{h(", ".join(data.get("tags") or []))}"></label>'
            f'<label>来源（每行“标题 | 网址 | 日期”）<textarea name="sources" rows="3">{h(sources)}</textarea></label>'
            f'<label>上次复核<input name="last_reviewed" type="date" value="{h(data.get("last_reviewed") or "")}"></label>'
            f'<label>修改说明<input name="note" maxlength="200" placeholder="改了什么，为什么"></label>'
            f'<button type="submit">保存草稿</button></form>')


# --- directory --------------------------------------------------------------------------------------------------

@requires(*OPS)
async def directory_list(request: web.Request) -> web.StreamResponse:
    query = request.query.get("q", "")
    items = await _editor(request).countries(query)
    rows = "".join(
        f'<tr><td><a href="/console/directory/{h(i["iso"])}">{h(i["name"])}</a> <span class="muted">{h(i["iso"])}'
        f'</span></td><td>{h(_numbers(i["emergency"]))}</td><td>{int(i["missions"])}</td>'
        f'<td class="{"stale" if i["stale"] else ""}">{h(i["reviewed"] or "—")}</td>'
        f'<td>{"有未发布的修改" if i["has_draft"] else ""}</td></tr>' for i in items)
    body = (f'<h1>国家目录</h1><form method="get" action="/console/directory" class="search">'
            f'<input name="q" value="{h(query)}" placeholder="国家名称或代码" aria-label="搜索">'
            f'<button>搜索</button></form>'
            f'<form method="get" action="/console/directory/new" class="search" id="add-country">'
            f'<input name="iso" placeholder="新国家代码，如 IS" size="4" maxlength="2" aria-label="新国家代码">'
            f'<button>添加国家</button></form>'
            f'<table id="countries"><thead><tr><th>国家</th><th>紧急电话</th><th>使领馆</th><th>最早复核</th><th></th>'
            f'</tr></thead><tbody>{rows}</tbody></table>')
    return _page(request, "国家目录", body, "directory")


def _numbers(emergency: dict[str, Any] | None) -> str:
    if not emergency:
        return "—"
    return " · ".join(f"{label} {emergency[key]}" for key, label in SERVICES if emergency.get(key))


@requires(*OPS)
async def directory_edit(request: web.Request) -> web.StreamResponse:
    return await _directory_edit(request)


async def _directory_edit(request: web.Request, error: str = "", form_data: dict[str, Any] | None = None,
                         status: int = 200) -> web.StreamResponse:
    iso = request.match_info["iso"].upper()
    if iso == "NEW":
        iso = str(request.query.get("iso", "")).upper()
        if len(iso) != 2 or not iso.isalpha():
            raise web.HTTPSeeOther("/console/directory")
        raise web.HTTPSeeOther(f"/console/directory/{iso}")
    editor = _editor(request)
    try:
        country = await editor.country(iso)
        versions = await editor.country_versions(iso)
    except EditorError:
        country, versions = {"iso": iso, "latest": None, "has_draft": False, "published_version": None}, []
    data = form_data or country.get("latest") or {"emergency": None, "missions": []}
    csrf = request[CSRF]
    notice = {"saved": '<p class="ok" role="status">已保存为草稿，发布后生效。</p>',
              "published": '<p class="ok" role="status">已发布：从下一条消息起生效。</p>'}
    shown = next((v for k, v in notice.items() if request.query.get(k)), "")
    latest = max((v["version"] for v in versions), default=0)
    publish = (f'<form method="post" action="/console/directory/{iso}/publish" class="inline">{csrf_field(csrf)}'
               f'<input type="hidden" name="version" value="{latest}"><button class="primary">发布第 {latest} 版</button>'
               f'</form>' if country.get("has_draft") else "")
    history = _history(versions, f"/console/directory/{iso}", csrf)
    body = (f'<p><a href="/console/directory">← 国家目录</a></p><h1>{h(zh_name(iso))} <small>{h(iso)}</small></h1>'
            f'{shown}{error}<div class="actions">{publish}</div>'
            f'{_country_form(csrf, iso, data, latest)}'
            f'<h2>版本历史</h2>{history}')
    return _page(request, zh_name(iso), body, "directory", status=status)


def _country_form(csrf: str, iso: str, data: dict[str, Any], base_version: int) -> str:
    emergency = data.get("emergency") or {}
    source = emergency.get("source") or {}
    numbers = "".join(f'<label>{label}<input name="e_{key}" value="{h(emergency.get(key) or "")}" size="8" '
                      f'inputmode="numeric"></label>' for key, label in SERVICES)
    missions = list(data.get("missions") or []) + [{}]
    blocks = []
    for i, mission in enumerate(missions):
        new = not mission
        fields = "".join(f'<label>{label}<input name="m{i}_{key}" value="{h(mission.get(key) or "")}"></label>'
                         for key, label, _ in MISSION_FIELDS)
        msource = mission.get("source") or {}
        kind = mission.get("kind", "consulate")
        blocks.append(
            f'<fieldset class="mission"><legend>{"新增使领馆（不填则忽略）" if new else h(mission.get("name"))}</legend>'
            f'<label>类型<select name="m{i}_kind"><option value="embassy" {"selected" if kind == "embassy" else ""}>大使馆'
            f'</option><option value="consulate" {"selected" if kind == "consulate" else ""}>总领馆/领馆</option></select>'
            f'</label>{fields}'
            f'<label>来源标题<input name="m{i}_source_title" value="{h(msource.get("title") or "")}"></label>'
            f'<label>来源网址<input name="m{i}_source_url" value="{h(msource.get("url") or "")}"></label>'
            f'<label>来源日期<input name="m{i}_source_date" value="{h(msource.get("date") or "")}"></label>'
            f'<label>上次复核<input name="m{i}_last_reviewed" type="date" value="{h(mission.get("last_reviewed") or "")}">'
            f'</label>{"" if new else f"<label><input type=checkbox name=m{i}_remove value=1> 删除这个使领馆</label>"}'
            f'</fieldset>')
    return (f'<form method="post" action="/console/directory/{iso}/save" class="editor" id="country-form">'
            f'{csrf_field(csrf)}<input type="hidden" name="base_version" value="{base_version}">'
            f'<input type="hidden" name="missions" value="{len(missions)}">'
            f'<fieldset><legend>当地紧急电话（须为 libphonenumber 认可的紧急号码）</legend>{numbers}'
            f'<label>说明<input name="e_note" value="{h(emergency.get("note") or "")}"></label>'
            f'<label>来源标题<input name="e_source_title" value="{h(source.get("title") or "")}"></label>'
            f'<label>来源网址<input name="e_source_url" value="{h(source.get("url") or "")}"></label>'
            f'<label>来源日期<input name="e_source_date" value="{h(source.get("date") or "")}"></label>'
            f'<label>上次复核<input name="e_last_reviewed" type="date" value="{h(emergency.get("last_reviewed") or "")}">'
            f'</label></fieldset>{"".join(blocks)}'
            f'<label>修改说明<input name="note" maxlength="200"></label><button type="submit">保存草稿</button></form>')


def country_from_form(form: Any, iso: str, base: dict[str, Any] | None) -> dict[str, Any]:
    """Directory content from the form; keys the form doesn't show (exceptions, flags) are kept."""
    old = base or {}
    emergency: dict[str, Any] | None = dict(old.get("emergency") or {})
    for key, _ in SERVICES:
        emergency[key] = _field(form, f"e_{key}") or None
    emergency.update(iso=iso, note=_field(form, "e_note") or None, last_reviewed=_field(form, "e_last_reviewed") or None,
                     source={"title": _field(form, "e_source_title"), "url": _field(form, "e_source_url"),
                             "date": _field(form, "e_source_date")})
    if not any(emergency.get(key) for key, _ in SERVICES):
        emergency = None
    old_missions = list(old.get("missions") or [])
    missions = []
    count = int(_field(form, "missions") or 0) if _field(form, "missions").isdigit() else 0
    for i in range(min(count, 60)):
        if _field(form, f"m{i}_remove"):
            continue
        mission = dict(old_missions[i]) if i < len(old_missions) else {}
        for key, _, _ in MISSION_FIELDS:
            mission[key] = _field(form, f"m{i}_{key}") or None
        if i >= len(old_missions) and not mission.get("name"):
            continue  # the empty "add a mission" block
        mission.update(iso=iso, kind=_field(form, f"m{i}_kind") or "consulate",
                       last_reviewed=_field(form, f"m{i}_last_reviewed") or None,
                       source={"title": _field(form, f"m{i}_source_title"), "url": _field(form, f"m{i}_source_url"),
                               "date": _field(form, f"m{i}_source_date")})
        missions.append(mission)
    return {"emergency": emergency, "missions": missions}


@requires(*OPS)
async def directory_action(request: web.Request) -> web.StreamResponse:
    iso, action = request.match_info["iso"].upper(), request.match_info["action"]
    editor, who = _editor(request), request[PRINCIPAL].name
    form = await request.post()
    try:
        if action == "save":
            try:
                current = (await editor.country(iso))["latest"]
            except EditorError:
                current = None
            data = country_from_form(form, iso, current)
            base = str(form.get("base_version", ""))
            try:
                await editor.update_country(iso, data, actor=who, base_version=int(base) if base.isdigit() else None,
                                            note=str(form.get("note", "")) or None)
            except EditorError as exc:
                return await _directory_edit(request, _problems(exc), data, status=exc.status)
            raise web.HTTPSeeOther(f"/console/directory/{iso}?saved=1")
        if action == "publish":
            await editor.publish_country(iso, actor=who, version=_version(form))
        elif action == "rollback":
            await editor.rollback_country(iso, _required_version(form), actor=who)
        else:
            raise web.HTTPNotFound()
    except EditorError as exc:
        return await _directory_edit(request, _problems(exc), status=exc.status)
    raise web.HTTPSeeOther(f"/console/directory/{iso}?published=1")


# --- safety alerts ----------------------------------------------------------------------------------------------

@requires(*OPS)
async def alerts_list(request: web.Request) -> web.StreamResponse:
    items = await _editor(request).alerts(include_archived=request.query.get("archived") == "1")
    rows = "".join(
        f'<tr class="level{LEVELS.index(i["level"]) if i["level"] in LEVELS else 0}">'
        f'<td><a href="/console/alerts/{int(i["id"])}">{h(zh_name(i["country"]))}</a></td><td>{h(i["level"])}</td>'
        f'<td>{h(i["text"])}</td><td>{h(i["starts_at"])} — {h(i["ends_at"])}</td>'
        f'<td>{_alert_state(i)}</td></tr>' for i in items)
    today = date.today().isoformat()
    form = _alert_form(request[CSRF], "/console/alerts/new", {"starts_at": today}, None)
    body = (f'<h1>安全提醒</h1><p class="muted">生效中的提醒会加在该国用户的紧急情况回复和“安全提醒”回答里；'
            f'过期的提醒不会再显示。</p>'
            f'<table id="alerts"><thead><tr><th>国家</th><th>级别</th><th>内容</th><th>有效期（北京时间）</th><th>状态</th>'
            f'</tr></thead><tbody>{rows or "<tr><td colspan=5>暂无提醒</td></tr>"}</tbody></table>'
            f'<p><a href="/console/alerts?archived=1">包括已下线的</a></p><h2>新建提醒</h2>{form}')
    return _page(request, "安全提醒", body, "alerts")


def _alert_state(item: dict[str, Any]) -> str:
    if item["status"] == "archived":
        return "已下线"
    if item["status"] == "draft":
        return "草稿"
    state = "生效中" if item["live"] else "已过期" if item["expired"] else "未到生效时间"
    return state + (" · 有未发布的修改" if item["has_draft"] else "")


def _alert_form(csrf: str, action: str, data: dict[str, Any], base_version: int | None) -> str:
    text = data.get("text") or {}
    source = data.get("source") or {}
    levels = "".join(f'<option {"selected" if data.get("level") == level else ""}>{level}</option>' for level in LEVELS)
    base = f'<input type="hidden" name="base_version" value="{base_version}">' if base_version else ""
    return (f'<form method="post" action="{h(action)}" class="editor" id="alert-form">{csrf_field(csrf)}{base}'
            f'<label>国家代码<input name="country" required maxlength="2" size="3" value="{h(data.get("country") or "")}">'
            f'</label><label>级别<select name="level">{levels}</select></label>'
            f'<label>内容（中文，300字以内）<textarea name="text_zh" rows="3" required>{h(text.get("zh") or "")}</textarea></label>'
            f'<label>内容（英文）<textarea name="text_en" rows="2">{h(text.get("en") or "")}</textarea></label>'
            f'<label>生效日期<input name="starts_at" required value="{h(data.get("starts_at") or "")}" placeholder="YYYY-MM-DD">'
            f'</label><label>有效期至（含当天）<input name="ends_at" required value="{h(data.get("ends_at") or "")}" '
            f'placeholder="YYYY-MM-DD"></label>'
            f'<label>发布机构<input name="source_title" required value="{h(source.get("title") or "")}"></label>'
            f'<label>原文网址<input name="source_url" required value="{h(source.get("url") or "")}"></label>'
            f'<button type="submit">保存草稿</button></form>')


def alert_from_form(form: Any) -> dict[str, Any]:
    return {"country": _field(form, "country").upper(), "level": _field(form, "level"),
            "text": {"zh": _field(form, "text_zh"), "en": _field(form, "text_en")},
            "starts_at": _field(form, "starts_at"), "ends_at": _field(form, "ends_at"),
            "source": {"title": _field(form, "source_title"), "url": _field(form, "source_url")}}


@requires(*OPS)
async def alert_create(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    data = alert_from_form(form)
    try:
        alert = await _editor(request).create_alert(data, actor=request[PRINCIPAL].name)
    except EditorError as exc:
        body = f'<p><a href="/console/alerts">← 安全提醒</a></p><h1>新建提醒</h1>{_problems(exc)}' \
               f'{_alert_form(request[CSRF], "/console/alerts/new", data, None)}'
        return _page(request, "新建提醒", body, "alerts", status=exc.status)
    raise web.HTTPSeeOther(f'/console/alerts/{alert["id"]}?saved=1')


def _alert_id(request: web.Request) -> int:
    value = request.match_info["id"]
    if not value.isdigit():
        raise web.HTTPNotFound()
    return int(value)


@requires(*OPS)
async def alert_edit(request: web.Request) -> web.StreamResponse:
    return await _alert_edit(request)


async def _alert_edit(request: web.Request, error: str = "", form_data: dict[str, Any] | None = None,
                     status: int = 200) -> web.StreamResponse:
    alert_id = _alert_id(request)
    try:
        alert = await _editor(request).alert(alert_id)
        versions = await _editor(request).alert_versions(alert_id)
    except EditorError:
        raise web.HTTPNotFound() from None
    csrf = request[CSRF]
    notice = ('<p class="ok" role="status">已保存为草稿，发布后生效。</p>' if request.query.get("saved") else
              '<p class="ok" role="status">已发布。</p>' if request.query.get("published") else "")
    actions = ""
    if alert["has_draft"]:
        actions += (f'<form method="post" action="/console/alerts/{alert_id}/publish" class="inline">{csrf_field(csrf)}'
                    f'<input type="hidden" name="version" value="{alert["latest_version"]}">'
                    f'<button class="primary">发布第 {alert["latest_version"]} 版</button></form>')
    if alert["status"] != "archived":
        actions += (f'<form method="post" action="/console/alerts/{alert_id}/archive" class="inline">{csrf_field(csrf)}'
                    f'<button>下线</button></form>')
    history = _history(versions, f"/console/alerts/{alert_id}", csrf)
    body = (f'<p><a href="/console/alerts">← 安全提醒</a></p><h1>{h(zh_name(alert["country"]))}：{h(alert["level"])}</h1>'
            f'{notice}{error}<p>状态：{h(_alert_state(alert))}</p><div class="actions">{actions}</div>'
            f'{_alert_form(csrf, f"/console/alerts/{alert_id}/save", form_data or alert["latest"], alert["latest_version"])}'
            f'<h2>版本历史</h2>{history}')
    return _page(request, "安全提醒", body, "alerts", status=status)


@requires(*OPS)
async def alert_action(request: web.Request) -> web.StreamResponse:
    alert_id, action = _alert_id(request), request.match_info["action"]
    editor, who = _editor(request), request[PRINCIPAL].name
    form = await request.post()
    try:
        if action == "save":
            data = alert_from_form(form)
            base = str(form.get("base_version", ""))
            try:
                await editor.update_alert(alert_id, data, actor=who, base_version=int(base) if base.isdigit() else None)
            except EditorError as exc:
                return await _alert_edit(request, _problems(exc), data, status=exc.status)
            raise web.HTTPSeeOther(f"/console/alerts/{alert_id}?saved=1")
        if action == "publish":
            await editor.publish_alert(alert_id, actor=who, version=_version(form))
        elif action == "rollback":
            await editor.rollback_alert(alert_id, _required_version(form), actor=who)
        elif action == "archive":
            await editor.archive_alert(alert_id, actor=who)
        else:
            raise web.HTTPNotFound()
    except EditorError as exc:
        if exc.status == 404:
            raise web.HTTPNotFound() from None
        return await _alert_edit(request, _problems(exc), status=exc.status)
    raise web.HTTPSeeOther(f"/console/alerts/{alert_id}?published=1")
