"""Retraining from the console: a worse model is refused, a better one goes live in every process without a restart."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest

from bot.api import ACCOUNTS
from bot.app import BRAIN
from bot.settings import REPO_ROOT
from bot.storage.models import utcnow
from knowledge.learning_models import NLUExample, NLUModel
from nlu.data import load_examples
from tests.conftest import Running, StartBot
from tests.fakes.wechat_server import text
from tests.learning_support import api, console_login, token_for, until, wait_for_job

pytestmark = pytest.mark.databases

TEST_SPLIT = load_examples([REPO_ROOT / "data" / "nlu" / "test"])
LANDLORD = ["房东不退押金怎么办", "房东扣我押金不退", "租的房子到期了房东不退押金", "退租后房东一直拖着不还押金",
            "押金被房东扣了 能找大使馆吗"]
PROBE = "押金被房东扣了不退"  # not among the examples


def predictions(bot: Running) -> list[tuple[str, float]]:
    nlu = bot.app[BRAIN].services.nlu
    return [(r.intent, round(r.confidence, 6)) for r in (nlu.understand_now(e.text) for e in TEST_SPLIT)]


async def test_a_worse_model_is_refused_and_the_live_one_stays(bot: Running) -> None:
    # Someone taught the emergency test sentences as "out of scope": emergency recall would drop.
    async with bot.app[ACCOUNTS].sessions.begin() as session:
        session.add_all(NLUExample(text=e.text, intent="out_of_scope", author="olga")
                        for e in TEST_SPLIT if e.intent.startswith("emergency_"))
    nlu = bot.app[BRAIN].services.nlu
    live, before = nlu.model, predictions(bot)
    token = await token_for(bot, "olga", "ops")

    status, started = await api(bot, "POST", "/api/v1/nlu/retrain", token)
    assert status == 202 and started["status"] == "queued"
    status, second = await api(bot, "POST", "/api/v1/nlu/retrain", token)
    assert status == 409 and "一次只能运行一个" in second["error"]
    job, seen = await wait_for_job(bot, token, started["id"])

    assert any(s["status"] == "training" and 0 < s["progress"] < 100 for s in seen), seen
    assert job["status"] == "refused" and job["progress"] == 100
    assert "紧急情况召回率" in job["stage"] and "未启用" in job["stage"]
    metrics = job["metrics"]
    assert metrics["candidate"]["emergency_recall"] < metrics["baseline"]["emergency_recall"]
    assert metrics["examples"]["console"] == sum(1 for e in TEST_SPLIT if e.intent.startswith("emergency_"))
    assert metrics["test_overlap"] == metrics["examples"]["console"]
    assert bot.count("nlu_models", "status = 'active'") == 0
    assert bot.rows("SELECT artifact IS NULL FROM nlu_models") == [(1,)], "a refused model is not kept"
    await asyncio.sleep(2.5)  # more than a heartbeat: nothing was swapped in meanwhile
    assert nlu.model is live and predictions(bot) == before
    assert bot.count("audit_log", "action = 'nlu_retrain' AND actor = 'olga'") == 1
    assert bot.count("audit_log", "action = 'nlu_refused'") == 1

    session, _ = await console_login(bot, "oscar", "ops")
    async with session, session.get(f"{bot.wechat.base}/console/nlu") as r:
        page = await r.text()
    assert "已拒绝" in page and "紧急情况召回率从" in page
    assert 'id="jobs" data-running="0"' in page


async def test_a_better_model_goes_live_in_every_process_without_restart(start_bot: StartBot) -> None:
    first = await start_bot()
    second = await start_bot()  # another bot process on the same database
    assert second.app[BRAIN].services.nlu.understand_now(PROBE).intent == "nlu_fallback"

    # Ops staff turn a group of unanswered questions into training examples, then retrain.
    for n, question in enumerate(LANDLORD):
        await first.wechat.post(text(f"oTenant{n}", question))
        await first.wechat.post(text(f"oTenant{n}", "谢谢"))
    token = await token_for(first, "olga", "ops")
    status, listing = await api(first, "GET", "/api/v1/unanswered", token)
    ids = [m["id"] for g in listing["groups"] for m in g["messages"] if m["text"] in LANDLORD]
    assert ids
    status, result = await api(first, "POST", "/api/v1/unanswered/actions", token,
                               {"message_ids": ids, "action": "training", "intent": "faq", "topic": "consular_scope"})
    assert status == 200 and result["added"] == len(ids)

    session, csrf = await console_login(first, "oscar", "ops")
    async with session:
        async with session.post(f"{first.wechat.base}/console/nlu/retrain", data={"csrf": csrf},
                                allow_redirects=False) as r:
            assert r.status == 303
            job_id = int(re.search(r"started=(\d+)", r.headers["Location"]).group(1))
        async with session.get(f"{first.wechat.base}{r.headers['Location']}") as r:
            page = await r.text()
        assert f"训练任务 #{job_id} 已开始" in page and 'data-running="1"' in page
        job, _ = await wait_for_job(first, token, job_id)
        assert job["status"] == "active", job["stage"]
        assert job["metrics"]["candidate"]["emergency_recall"] >= job["metrics"]["baseline"]["emergency_recall"]
        assert job["metrics"]["examples"]["console"] == len(ids)
        async with session.get(f"{first.wechat.base}/console/nlu") as r:
            page = await r.text()
        assert f"训练任务 #{job_id}" in page and "线上使用中" in page

    key = first.app[BRAIN].services.nlu.model.key
    assert key.startswith(f"db{job_id}-"), "the process that trained it serves it at once"
    # The other process picks it up by itself, without a restart.
    other = second.app[BRAIN].services.nlu
    await until(lambda: other.model.key == key, timeout=10)
    assert other.understand_now(PROBE).intent == "faq"
    await second.wechat.post(text("oProbe", PROBE))
    assert second.rows("SELECT intent FROM messages WHERE text = ?", PROBE) == [("faq",)]
    status, health = await api(second, "GET", "/healthz", None)
    assert key in health["nlu"]

    # A process started later serves the active model from its start.
    third = await start_bot()
    assert third.app[BRAIN].services.nlu.model.key == key
    status, jobs = await api(first, "GET", "/api/v1/nlu/jobs", token)
    assert jobs["active"]["id"] == job_id and [j["status"] for j in jobs["items"]] == ["active"]


async def test_a_job_left_running_by_a_dead_process_is_failed_on_start(start_bot: StartBot) -> None:
    first = await start_bot()
    old = utcnow() - timedelta(minutes=5)
    async with first.app[ACCOUNTS].sessions.begin() as session:
        session.add(NLUModel(status="training", busy="busy", progress=40, stage="训练新模型", metrics={},
                             author="olga", created_at=old, heartbeat_at=old))
    await start_bot()  # a process starting (e.g. the one that crashed, restarted)
    rows = first.rows("SELECT status, busy, stage FROM nlu_models")
    assert rows[0][0] == "failed" and rows[0][1] is None and "心跳中断" in rows[0][2]
    assert first.count("audit_log", "action = 'nlu_job_failed'") == 1
