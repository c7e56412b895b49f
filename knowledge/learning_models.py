"""Tables for learning from what users asked: triaged unanswered messages, console-added NLU
training examples, and retrained built-in models (the live one among them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.storage.models import Base, utcnow


class UnansweredTriage(Base):
    """What ops staff did with one unanswered message; a triaged message leaves the list."""

    __tablename__ = "unanswered_triage"

    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    action: Mapped[str] = mapped_column(String(16))  # dismissed | variant | training
    target: Mapped[str | None] = mapped_column(String(100), default=None)  # kb:<slug> or intent[/topic]
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class NLUExample(Base):
    """A training example added from the console; used by retraining and exported to ``data/``."""

    __tablename__ = "nlu_examples"
    __table_args__ = (UniqueConstraint("text", "intent"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(String(500))
    intent: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str | None] = mapped_column(String(64), default=None)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"), default=None)
    author: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NLUModel(Base):
    """A retraining job and the model it produced; at most one row is ``active`` (the live model).

    ``busy`` is "busy" while the job runs and NULL otherwise; its unique constraint lets only one
    job run at a time across every process sharing the database.
    """

    __tablename__ = "nlu_models"
    __table_args__ = (Index("ix_nlu_models_status", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    # queued | training | evaluating | active | refused | failed | superseded
    busy: Mapped[str | None] = mapped_column(String(8), unique=True, default=None)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    stage: Mapped[str] = mapped_column(String(500), default="")
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    data_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    artifact: Mapped[bytes | None] = mapped_column(LargeBinary, default=None, deferred=True)
    author: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
