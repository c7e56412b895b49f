"""``/api/v1/faq``, ``/api/v1/alerts`` and ``/api/v1/directory``: the ops staff's JSON API.

Bearer tokens with the role ``ops`` or ``admin``. Creating or editing saves a draft, which is
never served; ``…/publish`` serves it from the next message on, in every process.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.accounts import Principal
from bot.api import ACCOUNTS, error
from knowledge.base import KnowledgeBase
from knowledge.editor import Editor, EditorError

OPS_ROLES = ("ops", "admin")
EDITOR = web.AppKey("editor", Editor)
KB = web.AppKey("knowledge_base", KnowledgeBase)

Handler = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]


def ops_only(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """401 without a valid bearer token, 403 for roles other than ops and admin; editor errors as JSON."""
    async def guarded(request: web.Request) -> web.StreamResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return error(401, "a bearer token is required")
        who = await request.app[ACCOUNTS].by_token(token.strip())
        if who is None:
            return error(401, "unknown or revoked token")
        if who.role not in OPS_ROLES:
            return error(403, f"role {who.role} may not do this")
        try:
            return await handler(request, who)
        except EditorError as exc:
            return web.json_response(exc.as_dict(), status=exc.status)
    guarded.__doc__ = handler.__doc__
    return guarded


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise EditorError("the body must be JSON", 400) from None
    if not isinstance(data, dict):
        raise EditorError("the body must be a JSON object", 400)
    return data


def _int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        raise EditorError(f"{name}: a version number", 400)
    return int(value)


async def _restore_version(request: web.Request) -> int:
    version = _int((await _body(request)).get("version"), "version")
    if version is None:
        raise EditorError("version: the version to restore", 400)
    return version


def _editor(request: web.Request) -> Editor:
    return request.app[EDITOR]


def entry_from_json(data: dict[str, Any]) -> dict[str, Any]:
    """Accept plain strings for the Chinese title and answer, as well as ``{"zh", "en"}``."""
    content = {k: v for k, v in data.items() if k not in ("base_version", "note")}
    for key in ("title", "answer", "followup"):
        if isinstance(content.get(key), str):
            content[key] = {"zh": content[key]}
    return content


# --- FAQ ------------------------------------------------------------------------------------------------------

@ops_only
async def list_faq(request: web.Request, who: Principal) -> web.StreamResponse:
    kind = request.query.get("kind")
    if kind not in (None, "faq", "playbook"):
        return error(400, "kind must be faq or playbook")
    return web.json_response({"items": await _editor(request).entries(request.query.get("q", ""), kind)})


@ops_only
async def create_faq(request: web.Request, who: Principal) -> web.StreamResponse:
    data = await _body(request)
    entry = await _editor(request).create(entry_from_json(data), actor=who.name, note=data.get("note"))
    return web.json_response(entry, status=201)


@ops_only
async def get_faq(request: web.Request, who: Principal) -> web.StreamResponse:
    return web.json_response(await _editor(request).entry(request.match_info["slug"]))


@ops_only
async def put_faq(request: web.Request, who: Principal) -> web.StreamResponse:
    data = await _body(request)
    entry = await _editor(request).update(request.match_info["slug"], entry_from_json(data), actor=who.name,
                                          base_version=_int(data.get("base_version"), "base_version"),
                                          note=data.get("note"))
    return web.json_response(entry)


@ops_only
async def delete_faq(request: web.Request, who: Principal) -> web.StreamResponse:
    await _editor(request).archive(request.match_info["slug"], actor=who.name)
    return web.Response(status=204)


@ops_only
async def publish_faq(request: web.Request, who: Principal) -> web.StreamResponse:
    version = _int((await _body(request)).get("version"), "version")
    return web.json_response(await _editor(request).publish(request.match_info["slug"], actor=who.name,
                                                            version=version))


@ops_only
async def rollback_faq(request: web.Request, who: Principal) -> web.StreamResponse:
    version = await _restore_version(request)
    return web.json_response(await _editor(request).rollback(request.match_info["slug"], version, actor=who.name))


@ops_only
async def faq_versions(request: web.Request, who: Principal) -> web.StreamResponse:
    return web.json_response({"items": await _editor(request).versions(request.match_info["slug"])})


@ops_only
async def faq_diff(request: web.Request, who: Principal) -> web.StreamResponse:
    a, b = _int(request.query.get("from"), "from"), _int(request.query.get("to"), "to")
    if a is None or b is None:
        return error(400, "from and to: two version numbers")
    return web.json_response({"diff": await _editor(request).diff(request.match_info["slug"], a, b)})


@ops_only
async def faq_preview(request: web.Request, who: Principal) -> web.StreamResponse:
    """The latest version (draft or published) as the citizen would read it."""
    from bot.console.kb import preview

    entry = await _editor(request).entry(request.match_info["slug"])
    country = (request.query.get("country") or "").upper() or None
    messages = await preview(request.app[KB], entry["slug"], entry["latest"], country,
                             request.query.get("lang") == "en")
    return web.json_response({"messages": messages, "characters": [len(m) for m in messages]})


# --- alerts ---------------------------------------------------------------------------------------------------

def _alert_id(request: web.Request) -> int:
    value = request.match_info["id"]
    if not value.isdigit():
        raise EditorError("no such alert", 404)
    return int(value)


@ops_only
async def list_alerts(request: web.Request, who: Principal) -> web.StreamResponse:
    return web.json_response({"items": await _editor(request).alerts(
        request.query.get("country"), include_archived=request.query.get("archived") == "1")})


@ops_only
async def create_alert(request: web.Request, who: Principal) -> web.StreamResponse:
    data = await _body(request)
    return web.json_response(await _editor(request).create_alert(data, actor=who.name, note=data.get("note")),
                             status=201)


@ops_only
async def get_alert(request: web.Request, who: Principal) -> web.StreamResponse:
    return web.json_response(await _editor(request).alert(_alert_id(request)))


@ops_only
async def put_alert(request: web.Request, who: Principal) -> web.StreamResponse:
    data = await _body(request)
    return web.json_response(await _editor(request).update_alert(
        _alert_id(request), data, actor=who.name, base_version=_int(data.get("base_version"), "base_version"),
        note=data.get("note")))


@ops_only
async def delete_alert(request: web.Request, who: Principal) -> web.StreamResponse:
    await _editor(request).archive_alert(_alert_id(request), actor=who.name)
    return web.Response(status=204)


@ops_only
async def publish_alert(request: web.Request, who: Principal) -> web.StreamResponse:
    version = _int((await _body(request)).get("version"), "version")
    return web.json_response(await _editor(request).publish_alert(_alert_id(request), actor=who.name,
                                                                  version=version))


@ops_only
async def rollback_alert(request: web.Request, who: Principal) -> web.StreamResponse:
    version = await _restore_version(request)
    return web.json_response(await _editor(request).rollback_alert(_alert_id(request), version, actor=who.name))


@ops_only
async def alert_versions(request: web.Request, who: Principal) -> web.StreamResponse:
    return web.json_response({"items": await _editor(request).alert_versions(_alert_id(request))})


# --- directory ------------------------------------------------------------------------------------------------

@ops_only
async def list_directory(request: web.Request, who: Principal) -> web.StreamResponse:
    return web.json_response({"items": await _editor(request).countries(request.query.get("q", ""))})


@ops_only
async def create_country(request: web.Request, who: Principal) -> web.StreamResponse:
    data = await _body(request)
    iso = str(data.get("iso", "")).upper()
    if len(iso) != 2:
        return error(400, "iso: the country's ISO 3166-1 alpha-2 code")
    try:
        await _editor(request).country(iso)
    except EditorError:
        pass
    else:
        return error(409, f"{iso} already exists; PUT /api/v1/directory/{iso} edits it")
    return web.json_response(await _editor(request).update_country(iso, data, actor=who.name, note=data.get("note")),
                             status=201)


@ops_only
async def get_country(request: web.Request, who: Principal) -> web.StreamResponse:
    return web.json_response(await _editor(request).country(request.match_info["iso"]))


@ops_only
async def put_country(request: web.Request, who: Principal) -> web.StreamResponse:
    data = await _body(request)
    return web.json_response(await _editor(request).update_country(
        request.match_info["iso"], data, actor=who.name,
        base_version=_int(data.get("base_version"), "base_version"), note=data.get("note")))


@ops_only
async def delete_country(request: web.Request, who: Principal) -> web.StreamResponse:
    return error(409, "a country stays in the directory; edit its numbers and missions instead")


@ops_only
async def publish_country(request: web.Request, who: Principal) -> web.StreamResponse:
    version = _int((await _body(request)).get("version"), "version")
    return web.json_response(await _editor(request).publish_country(request.match_info["iso"], actor=who.name,
                                                                    version=version))


@ops_only
async def rollback_country(request: web.Request, who: Principal) -> web.StreamResponse:
    version = await _restore_version(request)
    return web.json_response(await _editor(request).rollback_country(request.match_info["iso"], version,
                                                                     actor=who.name))


@ops_only
async def country_versions(request: web.Request, who: Principal) -> web.StreamResponse:
    return web.json_response({"items": await _editor(request).country_versions(request.match_info["iso"])})


def setup_kb_api(app: web.Application) -> None:
    from bot.api import OPENAPI

    OPENAPI["paths"].update(KB_OPENAPI)
    r = app.router
    for base, key, handlers in (
        ("/api/v1/faq", "{slug}", (list_faq, create_faq, get_faq, put_faq, delete_faq, publish_faq, rollback_faq,
                                   faq_versions)),
        ("/api/v1/alerts", "{id}", (list_alerts, create_alert, get_alert, put_alert, delete_alert, publish_alert,
                                    rollback_alert, alert_versions)),
        ("/api/v1/directory", "{iso}", (list_directory, create_country, get_country, put_country, delete_country,
                                        publish_country, rollback_country, country_versions)),
    ):
        listing, create, get, put, delete, publish, rollback, versions = handlers
        r.add_get(base, listing)
        r.add_post(base, create)
        r.add_get(f"{base}/{key}", get)
        r.add_put(f"{base}/{key}", put)
        r.add_delete(f"{base}/{key}", delete)
        r.add_post(f"{base}/{key}/publish", publish)
        r.add_post(f"{base}/{key}/rollback", rollback)
        r.add_get(f"{base}/{key}/versions", versions)
    r.add_get("/api/v1/faq/{slug}/diff", faq_diff)
    r.add_get("/api/v1/faq/{slug}/preview", faq_preview)


def _op(summary: str, *, body: dict[str, Any] | None = None, params: list[dict[str, Any]] | None = None,
        ok: str = "200") -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary, "security": [{"bearer": []}], "tags": ["knowledge"],
        "responses": {ok: {"description": "OK"}, "400": {"description": "invalid; `problems` name entry, field, reason"},
                      "401": {"description": "no or bad token"}, "403": {"description": "role is not ops or admin"},
                      "404": {"description": "not found"}, "409": {"description": "conflict (edited meanwhile, exists)"}},
    }
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


_TEXT = {"oneOf": [{"type": "string"}, {"type": "object", "properties": {"zh": {"type": "string"},
                                                                        "en": {"type": "string"}}}]}
ENTRY_SCHEMA = {"type": "object", "required": ["slug", "title", "questions", "answer"], "properties": {
    "slug": {"type": "string", "pattern": "^[a-z][a-z0-9_]{1,63}$"}, "kind": {"type": "string", "enum": ["faq", "playbook"]},
    "title": _TEXT, "questions": {"type": "array", "items": {"type": "string"}}, "answer": _TEXT,
    "overrides": {"type": "object", "additionalProperties": _TEXT}, "tags": {"type": "array", "items": {"type": "string"}},
    "sources": {"type": "array", "items": {"type": "object", "properties": {
        "title": {"type": "string"}, "url": {"type": "string"}, "date": {"type": "string"}}}},
    "last_reviewed": {"type": "string", "format": "date"}, "base_version": {"type": "integer"},
    "note": {"type": "string"}}}
ALERT_SCHEMA = {"type": "object", "required": ["country", "level", "text", "starts_at", "ends_at", "source"],
                "properties": {"country": {"type": "string"},
                               "level": {"type": "string", "enum": ["注意安全", "谨慎前往", "暂勿前往"]},
                               "text": _TEXT, "starts_at": {"type": "string"}, "ends_at": {"type": "string"},
                               "source": {"type": "object", "properties": {"title": {"type": "string"},
                                                                           "url": {"type": "string"}}},
                               "base_version": {"type": "integer"}}}
COUNTRY_SCHEMA = {"type": "object", "properties": {
    "iso": {"type": "string"}, "emergency": {"type": "object"}, "missions": {"type": "array", "items": {"type": "object"}},
    "base_version": {"type": "integer"}}}
VERSION_BODY = {"type": "object", "properties": {"version": {"type": "integer"}}}


def _paths(base: str, key: str, what: str, schema: dict[str, Any]) -> dict[str, Any]:
    param = [{"name": key.strip("{}"), "in": "path", "required": True, "schema": {"type": "string"}}]
    return {
        base: {"get": _op(f"List {what}"), "post": _op(f"Create a {what} draft (not served until published)",
                                                     body=schema, ok="201")},
        f"{base}/{key}": {"get": _op(f"One {what}: published content and draft", params=param),
                          "put": _op("Save an edit as a new draft version", body=schema, params=param),
                          "delete": _op(f"Stop serving the {what} (history kept)", params=param, ok="204")},
        f"{base}/{key}/publish": {"post": _op("Publish a version (default: the latest)", body=VERSION_BODY,
                                              params=param)},
        f"{base}/{key}/rollback": {"post": _op("Publish an earlier version again, as a new version",
                                               body=VERSION_BODY, params=param)},
        f"{base}/{key}/versions": {"get": _op("Version history, newest first", params=param)},
    }


KB_OPENAPI: dict[str, Any] = {
    **_paths("/api/v1/faq", "{slug}", "knowledge-base entry", ENTRY_SCHEMA),
    **_paths("/api/v1/alerts", "{id}", "safety alert", ALERT_SCHEMA),
    **_paths("/api/v1/directory", "{iso}", "directory country", COUNTRY_SCHEMA),
    "/api/v1/faq/{slug}/diff": {"get": _op("Line diff between two versions (YAML)", params=[
        {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "from", "in": "query", "required": True, "schema": {"type": "integer"}},
        {"name": "to", "in": "query", "required": True, "schema": {"type": "integer"}}])},
    "/api/v1/faq/{slug}/preview": {"get": _op("The latest version as WeChat messages", params=[
        {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "country", "in": "query", "schema": {"type": "string"}},
        {"name": "lang", "in": "query", "schema": {"type": "string", "enum": ["zh", "en"]}}])},
}
