"""Retraining the built-in engine from the console, and serving the live model in every process.

A job trains on ``data/nlu/train`` plus the examples ops staff added in the console
(``nlu_examples``), in a worker thread so the bot keeps answering. It then scores the new model
and the live one on the held-out split (``data/nlu/test``) the way ``python -m bot nlu eval``
does (emergency lexicon and confidence floor included, ``nlu.evaluate.score``), and makes the
new model live only if

- emergency recall (an emergency recognised as some emergency) does not drop: an emergency must
  never be lost to a retrain; and
- macro-F1 does not fall by more than ``MACRO_F1_SLACK`` (a handful of new examples moves it by
  a hundredth or two on this split; a larger fall means mislabelled data).

Otherwise the job ends ``refused`` with the reason, and nothing changes. Progress and stage are
written to the job's row so every console page (in any process) can show them. One job runs at a
time across all processes (a unique ``busy`` marker); a job whose process died stops
heartbeating and is marked failed.

Every bot process polls the live model's id (one small query per heartbeat) and swaps its
built-in engine's model when it changes, so a new model reaches every process without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import pickle
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.accounts import audit
from bot.errors import LingbaoError
from bot.storage.models import utcnow
from knowledge.learning_models import NLUExample, NLUModel
from nlu.builtin import MODEL_VERSION, BuiltinModel, train, training_files
from nlu.data import ANNOTATION, Example, fingerprint, load_examples
from nlu.engine import NLU
from nlu.evaluate import Report, score
from nlu.normalize import normalize

log = logging.getLogger(__name__)

INTENTS = (
    "emergency_arrest", "emergency_crime", "emergency_medical", "emergency_missing", "emergency_kidnap",
    "emergency_disaster", "emergency_death", "faq", "request_human", "greet", "thank", "goodbye", "out_of_scope",
)
RUNNING = ("queued", "training", "evaluating")
STALE_AFTER = timedelta(seconds=30)
BEAT = 2.0
MACRO_F1_SLACK = 0.05
MAX_EXAMPLE = 500

STATUS_ZH = {"queued": "排队中", "training": "训练中", "evaluating": "评估中", "active": "线上使用中",
             "refused": "已拒绝", "failed": "失败", "superseded": "已被替换"}
DIED_ZH = "训练进程已停止（心跳中断），任务作废；请重新开始训练。"
STOPPED_ZH = "服务停止，训练中断；请重新开始训练。"


class LearningError(LingbaoError):
    """A learning action that cannot be done (the message, in Chinese, says why); ``status`` is the HTTP code."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- training examples


def clean_example(text: str) -> str:
    """One line of plain text that ``data/`` YAML stores and reads back unchanged.

    Whitespace (newlines included) collapses to single spaces; control characters go; square
    brackets that would read as an entity annotation become full-width (the same after NFKC).
    """
    text = " ".join("".join(ch for ch in text if ch.isprintable() or ch.isspace()).split())
    if ANNOTATION.search(text):
        text = text.replace("[", "［").replace("]", "］")
    return text[:MAX_EXAMPLE]


async def console_examples(sessions: async_sessionmaker[AsyncSession]) -> list[Example]:
    """The examples added in the console, oldest first."""
    async with sessions() as session:
        rows = await session.execute(select(NLUExample.text, NLUExample.intent, NLUExample.topic)
                                     .order_by(NLUExample.id))
        return [Example(text=t, intent=i, topic=topic) for t, i, topic in rows]


