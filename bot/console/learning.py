"""The ops staff's learning pages: unanswered questions (grouped, with one action per group) and retraining.

Server-rendered like the rest of the console; every user value is escaped with ``views.h``, every
form carries the CSRF token. ``static/learning.js`` only refreshes the running job's progress.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from bot.api import SETTINGS
from bot.api_learning import LEARNING_ROLES, Learning, learning
from bot.console.app import CSRF, PRINCIPAL, requires
from bot.console.views import csrf_field, h, page
from knowledge.base import Snapshot
from knowledge.unanswered import GROUP_DISTANCE, LOW_CONFIDENCE, MAX_MESSAGES, REASONS_ZH, WINDOW, Group
from nlu.retrain import INTENTS, LearningError, console_examples

INTENTS_ZH = {
    "emergency_arrest": "紧急：被捕、拘留", "emergency_crime": "紧急：遭遇犯罪", "emergency_medical": "紧急：伤病住院",
    "emergency_missing": "紧急：失联", "emergency_kidnap": "紧急：绑架、被控制", "emergency_disaster": "紧急：灾害、战乱",
    "emergency_death": "紧急：死亡", "faq": "领事咨询", "request_human": "要求人工", "greet": "问候",
    "thank": "感谢", "goodbye": "告别", "out_of_scope": "与领事无关",
}
DONE_ZH = {"variant": "已加为条目“{slug}”的问法并发布，下一条消息起所有进程都按新问法匹配。",
           "training": "已加为训练样例（{intent}），下次重新训练时使用。",
           "dismiss": "已忽略。"}
# Styles and the progress script for these pages only (CSP: style-src and script-src 'self').
SCRIPT = ('<link rel="stylesheet" href="/console/static/learning.css">'
          '<script src="/console/static/learning.js"></script>')


def add_learning_routes(console: web.Application) -> None:
    r = console.router
    r.add_get("/unanswered", unanswered_page)
    r.add_post("/unanswered/action", unanswered_action)
    r.add_get("/nlu", nlu_page)
    r.add_post("/nlu/retrain", retrain)
    r.add_get("/nlu/jobs", jobs_json)


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, content_type="text/html", status=status)


def _page(request: web.Request, title: str, body: str, active: str, status: int = 200) -> web.Response:
    return _html(page(title, body + SCRIPT, request[PRINCIPAL], request[CSRF], active), status=status)


def _learning(request: web.Request) -> Learning:
    return learning(request)


# --- unanswered questions ---------------------------------------------------------------------------------------

@requires(*LEARNING_ROLES)
async def unanswered_page(request: web.Request) -> web.StreamResponse:
    return await _unanswered(request)


async def _unanswered(request: web.Request, error: str = "", status: int = 200) -> web.StreamResponse:
    unanswered = _learning(request).unanswered
    groups = await unanswered.groups()
    snapshot = await unanswered.kb.current()
    notice = _done_notice(request.query) if not error else ""
    total = sum(len(g.items) for g in groups)
    csrf = request[CSRF]
    sections = "".join(_group_html(g, snapshot, csrf) for g in groups)
    legend = (f'<p class="muted">最近{WINDOW.days}天里机器人没答好的用户消息：未能识别（低于置信度下限）、'
              f'低置信度回答（意图置信度低于{LOW_CONFIDENCE:.2f}，约五条错一条）、“您是不是想问”后没有选择、'
              f'人工服务评分1–2分。相似的问题归为一组（组内每两条之间的余弦相似度至少 {1 - GROUP_DISTANCE:.2f}）。'
              f'处理过的消息不再出现。</p>')
    summary = (f'<p id="summary">{total} 条消息，{len(groups)} 组'
               f'{f"（只显示最近 {MAX_MESSAGES} 条）" if total >= MAX_MESSAGES else ""}</p>')
    empty = '<p class="ok" id="no-unanswered">没有待处理的未答问题。</p>' if not groups else ""
    body = f'<h1>未答问题</h1>{legend}{notice}{error}{summary}{empty}<div id="groups">{sections}</div>'
    return _page(request, "未答问题", body, "unanswered", status=status)


def _done_notice(query: Any) -> str:
    action = query.get("done")
    if action not in DONE_ZH:
        return ""
    text = DONE_ZH[action].format(slug=query.get("slug", ""), intent=query.get("intent", ""))
    return f'<p class="ok" role="status">{h(query.get("n", ""))} 条消息{h(text)}</p>'


def _group_html(group: Group, snapshot: Snapshot, csrf: str) -> str:
    key = group.key
    reasons = " ".join(f'<span class="badge">{h(REASONS_ZH[r])} {n}</span>' for r, n in group.reasons().items())
    rows = "".join(
        f'<li><label><input type="checkbox" name="message_id" value="{int(i.id)}" checked> '
        f'<span class="text">{h(i.text)}</span></label>'
        f'<div class="muted">{h(i.created_at.isoformat()[:16].replace("T", " "))} · '
        f'{h("、".join(REASONS_ZH[r] for r in sorted(i.reasons)))} · 意图 {h(i.intent or "—")}'
        f'{f" {i.confidence:.2f}" if i.confidence is not None else ""} · 回复 {h(i.handler or "—")}</div></li>'
        for i in group.items)
    entries = _faq_entries(snapshot)
    entry_options = "".join(
        f'<option value="{h(slug)}" {"selected" if slug == group.suggested_entry else ""}>{h(title)}（{h(slug)}）</option>'
        for slug, title in entries)
    intent_options = "".join(
        f'<option value="{h(i)}" {"selected" if i == group.suggested_intent else ""}>{h(INTENTS_ZH[i])}（{h(i)}）</option>'
        for i in INTENTS)
    suggestion = ""
    if group.suggested_entry:
        suggestion = (f'<p class="muted">最接近的条目：<b>{h(group.suggested_title)}</b>（{h(group.suggested_entry)}）；'
                      f'模型最倾向的意图：{h(INTENTS_ZH.get(group.suggested_intent or "", group.suggested_intent))}</p>')
    return (f'<section class="group" id="g{key}" data-count="{len(group.items)}">'
            f'<h2><span class="count">{len(group.items)} 条</span> {reasons}</h2>{suggestion}'
            f'<form method="post" action="/console/unanswered/action">{csrf_field(csrf)}'
            f'<ul class="messages">{rows}</ul>'
            f'<div class="triage">'
            f'<fieldset><legend>加为条目的问法（立即发布）</legend>'
            f'<select name="slug" aria-label="条目">{entry_options}</select> '
            f'<button class="primary" name="action" value="variant">加为问法</button></fieldset>'
            f'<fieldset><legend>加为训练样例（重新训练后生效）</legend>'
            f'<select name="intent" aria-label="意图">{intent_options}</select> '
            f'<select name="topic" aria-label="条目（意图为领事咨询时）">{entry_options}</select> '
            f'<button name="action" value="training">加为样例</button></fieldset>'
            f'<fieldset><legend>不需要处理</legend><button name="action" value="dismiss">忽略</button></fieldset>'
            f'</div></form></section>')


def _faq_entries(snapshot: Snapshot) -> list[tuple[str, str]]:
    items = [(slug, str((data.get("title") or {}).get("zh") or slug)) for slug, data in snapshot.entries.items()
             if data.get("kind") == "faq"]
    return sorted(items, key=lambda x: x[0])


@requires(*LEARNING_ROLES)
async def unanswered_action(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    action = str(form.get("action", ""))
    try:
        ids = [int(str(v)) for v in form.getall("message_id", [])]
    except ValueError:
        ids = []
    slug, intent = str(form.get("slug", "")) or None, str(form.get("intent", "")) or None
    topic = str(form.get("topic", "")) or None
    try:
        if not ids:
            raise LearningError("请至少勾选一条消息")
        result = await _learning(request).unanswered.act(ids, action, request[PRINCIPAL].name, slug=slug,
                                                         intent=intent, topic=topic)
    except LearningError as exc:
        return await _unanswered(request, f'<p class="error" role="alert">{h(str(exc))}</p>', exc.status)
    query = {"done": action, "n": str(result["messages"])}
    if action == "variant":
        query["slug"] = str(result["slug"])
    if action == "training":
        query["intent"] = str(result["intent"]) + (f"/{result['topic']}" if result.get("topic") else "")
    raise web.HTTPSeeOther(f"/console/unanswered?{urlencode(query)}")


# --- retraining ------------------------------------------------------------------------------------------------

@requires(*LEARNING_ROLES)
async def nlu_page(request: web.Request) -> web.StreamResponse:
    return await _nlu(request)


async def _nlu(request: web.Request, error: str = "", status: int = 200) -> web.StreamResponse:
    learn = _learning(request)
    retrainer = learn.retrainer
    jobs = await retrainer.jobs()
    active = await retrainer.active()
    examples = await console_examples(retrainer.sessions)
    settings = request.config_dict[SETTINGS]
    running = any(j["running"] for j in jobs)
    notice = ""
    if not error and any(j["running"] and str(j["id"]) == request.query.get("started") for j in jobs):
        notice = f'<p class="ok" role="status">训练任务 #{h(request.query["started"])} 已开始，进度会自动刷新。</p>'
    live = _live_html(active, learn.live.nlu.model.key, retrainer.data_key())
    engine = ("" if settings.nlu_engine == "builtin" else
              '<p class="muted">当前使用 Rasa 引擎；内置引擎是它出错或超时时的后备，这里训练的是内置引擎。</p>')
    start = (f'<form method="post" action="/console/nlu/retrain" id="retrain">{csrf_field(request[CSRF])}'
             f'<button class="primary" {"disabled" if running else ""}>开始重新训练</button> '
             f'<span class="muted">用 data/nlu/train 和控制台添加的 {len(examples)} 条样例训练，在测试集上评估；'
             f'只有紧急情况召回率不下降时才替换线上模型，所有进程无需重启即自动使用。</span></form>')
    rows = "".join(_job_row(j) for j in jobs) or '<tr class="empty"><td colspan="7">还没有训练过</td></tr>'
    table = (f'<table id="jobs" data-running="{1 if running else 0}"><thead><tr><th>任务</th><th>状态</th><th>进度</th>'
             f'<th>说明</th><th>紧急召回（新 / 原）</th><th>宏平均F1（新 / 原）</th><th>发起人 · 时间</th></tr></thead>'
             f'<tbody>{rows}</tbody></table>')
    finished = next((j for j in jobs if j["metrics"].get("candidate")), None)
    body = (f'<h1>模型训练</h1>{notice}{error}{engine}{live}{start}<h2>训练任务</h2>{table}'
            f'{_recall_table(finished) if finished else ""}')
    return _page(request, "模型训练", body, "nlu", status=status)


def _live_html(active: dict[str, Any] | None, key: str, data_key: str) -> str:
    if active is None:
        return (f'<div class="ok" id="live-model"><b>线上模型</b>：由 data/nlu/train 训练的内置模型（{h(key)}）。'
                f'还没有从控制台训练并启用过模型。</div>')
    m = active["metrics"]
    cand = m.get("candidate") or {}
    stale = ""
    if m.get("data_key") and m["data_key"] != data_key:
        stale = ('<p class="stale">data/nlu/train 在这个模型训练之后有改动（新部署），'
                 '线上模型还不包含这些改动；请重新训练。</p>')
    return (f'<div class="ok" id="live-model"><b>线上模型</b>：训练任务 #{int(active["id"])}（{h(key)}），'
            f'{h(active["author"])} 于 {h((active["finished_at"] or "")[:16].replace("T", " "))} 启用；'
            f'测试集紧急情况召回率 {cand.get("emergency_recall", 0):.3f}，宏平均F1 {cand.get("macro_f1", 0):.3f}，'
            f'训练样例 {int((m.get("examples") or {}).get("data", 0))} 条 + 控制台 '
            f'{int((m.get("examples") or {}).get("console", 0))} 条。</div>{stale}')


def _pair(job: dict[str, Any], name: str) -> str:
    m = job["metrics"]
    if not m.get("candidate"):
        return "—"
    return f'{m["candidate"][name]:.3f} / {m["baseline"][name]:.3f}'


def _job_row(job: dict[str, Any]) -> str:
    status = job["status"]
    return (f'<tr class="job {h(status)}" data-id="{int(job["id"])}"><td>#{int(job["id"])}</td>'
            f'<td class="status">{h(job["status_zh"])}</td>'
            f'<td><progress max="100" value="{int(job["progress"])}"></progress> '
            f'<span class="pct">{int(job["progress"])}%</span></td>'
            f'<td class="stage">{h(job["stage"])}</td><td>{h(_pair(job, "emergency_recall"))}</td>'
            f'<td>{h(_pair(job, "macro_f1"))}</td>'
            f'<td>{h(job["author"])} · {h((job["created_at"] or "")[:16].replace("T", " "))}</td></tr>')


def _recall_table(job: dict[str, Any]) -> str:
    m = job["metrics"]
    cand, base = m["candidate"], m["baseline"]
    rows = "".join(
        f'<tr class="{"emergency" if intent.startswith("emergency_") else ""}"><td>{h(INTENTS_ZH.get(intent, intent))}'
        f'（{h(intent)}）</td><td>{cand["recall"].get(intent, 0):.3f}</td><td>{base["recall"].get(intent, 0):.3f}</td>'
        f'<td>{cand["f1"].get(intent, 0):.3f}</td><td>{base["f1"].get(intent, 0):.3f}</td></tr>'
        for intent in sorted(cand["recall"]))
    overlap = ""
    if m.get("test_overlap"):
        overlap = (f'<p class="stale">控制台样例中有 {int(m["test_overlap"])} 条与测试集相同，'
                   f'新模型的测试成绩会因此偏高。</p>')
    return (f'<h2>任务 #{int(job["id"])} 各意图的测试集结果（新模型 / 当时的线上模型）</h2>{overlap}'
            f'<table id="recall"><thead><tr><th>意图</th><th>召回率（新）</th><th>召回率（原）</th><th>F1（新）</th>'
            f'<th>F1（原）</th></tr></thead><tbody>{rows}</tbody></table>')


@requires(*LEARNING_ROLES)
async def retrain(request: web.Request) -> web.StreamResponse:
    try:
        job_id = await _learning(request).retrainer.start(request[PRINCIPAL].name)
    except LearningError as exc:
        return await _nlu(request, f'<p class="error" role="alert">{h(str(exc))}</p>', exc.status)
    raise web.HTTPSeeOther(f"/console/nlu?started={job_id}")


@requires(*LEARNING_ROLES)
async def jobs_json(request: web.Request) -> web.StreamResponse:
    """The jobs for the page's progress refresh (the page's script fills them in as text)."""
    jobs = await _learning(request).retrainer.jobs()
    return web.json_response({"items": [{k: j[k] for k in ("id", "status", "status_zh", "progress", "stage", "running")}
                                        for j in jobs]})
