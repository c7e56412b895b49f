"""The duty officers' console at ``/console``: login, live queue, case view, team, reports, audit.

Sessions live in the database (an HttpOnly, SameSite=Strict cookie holds the id; Secure behind
TLS); every POST carries the session's CSRF token; a login always starts a new session.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.accounts import Accounts, Principal
from bot.api import ACCOUNTS, OUTBOX_WAKE, QUEUE, SETTINGS
from bot.console import reports, views
from bot.queue import Queue, QueueError

COOKIE = "lb_session"
LOGIN_COOKIE = "lb_login"
STATIC = Path(__file__).with_name("static")
QUEUE_ROLES = ("officer", "supervisor", "admin")
HOME = {"officer": "/console/", "supervisor": "/console/", "admin": "/console/", "ops": "/console/kb"}
LIVE_INTERVAL = 1.0

PRINCIPAL = web.RequestKey("principal", Principal)
CSRF = web.RequestKey("csrf", str)
Page = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_console() -> web.Application:
    """The console as a sub-application (mounted at /console)."""
    console = web.Application(middlewares=[session_middleware])
    r = console.router
    r.add_get("/login", login_form)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/", queue_page)
    r.add_get("/events", events)
    r.add_get("/case/{id}", case_page)
    r.add_get("/case/{id}/transcript", transcript)
    r.add_post("/case/{id}/{action}", case_action)
    r.add_get("/team", team_page)
    r.add_post("/presence", presence)
    r.add_get("/reports", reports_page)
    r.add_get("/audit", audit_page)
    r.add_static("/static", STATIC)
    from bot.console.kb import add_kb_routes  # the pages import this module's helpers

    add_kb_routes(console)
    from bot.console.learning import add_learning_routes  # imports this module's helpers too

    add_learning_routes(console)
    return console


def _accounts(request: web.Request) -> Accounts:
    return request.config_dict[ACCOUNTS]


def _queue(request: web.Request) -> Queue:
    return request.config_dict[QUEUE]


@web.middleware
async def session_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Resolve the session; anonymous users go to the login page; every POST needs the CSRF token."""
    public = request.path.startswith("/console/static") or request.path == "/console/login"
    token = request.cookies.get(COOKIE)
    session = await _accounts(request).by_session(token) if token else None
    if session is not None:
        request[PRINCIPAL], request[CSRF] = session
    elif not public:
        if request.method == "GET" and request.path != "/console/events":
            raise web.HTTPSeeOther("/console/login")
        raise web.HTTPUnauthorized(text="sign in first")
    if request.method == "POST":
        form = await request.post()
        # The login form has no session yet: its token is a double-submit cookie set with the form.
        expected = request.cookies.get(LOGIN_COOKIE, "") if request.path == "/console/login" else request[CSRF]
        if not expected or not hmac.compare_digest(str(form.get("csrf", "")), expected):
            raise web.HTTPForbidden(text="missing or wrong CSRF token; reload the page")
    response: web.StreamResponse = await handler(request)
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'")
    return response


def requires(*roles: str) -> Callable[[Page], Page]:
    def wrap(handler: Page) -> Page:
        async def guarded(request: web.Request) -> web.StreamResponse:
            who: Principal = request[PRINCIPAL]
            if who.role not in roles:
                return html_response(views.page("无权访问", "<h1>无权访问</h1><p>你的角色不能打开这个页面。</p>", who,
                                        request[CSRF]), status=403)
            return await handler(request)
        return guarded
    return wrap


def html_response(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, content_type="text/html", status=status)


def _login_page(request: web.Request, error: str = "", name: str = "", status: int = 200) -> web.Response:
    token = secrets.token_urlsafe(24)
    response = html_response(views.login_page(token, error, name), status=status)
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict", secure=_secure(request),
                        path="/console/login", max_age=3600)
    return response


def _secure(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto") == "https"


async def login_form(request: web.Request) -> web.StreamResponse:
    return _login_page(request)


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    name, password = str(form.get("name", ""))[:64], str(form.get("password", ""))
    who = await _accounts(request).login(name, password)
    if who is None:
        return _login_page(request, "用户名或密码错误，或账户已被临时锁定。", name, status=401)
    token, _ = await _accounts(request).start_session(who)
    response = web.HTTPSeeOther(HOME.get(who.role, "/console/team"))
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=_secure(request), path="/console",
                        max_age=12 * 3600)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    await _accounts(request).end_session(request.cookies[COOKIE], request[PRINCIPAL])
    response = web.HTTPSeeOther("/console/login")
    response.del_cookie(COOKIE, path="/console")
    raise response


