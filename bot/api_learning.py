"""Learning from unanswered messages and retraining the built-in engine: the process's objects and the JSON API.

``/api/v1/unanswered`` and ``/api/v1/nlu/...`` for roles ops and admin (bearer tokens, like the rest of
``/api/v1``); the console pages in ``bot.console.learning`` use the same objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.accounts import Principal
from bot.api import OPENAPI, _op, error, requires
from bot.settings import Settings
from handlers.services import Services
from knowledge.unanswered import Unanswered
from nlu.retrain import LearningError, LiveModel, Retrainer

LEARNING_ROLES = ("ops", "admin")


@dataclass
class Learning:
    """Unanswered-message triage, the retraining job, and this process's live-model watcher."""

    unanswered: Unanswered
    retrainer: Retrainer
    live: LiveModel

    @classmethod
    async def start(cls, settings: Settings, sessions: async_sessionmaker[AsyncSession],
                    services: Services) -> Learning:
        """Serve the active retrained model if there is one; fail jobs a dead process left running."""
        live = LiveModel(sessions, services.nlu)
        await live.check()
        retrainer = Retrainer(sessions, settings.data_dir, settings.var_dir / "nlu", live)
        await retrainer.recover()
        return cls(Unanswered(sessions, services.kb, services.nlu, settings.data_dir), retrainer, live)

    async def close(self) -> None:
        await self.retrainer.close()


LEARNING = web.AppKey("learning", Learning)


def learning(request: web.Request) -> Learning:
    return request.config_dict[LEARNING]


def guarded(handler: Any) -> Any:
    """``requires("ops", "admin")`` with LearningError mapped to its status."""
    async def run(request: web.Request, who: Principal) -> web.StreamResponse:
        try:
            return await handler(request, who)
        except LearningError as exc:
            return error(exc.status, str(exc))
    run.__doc__ = handler.__doc__
    return requires(*LEARNING_ROLES)(run)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LearningError("the body must be JSON") from None
    if not isinstance(data, dict):
        raise LearningError("the body must be a JSON object")
    return data


@guarded
async def list_unanswered(request: web.Request, who: Principal) -> web.StreamResponse:
    groups = await learning(request).unanswered.groups()
    return web.json_response({"groups": [g.as_dict() for g in groups],
                              "messages": sum(len(g.items) for g in groups)})


@guarded
async def unanswered_action(request: web.Request, who: Principal) -> web.StreamResponse:
    body = await _body(request)
    ids = body.get("message_ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise LearningError("message_ids: a list of message ids")
    for name in ("slug", "intent", "topic"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise LearningError(f"{name}: a string")
    result = await learning(request).unanswered.act(
        ids, str(body.get("action", "")), who.name, slug=body.get("slug"), intent=body.get("intent"),
        topic=body.get("topic"))
    return web.json_response(result)


@guarded
async def retrain(request: web.Request, who: Principal) -> web.StreamResponse:
    job_id = await learning(request).retrainer.start(who.name)
    return web.json_response({"id": job_id, "status": "queued", "url": f"/api/v1/nlu/jobs/{job_id}"}, status=202)


@guarded
async def list_jobs(request: web.Request, who: Principal) -> web.StreamResponse:
    retrainer = learning(request).retrainer
    return web.json_response({"active": await retrainer.active(), "items": await retrainer.jobs()})


@guarded
async def get_job(request: web.Request, who: Principal) -> web.StreamResponse:
    try:
        job_id = int(request.match_info["id"])
    except ValueError:
        raise LearningError("no such job", 404) from None
    job = await learning(request).retrainer.job(job_id)
    if job is None:
        raise LearningError("no such job", 404)
    return web.json_response(job)


def setup_learning_api(app: web.Application) -> None:
    """Register ``/api/v1/unanswered`` and ``/api/v1/nlu/...`` (and describe them in the OpenAPI document)."""
    OPENAPI["paths"].update(OPENAPI_PATHS)
    r = app.router
    r.add_get("/api/v1/unanswered", list_unanswered)
    r.add_post("/api/v1/unanswered/actions", unanswered_action)
    r.add_post("/api/v1/nlu/retrain", retrain)
    r.add_get("/api/v1/nlu/jobs", list_jobs)
    r.add_get("/api/v1/nlu/jobs/{id}", get_job)


_JOB_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}]
OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/unanswered": {"get": _op(
        "Unanswered messages (fallbacks, low-confidence answers, unchosen \"did you mean\", cases rated 1–2), "
        "grouped by similarity, with a suggested entry and intent per group (roles ops, admin)")},
    "/api/v1/unanswered/actions": {"post": _op(
        "Turn messages into question variants of an entry (published at once), into NLU training examples, "
        "or dismiss them; they leave the list (roles ops, admin)", body={
            "type": "object", "required": ["message_ids", "action"], "properties": {
                "message_ids": {"type": "array", "items": {"type": "integer"}},
                "action": {"type": "string", "enum": ["variant", "training", "dismiss"]},
                "slug": {"type": "string", "description": "variant: the FAQ entry"},
                "intent": {"type": "string", "description": "training: the intent"},
                "topic": {"type": "string", "description": "training with intent faq: the FAQ entry"}}})},
    "/api/v1/nlu/retrain": {"post": {**_op(
        "Retrain the built-in engine in the background; it goes live only if emergency recall on the test "
        "split does not drop (roles ops, admin)"),
        "responses": {"202": {"description": "job queued"}, "401": {"description": "no or bad token"},
                      "403": {"description": "wrong role"}, "409": {"description": "a job is already running"}}}},
    "/api/v1/nlu/jobs": {"get": _op("Retraining jobs, newest first, and the live model (roles ops, admin)")},
    "/api/v1/nlu/jobs/{id}": {"get": {**_op("One retraining job: status, progress, stage, metrics"),
                                      "parameters": _JOB_ID}},
}