def examples_yaml(examples: list[Example]) -> str:
    """``examples`` in the layout of ``data/nlu/train/*.yml`` (Rasa 3.x NLU YAML, FAQ topic as metadata)."""
    blocks: dict[tuple[str, str | None], list[str]] = {}
    for example in examples:
        blocks.setdefault((example.intent, example.topic if example.intent == "faq" else None), []).append(
            clean_example(example.text))
    lines = ['version: "3.1"', "nlu:"]
    for (intent, topic), texts in sorted(blocks.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        lines.append(f"- intent: {intent}")
        if topic:
            lines += ["  metadata:", f"    topic: {topic}"]
        lines.append("  examples: |")
        lines += [f"    - {text}" for text in texts]
    return "\n".join(lines) + "\n"


async def export_examples(sessions: async_sessionmaker[AsyncSession], out: Path) -> int:
    """Write the console's examples to ``out`` (atomically); the number written."""
    examples = await console_examples(sessions)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(examples_yaml(examples), encoding="utf-8")
    tmp.replace(out)
    return len(examples)


def data_hash(examples: list[Example]) -> str:
    """What a model was trained on: the model version and every (text, intent, topic)."""
    digest = hashlib.sha256(MODEL_VERSION.encode())
    for example in sorted(examples, key=lambda e: (e.intent, e.topic or "", e.text)):
        digest.update(f"{example.intent}\x1f{example.topic or ''}\x1f{example.text}\x1e".encode())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- evaluation


def measure(model: BuiltinModel, base: NLU, examples: list[Example]) -> Report:
    """``model`` on ``examples`` through the whole understanding step (lexicon, floor), scored by nlu.evaluate."""
    nlu = NLU(model=model, lexicon=base.lexicon, gazetteer=base.gazetteer)
    expected: list[str] = []
    predicted: list[str] = []
    latencies: list[float] = []
    errors: list[tuple[str, str, str, float]] = []
    for example in examples:
        started = time.perf_counter()
        result = nlu.understand_now(example.text)
        latencies.append((time.perf_counter() - started) * 1000)
        expected.append(example.intent)
        predicted.append(result.intent)
        if result.intent != example.intent:
            errors.append((example.intent, result.intent, example.text, result.confidence))
    return score(expected, predicted, latencies, errors, "builtin")


def figures(report: Report) -> dict[str, Any]:
    """The report's figures as JSON (stored with the job and shown in the console)."""
    return {
        "macro_f1": round(report.macro_f1, 4), "accuracy": round(report.accuracy, 4),
        "emergency_recall": round(report.emergency_recall, 4),
        "false_emergency_rate": round(report.false_emergency_rate, 4),
        "fallbacks": report.fallbacks, "examples": sum(s for *_, s in report.per_intent.values()),
        "recall": {intent: round(r, 4) for intent, (_, r, _, _) in report.per_intent.items()},
        "f1": {intent: round(f, 4) for intent, (_, _, f, _) in report.per_intent.items()},
    }


def judge(candidate: dict[str, Any], baseline: dict[str, Any]) -> str | None:
    """Why the candidate must not go live, or None when it may."""
    if candidate["emergency_recall"] < baseline["emergency_recall"]:
        return (f"紧急情况召回率从 {baseline['emergency_recall']:.3f} 降到 {candidate['emergency_recall']:.3f}："
                f"紧急求助一条也不能漏，新模型未启用，线上模型保持不变。")
    if candidate["macro_f1"] < baseline["macro_f1"] - MACRO_F1_SLACK:
        return (f"宏平均F1从 {baseline['macro_f1']:.3f} 降到 {candidate['macro_f1']:.3f}，超过允许的 "
                f"{MACRO_F1_SLACK:.2f}，训练数据可能有误标；新模型未启用，线上模型保持不变。")
    return None


# --------------------------------------------------------------------------- the live model in each process


ACTIVE_ID = select(NLUModel.id).where(NLUModel.status == "active").order_by(NLUModel.id.desc()).limit(1)


class LiveModel:
    """Keeps this process's built-in engine on the database's active model (polled; swapped atomically)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], nlu: NLU) -> None:
        self.sessions = sessions
        self.nlu = nlu
        self.model_id: int | None = None
        self._unusable: int | None = None
        self._lock = asyncio.Lock()

    async def check(self) -> bool:
        """Load and serve the active model if it changed since the last check; True when it did."""
        async with self.sessions() as session:
            active = (await session.execute(ACTIVE_ID)).scalar_one_or_none()
        if active is None or active in (self.model_id, self._unusable):
            return False
        async with self._lock:
            if active == self.model_id:
                return False
            async with self.sessions() as session:
                row = (await session.execute(select(NLUModel.artifact, NLUModel.metrics)
                                             .where(NLUModel.id == active))).one_or_none()
            model = await asyncio.to_thread(_unpickle, row) if row is not None else None
            if model is None:
                # Trained with other features (an upgrade since) or damaged: keep the current model.
                log.warning("active NLU model %s is not usable here; keeping the current one", active)
                self._unusable = active
                return False
            self.nlu.swap(model)
            self.model_id = active
            log.info("serving retrained NLU model", extra={"model_id": active, "key": model.key})
            return True

    async def run(self, stopping: asyncio.Event, interval: float) -> None:
        """Check every ``interval`` seconds until ``stopping`` is set."""
        while not stopping.is_set():
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # loop top: the next round may find the database back
                log.exception("checking the live NLU model failed")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)


def _unpickle(row: Any) -> BuiltinModel | None:
    artifact, metrics = row
    if not artifact or (metrics or {}).get("model_version") != MODEL_VERSION:
        return None
    try:
        model = pickle.loads(artifact)  # our own database, written by this module
    except Exception:  # a damaged artifact is reported by the caller and skipped
        return None
    return model if isinstance(model, BuiltinModel) else None


# --------------------------------------------------------------------------- the job


@dataclass
class _Phase:
    """What the heartbeat reports while the worker thread trains (progress is estimated from time)."""

    started: float = 0.0
    expected: float = 10.0
    training: bool = False


class Retrainer:
    """Starts, runs and reports retraining jobs for this process."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], data_dir: Path, cache_dir: Path,
                 live: LiveModel | None = None) -> None:
        self.sessions = sessions
        self.data_dir = data_dir
        self.cache_dir = cache_dir
        self.live = live
        self._task: asyncio.Task[None] | None = None
        self._phase = _Phase()

    async def recover(self) -> int:
        """Mark jobs whose process stopped heartbeating as failed (frees the one-job slot)."""
        now = utcnow()
        async with self.sessions.begin() as session:
            stale = list((await session.execute(
                select(NLUModel.id).where(NLUModel.busy.is_not(None), NLUModel.heartbeat_at < now - STALE_AFTER)
            )).scalars())
            if stale:
                await session.execute(update(NLUModel).where(NLUModel.id.in_(stale)).values(
                    status="failed", busy=None, stage=DIED_ZH, finished_at=now))
                for job_id in stale:
                    await audit(session, "system", "nlu_job_failed", f"nlu_model:{job_id}", reason="heartbeat lost")
        return len(stale)

    async def start(self, actor: str) -> int:
        """Queue a job and run it in the background; refused while another job runs anywhere."""
        await self.recover()
        now = utcnow()
        try:
            async with self.sessions.begin() as session:
                job = NLUModel(status="queued", busy="busy", progress=0, stage="排队中", metrics={}, author=actor,
                               created_at=now, heartbeat_at=now)
                session.add(job)
                await session.flush()
                job_id = int(job.id)
                await audit(session, actor, "nlu_retrain", f"nlu_model:{job_id}")
        except IntegrityError:
            async with self.sessions() as session:
                running = (await session.execute(select(NLUModel.id, NLUModel.stage)
                                                 .where(NLUModel.busy.is_not(None)))).first()
            which = f"#{running.id}（{running.stage}）" if running else ""
            raise LearningError(f"已有训练任务{which}正在进行，一次只能运行一个；请等它结束后再开始。", 409) from None
        self._task = asyncio.create_task(self._run(job_id), name=f"nlu-retrain-{job_id}")
        return job_id

    async def wait(self) -> None:
        """Until this process's current job (if any) has finished."""
        if self._task is not None:
            await asyncio.wait({self._task})

    async def close(self) -> None:
        """Stop this process's job (marked failed: a stopped service must not leave it 'training')."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, job_id: int) -> None:
        beat = asyncio.create_task(self._beat(job_id), name=f"nlu-retrain-beat-{job_id}")
        try:
            await self._job(job_id)
        except asyncio.CancelledError:
            await asyncio.shield(self._end(job_id, "failed", STOPPED_ZH))
            raise
        except Exception as exc:  # job top: record why, so the console shows it, and free the slot
            log.exception("NLU retraining failed", extra={"job": job_id})
            await self._end(job_id, "failed", f"训练失败：{type(exc).__name__}: {exc}"[:500])
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    async def _job(self, job_id: int) -> None:
        await self._set(job_id, status="training", progress=2, stage="读取训练数据")
        base = await asyncio.to_thread(NLU.load, self.data_dir, self.cache_dir)
        data_examples = await asyncio.to_thread(load_examples, training_files(self.data_dir))
        known = {(e.text, e.intent) for e in data_examples}
        added = [e for e in await console_examples(self.sessions) if (e.text, e.intent) not in known]  # exported ones
        examples = data_examples + added
        digest = data_hash(examples)
        await self._set(job_id, progress=10, data_hash=digest,
                        stage=f"训练新模型：{len(examples)} 条样例（其中控制台添加 {len(added)} 条）")
        self._phase = _Phase(time.monotonic(), max(base.model.trained_seconds, 3.0) * 1.2, True)
        model = await asyncio.to_thread(train, examples, f"db{job_id}-{digest[:8]}")
        self._phase.training = False

        await self._set(job_id, status="evaluating", progress=62, stage="在测试集上评估新模型")
        test = await asyncio.to_thread(load_examples, [self.data_dir / "nlu" / "test"])
        candidate = figures(await asyncio.to_thread(measure, model, base, test))
        await self._set(job_id, progress=80, stage="在同一测试集上评估当前线上模型")
        live_id, live_model = await self._live_model()
        baseline = figures(await asyncio.to_thread(measure, live_model or base.model, base, test))
        tested = {normalize(e.text) for e in test}
        metrics = {
            "candidate": candidate, "baseline": baseline, "baseline_model": live_id,
            "model_version": MODEL_VERSION, "train_seconds": round(model.trained_seconds, 2),
            "examples": {"data": len(data_examples), "console": len(added)},
            "test_overlap": sum(1 for e in added if normalize(e.text) in tested),
            "data_key": fingerprint(training_files(self.data_dir), salt=MODEL_VERSION),
        }
        reason = judge(candidate, baseline)
        if reason is not None:
            metrics["decision"] = "refused"
            await self._end(job_id, "refused", reason, metrics=metrics)
            return
        metrics["decision"] = "activated"
        await self._activate(job_id, model, metrics)
        if self.live is not None:
            await self.live.check()

    async def _live_model(self) -> tuple[int | None, BuiltinModel | None]:
        """The active database model (None: the model trained from data/ is live)."""
        async with self.sessions() as session:
            row = (await session.execute(select(NLUModel.id, NLUModel.artifact, NLUModel.metrics)
                                         .where(NLUModel.status == "active").order_by(NLUModel.id.desc())
                                         .limit(1))).one_or_none()
        if row is None:
            return None, None
        model = await asyncio.to_thread(_unpickle, (row.artifact, row.metrics))
        return (row.id, model) if model is not None else (None, None)

    async def _activate(self, job_id: int, model: BuiltinModel, metrics: dict[str, Any]) -> None:
        artifact = await asyncio.to_thread(pickle.dumps, model, pickle.HIGHEST_PROTOCOL)
        now = utcnow()
        candidate, baseline = metrics["candidate"], metrics["baseline"]
        stage = (f"已启用：紧急情况召回率 {baseline['emergency_recall']:.3f} → {candidate['emergency_recall']:.3f}，"
                 f"宏平均F1 {baseline['macro_f1']:.3f} → {candidate['macro_f1']:.3f}")
        async with self.sessions.begin() as session:
            mine = await session.execute(update(NLUModel).where(NLUModel.id == job_id, NLUModel.busy.is_not(None))
                                         .values(status="active", busy=None, progress=100, stage=stage,
                                                 metrics=metrics, artifact=artifact, finished_at=now))
            if not mine.rowcount:
                raise RuntimeError("the job was marked failed meanwhile (heartbeat lost); not activated")
            await session.execute(update(NLUModel).where(NLUModel.status == "active", NLUModel.id != job_id)
                                  .values(status="superseded"))
            await audit(session, "system", "nlu_activate", f"nlu_model:{job_id}",
                        emergency_recall=candidate["emergency_recall"], macro_f1=candidate["macro_f1"])
        log.info("retrained NLU model is live", extra={"job": job_id})

    async def _set(self, job_id: int, **values: Any) -> None:
        async with self.sessions.begin() as session:
            await session.execute(update(NLUModel).where(NLUModel.id == job_id, NLUModel.busy.is_not(None))
                                  .values(heartbeat_at=utcnow(), **values))

    async def _end(self, job_id: int, status: str, stage: str, *, metrics: dict[str, Any] | None = None) -> None:
        values: dict[str, Any] = {"status": status, "busy": None, "stage": stage, "finished_at": utcnow(),
                                  "progress": 100}
        if metrics is not None:
            values["metrics"] = metrics
        async with self.sessions.begin() as session:
            ended = await session.execute(update(NLUModel).where(NLUModel.id == job_id, NLUModel.busy.is_not(None))
                                          .values(**values))
            if ended.rowcount:
                await audit(session, "system", f"nlu_{status}", f"nlu_model:{job_id}", reason=stage[:200])

    async def _beat(self, job_id: int) -> None:
        """Heartbeat the job (so others can tell it is alive) and estimate progress while training."""
        while True:
            await asyncio.sleep(BEAT)
            values: dict[str, Any] = {}
            phase = self._phase
            if phase.training:
                share = min((time.monotonic() - phase.started) / phase.expected, 0.95)
                values["progress"] = 10 + int(50 * share)
            try:
                await self._set(job_id, **values)
            except asyncio.CancelledError:
                raise
            except Exception:  # a missed beat is retried on the next one
                log.exception("NLU job heartbeat failed")

    # ----------------------------------------------------------------------- reading jobs

    async def jobs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest jobs, newest first (stale ones marked failed first)."""
        await self.recover()
        async with self.sessions() as session:
            rows = (await session.execute(select(NLUModel).order_by(NLUModel.id.desc()).limit(limit))).scalars()
            return [job_dict(row) for row in rows]

    async def job(self, job_id: int) -> dict[str, Any] | None:
        async with self.sessions() as session:
            row = await session.get(NLUModel, job_id)
            return job_dict(row) if row is not None else None

    async def active(self) -> dict[str, Any] | None:
        async with self.sessions() as session:
            row = (await session.execute(select(NLUModel).where(NLUModel.status == "active")
                                         .order_by(NLUModel.id.desc()).limit(1))).scalar_one_or_none()
            return job_dict(row) if row is not None else None

    def data_key(self) -> str:
        """The fingerprint of ``data/nlu/train`` now (to tell when the live model predates a data change)."""
        return fingerprint(training_files(self.data_dir), salt=MODEL_VERSION)


def job_dict(row: NLUModel) -> dict[str, Any]:
    return {"id": row.id, "status": row.status, "status_zh": STATUS_ZH.get(row.status, row.status),
            "progress": row.progress, "stage": row.stage, "metrics": row.metrics or {}, "author": row.author,
            "data_hash": row.data_hash, "running": row.busy is not None,
            "created_at": row.created_at.isoformat() if row.created_at else None,
            "finished_at": row.finished_at.isoformat() if row.finished_at else None}