@requires(*QUEUE_ROLES)
async def queue_page(request: web.Request) -> web.StreamResponse:
    items = await _queue(request).open_cases()
    roster = await _accounts(request).roster()
    return html_response(views.queue_page(request[PRINCIPAL], request[CSRF], items, roster))


@requires(*QUEUE_ROLES)
async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the open queue whenever it changes (read from the database, so every process sees it),
    for as long as the session lasts: signed out, expired or revoked, the stream ends (the browser's reconnection
    is then refused, and the page says it no longer updates)."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
    await response.prepare(request)
    last = ""
    token = request.cookies.get(COOKIE, "")
    try:
        while True:
            session = await _accounts(request).by_session(token)
            if session is None or session[0].role not in QUEUE_ROLES:
                break
            items = await _queue(request).open_cases()
            payload = json.dumps({"items": items, "rows": views.queue_rows(items)}, ensure_ascii=False)
            if payload != last:
                await response.write(f"event: queue\ndata: {payload}\n\n".encode())
                last = payload
            else:
                await response.write(b": keep-alive\n\n")
            await asyncio.sleep(LIVE_INTERVAL)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response


def _eid(request: web.Request) -> int:
    try:
        return int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound() from None


@requires(*QUEUE_ROLES)
async def case_page(request: web.Request) -> web.StreamResponse:
    queue, eid = _queue(request), _eid(request)
    try:
        item = await queue.get(eid)
    except QueueError:
        raise web.HTTPNotFound() from None
    who = request[PRINCIPAL]
    roster = await _accounts(request).roster()
    colleagues = [r["name"] for r in roster if r["role"] in ("officer", "supervisor")]
    return html_response(views.case_page(who, request[CSRF], item, await queue.transcript(eid, who),
                                         await queue.window(eid), await queue.notes(eid), colleagues))


@requires(*QUEUE_ROLES)
async def transcript(request: web.Request) -> web.StreamResponse:
    try:
        # The open case page asks every 2 s: its opening was audited, these refreshes are not.
        messages = await _queue(request).transcript(_eid(request), request[PRINCIPAL], audit_view=False)
    except QueueError:
        raise web.HTTPNotFound() from None
    return html_response(views.transcript_html(messages))


@requires(*QUEUE_ROLES)
async def case_action(request: web.Request) -> web.StreamResponse:
    queue, eid, who = _queue(request), _eid(request), request[PRINCIPAL]
    form = await request.post()
    action = request.match_info["action"]
    try:
        if action == "claim":
            await queue.claim(eid, who)
        elif action == "close":
            await queue.close(eid, who)
        elif action == "transfer":
            await queue.transfer(eid, who, str(form.get("to", "")))
        elif action == "reply":
            await queue.reply(eid, who, str(form.get("text", "")))
        elif action == "note":
            await queue.note(eid, who, str(form.get("text", "")))
        else:
            raise web.HTTPNotFound()
    except QueueError as exc:
        body = f'<h1>无法完成</h1><p>{views.h(str(exc))}</p><p><a href="/console/case/{eid}">返回</a></p>'
        return html_response(views.page("无法完成", body, who, request[CSRF]), status=exc.status)
    wake = request.config_dict.get(OUTBOX_WAKE)
    if wake is not None:
        wake()
    raise web.HTTPSeeOther(f"/console/case/{eid}")


async def team_page(request: web.Request) -> web.StreamResponse:
    who = request[PRINCIPAL]
    cases = await _queue(request).open_cases() if who.role in ("supervisor", "admin") else []
    return html_response(views.team_page(who, request[CSRF], await _accounts(request).roster(), cases))


async def presence(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    await _accounts(request).set_presence(request[PRINCIPAL], str(form.get("presence", "")))
    raise web.HTTPSeeOther("/console/team")


@requires(*QUEUE_ROLES)
async def reports_page(request: web.Request) -> web.StreamResponse:
    report = await reports.build(_queue(request).sessions, request.config_dict[SETTINGS].sla(1))
    return html_response(views.reports_page(request[PRINCIPAL], request[CSRF], report))


@requires("supervisor", "admin")
async def audit_page(request: web.Request) -> web.StreamResponse:
    return html_response(views.audit_page(request[PRINCIPAL], request[CSRF], await _queue(request).audit_log()))
