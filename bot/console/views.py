"""HTML for the duty officers' console: server-rendered, every user-supplied value escaped here."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from bot.accounts import Principal
from bot.queue import Transcript
from bot.storage.models import utcnow

PRIORITY = {1: "P1 危及生命", 2: "P2 紧急", 3: "P3 人工咨询"}
STATUS = {"waiting": "等待中", "assigned": "处理中", "closed": "已结束"}
CANNED = (
    "您好，我是值班领事。请告诉我您现在是否安全，以及准确位置。",
    "请提供您的姓名、护照号码和可以联系到您的电话。",
    "如有危险，请立即拨打当地报警电话，并保持手机畅通。",
    "我们已将您的情况通报驻当地使领馆，他们会与您联系，请保持电话畅通。",
    "领事保护服务免费，但律师、医疗、住宿等费用需由您本人承担。",
)
DELIVERY_HELP = {
    45015: "对方超过48小时没有发消息（或已取消关注），微信不允许再发。请等对方再发一条消息后再回复，紧急时请电话联系。",
    45047: "这条用户消息后的5条回复额度已用完。请等对方再发消息后再回复。",
}


def h(value: Any) -> str:
    """Escape for HTML text and attribute values."""
    return escape("" if value is None else str(value), quote=True)


# Shown by console.js while a live part of the page (the queue's event stream, a case's transcript) cannot update.
STALE = ('<div id="stale" class="stale" hidden role="alert">实时更新已中断，正在重连…'
         '如果一直不恢复，请刷新页面（可能需要重新登录）。</div>')


def page(title: str, body: str, who: Principal | None, csrf: str = "", active: str = "") -> str:
    nav = ""
    if who is not None:
        links = []
        if who.role in ("officer", "supervisor", "admin"):
            links += [("queue", "/console/", "队列"), ("team", "/console/team", "值班"), ("reports", "/console/reports", "统计")]
        if who.role in ("ops", "admin"):
            links += [("kb", "/console/kb", "知识库"), ("directory", "/console/directory", "国家目录"),
                      ("alerts", "/console/alerts", "安全提醒"), ("unanswered", "/console/unanswered", "未答问题"),
                      ("nlu", "/console/nlu", "模型训练")]
        if who.role == "ops":
            links.append(("team", "/console/team", "值班"))
        if who.role in ("supervisor", "admin"):
            links.append(("audit", "/console/audit", "审计日志"))
        items = "".join(f'<a class="{"on" if key == active else ""}" href="{href}">{label}</a>'
                        for key, href, label in links)
        nav = (f'<nav>{items}<span class="me">{h(who.name)} · {h(who.role)}</span>'
               f'<form method="post" action="/console/logout" class="inline">{csrf_field(csrf)}'
               f'<button type="submit">退出</button></form></nav>')
    return (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{h(title)} · 领保值班台</title>'
            f'<link rel="stylesheet" href="/console/static/console.css"></head>'
            f'<body data-csrf="{h(csrf)}"><header><b>领保值班台</b>{nav}</header><main>{STALE}{body}</main>'
            f'<script src="/console/static/console.js"></script></body></html>')


def csrf_field(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{h(csrf)}">'


def login_page(csrf: str, error: str = "", name: str = "") -> str:
    message = f'<p class="error" role="alert">{h(error)}</p>' if error else ""
    body = (f'<section class="login"><h1>值班人员登录</h1>{message}'
            f'<form method="post" action="/console/login">{csrf_field(csrf)}'
            f'<label>用户名 <input name="name" value="{h(name)}" autocomplete="username" required></label>'
            f'<label>密码 <input name="password" type="password" autocomplete="current-password" required></label>'
            f'<button type="submit">登录</button></form></section>')
    return page("登录", body, None)


def queue_page(who: Principal, csrf: str, items: list[dict[str, Any]], roster: list[dict[str, Any]]) -> str:
    online = sum(1 for r in roster if r["presence"] == "online" and r["role"] in ("officer", "supervisor"))
    body = (f'<div id="alert" class="alert" hidden role="alert"></div>'
            f'<h1>待处理求助 <small id="live">实时更新</small></h1>'
            f'<p class="muted">在线值班人员：{online}</p>'
            f'<table id="queue"><thead><tr><th>优先级</th><th>等待</th><th>国家</th><th>情况</th>'
            f'<th>状态</th><th>处理人</th><th></th></tr></thead>'
            f'<tbody>{queue_rows(items)}</tbody></table>')
    return page("队列", body, who, csrf, "queue")


def queue_rows(items: list[dict[str, Any]]) -> str:
    """Rows for the open cases (also rendered by the page's script from the live feed, the same way)."""
    if not items:
        return '<tr class="empty"><td colspan="7">暂无待处理求助</td></tr>'
    rows = []
    for item in items:
        case = item.get("case") or {}
        breach = " breach" if item.get("breached_at") else ""
        rows.append(
            f'<tr class="p{int(item["priority"])}{breach}" data-id="{int(item["id"])}">'
            f'<td>{h(PRIORITY.get(item["priority"], item["priority"]))}</td>'
            f'<td>{h(waited(item.get("created_at")))}</td>'
            f'<td>{h(case.get("country_name") or case.get("country") or "未知")}</td>'
            f'<td>{h(case.get("summary") or item.get("reason"))}<div class="said">{h(case.get("said"))}</div></td>'
            f'<td>{h(STATUS.get(item["status"], item["status"]))}{" · 超时" if breach else ""}</td>'
            f'<td>{h(item.get("assignee") or "—")}</td>'
            f'<td><a href="/console/case/{int(item["id"])}">打开</a></td></tr>')
    return "".join(rows)


def waited(created: str | None) -> str:
    if not created:
        return ""
    seconds = int((utcnow() - datetime.fromisoformat(created)).total_seconds())
    if seconds < 60:
        return f"{seconds}秒"
    if seconds < 3600:
        return f"{seconds // 60}分钟"
    return f"{seconds // 3600}小时{seconds % 3600 // 60}分"


def case_page(who: Principal, csrf: str, item: dict[str, Any], transcript: Transcript,
              window: dict[str, Any], notes: list[dict[str, Any]], colleagues: list[str]) -> str:
    case = item.get("case") or {}
    eid = int(item["id"])
    location = case.get("location") or {}
    where = f'{location.get("label") or ""} ({location.get("lat")}, {location.get("lon")})' if location else "未知"
    card = (f'<dl class="card"><dt>类型</dt><dd>{h(case.get("type") or item["reason"])}</dd>'
            f'<dt>优先级</dt><dd>{h(PRIORITY.get(item["priority"]))}</dd>'
            f'<dt>国家</dt><dd>{h(case.get("country_name") or case.get("country") or "未知")}</dd>'
            f'<dt>位置</dt><dd>{h(where)}</dd><dt>安全状况</dt><dd>{h(case.get("safety") or "未知")}</dd>'
            f'<dt>摘要</dt><dd>{h(case.get("summary"))}</dd><dt>原话</dt><dd>{h(case.get("said"))}</dd>'
            f'<dt>状态</dt><dd>{h(STATUS.get(item["status"]))} · {h(item.get("assignee") or "未认领")}</dd></dl>')
    actions = []
    if item["status"] != "closed":
        if item["status"] == "waiting" or item.get("assignee") != who.name:
            actions.append(_button(eid, "claim", "认领", csrf))
        options = "".join(f'<option value="{h(c)}">{h(c)}</option>' for c in colleagues if c != item.get("assignee"))
        actions.append(f'<form method="post" action="/console/case/{eid}/transfer" class="inline">{csrf_field(csrf)}'
                       f'<select name="to" aria-label="转交给">{options}</select><button>转交</button></form>')
        actions.append(_button(eid, "close", "结束", csrf))
    window_text = (f'48小时窗口剩余 {h(window["left"])}，本轮还可发送 {int(window["quota"])} 条'
                   if window["open"] else "48小时窗口已关闭：需等对方再发消息后才能回复")
    reply = ""
    if item["status"] == "assigned":
        canned = "".join(f'<option>{h(c)}</option>' for c in CANNED)
        reply = (f'<form method="post" action="/console/case/{eid}/reply" id="reply">{csrf_field(csrf)}'
                 f'<label>常用语 <select id="canned"><option value="">—</option>{canned}</select></label>'
                 f'<textarea name="text" rows="3" maxlength="2000" required placeholder="回复对方…"></textarea>'
                 f'<button type="submit">发送</button></form>')
    note_list = "".join(f'<li><b>{h(n["author"])}</b> {h(n["created_at"][:16])}：{h(n["text"])}</li>' for n in notes)
    note_form = (f'<form method="post" action="/console/case/{eid}/note">{csrf_field(csrf)}'
                 f'<textarea name="text" rows="2" required placeholder="内部备注（对方看不到）"></textarea>'
                 f'<button type="submit">添加备注</button></form>')
    body = (f'<p><a href="/console/">← 队列</a></p><h1>求助 #{eid}</h1>'
            f'<div class="cols"><div>{card}<div class="actions">{"".join(actions)}</div>'
            f'<h2>内部备注</h2><ul class="notes">{note_list}</ul>{note_form}</div>'
            f'<div><p class="window">{window_text}</p>'
            f'<div id="transcript" data-src="/console/case/{eid}/transcript">{transcript_html(transcript)}</div>'
            f'{reply}</div></div>')
    return page(f"求助 #{eid}", body, who, csrf, "queue")


def _button(eid: int, action: str, label: str, csrf: str) -> str:
    return (f'<form method="post" action="/console/case/{eid}/{action}" class="inline">{csrf_field(csrf)}'
            f'<button type="submit">{label}</button></form>')


def transcript_html(transcript: Transcript) -> str:
    out = [f'<p class="muted earlier">只显示最近 {len(transcript.items)} 条消息（更早的可通过 API 翻看）</p>'] \
        if transcript.more else []
    for m in transcript.items:
        who = {"user": "求助人", "officer": f'值班人员 {m.get("author") or ""}', "bot": "领保助手"}[m["sender"]]
        state = ""
        if m.get("delivery") == "failed":
            help_text = DELIVERY_HELP.get(m.get("error_code") or 0, m.get("error") or "发送失败")
            state = f'<div class="failed">未送达（{h(m.get("error_code"))}）：{h(help_text)}</div>'
        elif m.get("delivery") == "pending":
            state = '<div class="pending">发送中…</div>'
        elif m.get("delivery") == "sent" and m["sender"] == "officer":
            state = '<div class="sent">已送达</div>'
        text = m.get("text") or f'[{m.get("type")}]'
        out.append(f'<div class="msg {h(m["sender"])}"><div class="meta">{h(who)} · {h((m.get("created_at") or "")[:19])}'
                   f'</div><div class="text">{h(text)}</div>{state}</div>')
    return "".join(out) or '<p class="muted">暂无消息</p>'


def team_page(who: Principal, csrf: str, roster: list[dict[str, Any]], cases: list[dict[str, Any]]) -> str:
    rows = "".join(f'<tr><td>{h(r["name"])}</td><td>{h(r["role"])}</td><td class="{h(r["presence"])}">'
                   f'{h({"online": "在线", "away": "离开", "offline": "离线"}.get(r["presence"]))}</td></tr>'
                   for r in roster)
    presence = (f'<form method="post" action="/console/presence" class="inline">{csrf_field(csrf)}'
                f'<select name="presence"><option value="online">在线</option><option value="away">离开</option>'
                f'<option value="offline">离线</option></select><button>更新我的状态</button></form>')
    handover = ""
    if who.role in ("supervisor", "admin"):
        names = [r["name"] for r in roster if r["role"] in ("officer", "supervisor")]
        lines = []
        for case in cases:
            options = "".join(f'<option value="{h(n)}">{h(n)}</option>' for n in names)
            lines.append(f'<tr><td><a href="/console/case/{int(case["id"])}">#{int(case["id"])}</a></td>'
                         f'<td>{h(PRIORITY.get(case["priority"]))}</td><td>{h(case.get("assignee") or "未认领")}</td>'
                         f'<td>{h((case.get("case") or {}).get("summary"))}</td><td>'
                         f'<form method="post" action="/console/case/{int(case["id"])}/transfer" class="inline">'
                         f'{csrf_field(csrf)}<select name="to">{options}</select><button>改派</button></form></td></tr>')
        handover = (f'<h2>交接班：所有未结束的求助</h2><table><thead><tr><th>求助</th><th>优先级</th><th>处理人</th>'
                    f'<th>摘要</th><th></th></tr></thead><tbody>{"".join(lines)}</tbody></table>')
    body = (f'<h1>值班人员</h1>{presence}<table><thead><tr><th>姓名</th><th>角色</th><th>状态</th></tr></thead>'
            f'<tbody>{rows}</tbody></table>{handover}')
    return page("值班", body, who, csrf, "team")


def audit_page(who: Principal, csrf: str, entries: list[dict[str, Any]]) -> str:
    rows = "".join(f'<tr><td>{h(e["at"][:19])}</td><td>{h(e["actor"])}</td><td>{h(e["action"])}</td>'
                   f'<td>{h(e["target"])}</td><td>{h(e["detail"])}</td></tr>' for e in entries)
    body = (f'<h1>审计日志</h1><table><thead><tr><th>时间</th><th>人员</th><th>操作</th><th>对象</th><th>详情</th>'
            f'</tr></thead><tbody>{rows}</tbody></table>')
    return page("审计日志", body, who, csrf, "audit")


def bar_chart(title: str, data: list[tuple[str, float]], unit: str = "") -> str:
    """A horizontal bar chart as inline SVG (labels escaped)."""
    if not data:
        return f'<figure><figcaption>{h(title)}</figcaption><p class="muted">暂无数据</p></figure>'
    top = max(v for _, v in data) or 1
    bars = []
    for i, (label, value) in enumerate(data):
        width = 300 * value / top
        y = i * 24
        bars.append(f'<text x="0" y="{y + 15}" class="label">{h(label)}</text>'
                    f'<rect x="160" y="{y + 3}" width="{width:.1f}" height="16" rx="2"></rect>'
                    f'<text x="{165 + width:.1f}" y="{y + 15}">{h(_fmt(value))}{h(unit)}</text>')
    height = len(data) * 24 + 4
    return (f'<figure><figcaption>{h(title)}</figcaption><svg class="chart" viewBox="0 0 520 {height}" '
            f'width="520" height="{height}" role="img" aria-label="{h(title)}">{"".join(bars)}</svg></figure>')


def _fmt(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def reports_page(who: Principal, csrf: str, report: dict[str, Any]) -> str:
    stats = (f'<ul class="stats"><li>等待时间中位数：<b>{h(report["median_wait"])}</b> 分钟</li>'
             f'<li>第90百分位等待：<b>{h(report["p90_wait"])}</b> 分钟</li>'
             f'<li>P1 在时限内认领：<b>{h(report["p1_within_sla"])}</b></li>'
             f'<li>平均评分：<b>{h(report["rating"])}</b>（{int(report["ratings"])} 次）</li></ul>')
    body = (f'<h1>统计（最近30天）</h1>{stats}'
            f'{bar_chart("按意图的消息量", report["by_intent"])}'
            f'{bar_chart("每日消息量", report["by_day"])}'
            f'{bar_chart("评分分布", report["rating_counts"])}')
    return page("统计", body, who, csrf, "reports")
