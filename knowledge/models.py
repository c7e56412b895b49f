"""Knowledge-base and directory tables: entries with versions, and per-country directory rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.storage.models import Base, utcnow


class KBEntry(Base):
    """A knowledge-base entry; its content lives in versions, one of which is published."""

    __tablename__ = "kb_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # faq | playbook
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft | published | archived
    published_version: Mapped[int | None] = mapped_column(Integer, default=None)
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    seed_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    staff_edited: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class KBVersion(Base):
    """One immutable version of an entry's content."""

    __tablename__ = "kb_versions"
    __table_args__ = (UniqueConstraint("entry_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("kb_entries.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column()
    author: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DirectoryCountry(Base):
    """Emergency numbers and missions for one country, each fact with its source."""

    __tablename__ = "directory_countries"

    iso: Mapped[str] = mapped_column(String(2), primary_key=True)
    emergency: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    missions: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    seed_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    staff_edited: Mapped[bool] = mapped_column(default=False)
    published_version: Mapped[int | None] = mapped_column(Integer, default=None)
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class KBState(Base):
    """A single row whose generation changes whenever published content changes (cache invalidation)."""

    __tablename__ = "kb_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SafetyAlert(Base):
    """A travel-safety alert for one country; its content lives in versions, one of which is published.

    ``data`` holds the published content (level, text, starts_at, ends_at, source) so the live
    knowledge base reads one table; an alert past ``ends_at`` is never shown.
    """

    __tablename__ = "safety_alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    country: Mapped[str] = mapped_column(String(2), index=True)
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft | published | archived
    published_version: Mapped[int | None] = mapped_column(Integer, default=None)
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    data: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DocVersion(Base):
    """One immutable version of a directory country or a safety alert (``kind`` + ``key``)."""

    __tablename__ = "doc_versions"
    __table_args__ = (UniqueConstraint("kind", "key", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # directory | alert
    key: Mapped[str] = mapped_column(String(32))  # ISO code, or the alert's id
    version: Mapped[int] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column()
    author: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
