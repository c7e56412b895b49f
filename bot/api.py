"""The JSON API under ``/api/v1``: bearer tokens, the same roles as the console, an OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.accounts import Accounts, Principal
from bot.queue import TRANSCRIPT_LIMIT, Queue, QueueError
from bot.settings import Settings

QUEUE_ROLES = ("officer", "supervisor", "admin")
MAX_PAGE = 1000  # messages in one page of a transcript
ACCOUNTS = web.AppKey("accounts", Accounts)
QUEUE = web.AppKey("queue", Queue)
SETTINGS = web.AppKey("settings", Settings)

Handler = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def requires(*roles: str) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """401 without a valid bearer token, 403 for a role not in ``roles``."""
    def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return error(401, "a bearer token is required")
            who = await request.app[ACCOUNTS].by_token(token.strip())
            if who is None:
                return error(401, "unknown or revoked token")
            if who.role not in roles:
                return error(403, f"role {who.role} may not do this")
            try:
                return await handler(request, who)
            except QueueError as exc:
                return error(exc.status, str(exc))
        guarded.__doc__ = handler.__doc__
        return guarded
    return wrap


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise QueueError("the body must be JSON", 400) from None
    if not isinstance(data, dict):
        raise QueueError("the body must be a JSON object", 400)
    return data


def _query_int(request: web.Request, name: str, low: int, high: int | None) -> int | None:
    """An optional whole-number query parameter within [low, high]."""
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise QueueError(f"{name}: a whole number", 400) from None
    if value < low or (high is not None and value > high):
        raise QueueError(f"{name}: from {low}" + (f" to {high}" if high is not None else ""), 400)
    return value


def _id(request: web.Request) -> int:
    try:
        return int(request.match_info["id"])
    except ValueError:
        raise QueueError("no such escalation", 404) from None


@requires(*QUEUE_ROLES)
async def list_escalations(request: web.Request, who: Principal) -> web.StreamResponse:
    status = request.query.get("status")
    if status not in (None, "waiting", "assigned", "closed"):
        return error(400, "status must be waiting, assigned or closed")
    return web.json_response({"items": await request.app[QUEUE].listing(status)})


@requires(*QUEUE_ROLES)
async def claim(request: web.Request, who: Principal) -> web.StreamResponse:
    return web.json_response(await request.app[QUEUE].claim(_id(request), who))


@requires(*QUEUE_ROLES)
async def transfer(request: web.Request, who: Principal) -> web.StreamResponse:
    to = (await _body(request)).get("to")
    if not isinstance(to, str) or not to:
        return error(400, "to: the name of an officer")
    return web.json_response(await request.app[QUEUE].transfer(_id(request), who, to))


@requires(*QUEUE_ROLES)
async def close(request: web.Request, who: Principal) -> web.StreamResponse:
    return web.json_response(await request.app[QUEUE].close(_id(request), who))


@requires(*QUEUE_ROLES)
async def post_message(request: web.Request, who: Principal) -> web.StreamResponse:
    text = (await _body(request)).get("text")
    if not isinstance(text, str):
        return error(400, "text: required")
    message_id = await request.app[QUEUE].reply(_id(request), who, text)
    wake = request.app.get(OUTBOX_WAKE)
    if wake is not None:
        wake()
    return web.json_response({"id": message_id, "delivery": "pending"}, status=201)


@requires(*QUEUE_ROLES)
async def get_messages(request: web.Request, who: Principal) -> web.StreamResponse:
    before = _query_int(request, "before", 1, None)
    limit = _query_int(request, "limit", 1, MAX_PAGE) or TRANSCRIPT_LIMIT
    page = await request.app[QUEUE].transcript(_id(request), who, before=before, limit=limit)
    return web.json_response({"items": page.items, "more": page.more})


@requires(*QUEUE_ROLES)
async def post_note(request: web.Request, who: Principal) -> web.StreamResponse:
    text = (await _body(request)).get("text")
    if not isinstance(text, str):
        return error(400, "text: required")
    await request.app[QUEUE].note(_id(request), who, text)
    return web.json_response({"ok": True}, status=201)


async def openapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(OPENAPI)


OUTBOX_WAKE = web.AppKey("outbox_wake", object)


def setup_api(app: web.Application) -> None:
    """Register the ``/api/v1`` routes."""
    r = app.router
    r.add_get("/api/v1/openapi.json", openapi)
    r.add_get("/api/v1/escalations", list_escalations)
    r.add_post("/api/v1/escalations/{id}/claim", claim)
    r.add_post("/api/v1/escalations/{id}/transfer", transfer)
    r.add_post("/api/v1/escalations/{id}/close", close)
    r.add_post("/api/v1/escalations/{id}/messages", post_message)
    r.add_get("/api/v1/escalations/{id}/messages", get_messages)
    r.add_post("/api/v1/escalations/{id}/notes", post_note)


def _op(summary: str, *, body: dict[str, Any] | None = None, query: list[dict[str, Any]] | None = None,
        created: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary, "security": [{"bearer": []}],
        "responses": {"201" if created else "200": {"description": "OK"}, "401": {"description": "no or bad token"},
                      "403": {"description": "wrong role"}, "404": {"description": "no such escalation"},
                      "409": {"description": "not allowed in the case's current state"}},
    }
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if query:
        op["parameters"] = query
    return op


_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}]
OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Lingbao API", "version": "1",
             "description": "Duty officers' queue. Bearer tokens from `python -m bot tokens create NAME`; roles "
                            "officer, supervisor and admin."},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/api/v1/escalations": {"get": _op("Escalations, most urgent first, then oldest first", query=[
            {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["waiting", "assigned", "closed"]}}])},
        "/api/v1/escalations/{id}/claim": {"post": {**_op("Claim a case"), "parameters": _ID}},
        "/api/v1/escalations/{id}/transfer": {"post": {**_op("Transfer a case to a colleague", body={
            "type": "object", "required": ["to"], "properties": {"to": {"type": "string"}}}), "parameters": _ID}},
        "/api/v1/escalations/{id}/close": {"post": {**_op("Close a case; the bot answers again"), "parameters": _ID}},
        "/api/v1/escalations/{id}/messages": {
            "post": {**_op("Send a message to the citizen (through the outbox)", created=True, body={
                "type": "object", "required": ["text"], "properties": {"text": {"type": "string", "maxLength": 2000}}}),
                "parameters": _ID},
            "get": {**_op("The conversation's latest messages, oldest first, with each outgoing message's delivery "
                          "state; `more` says whether earlier ones exist (ask again with `before` = the first id)"),
                    "parameters": _ID + [
                        {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": 1},
                         "description": "only messages with a smaller id"},
                        {"name": "limit", "in": "query",
                         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": TRANSCRIPT_LIMIT}}]}},
        "/api/v1/escalations/{id}/notes": {"post": {**_op("Add an internal note", created=True, body={
            "type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}), "parameters": _ID}},
    },
}
