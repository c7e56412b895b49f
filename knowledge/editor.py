"""What ops staff do to the knowledge base, the directory and safety alerts.

Every change is a new immutable version; a version is served only once it is published.
Publishing (or rolling back, or archiving) bumps the knowledge base's generation, so every bot
process serves the change from its very next message. Each action is one transaction and is
audited. ``base_version`` on an edit guards against two people overwriting each other.
"""

from __future__ import annotations

import difflib
from datetime import date, timedelta
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.accounts import audit
from bot.storage.models import utcnow
from knowledge.models import DirectoryCountry, DocVersion, KBEntry, KBVersion, SafetyAlert
from knowledge.seed import bump_generation, plain
from knowledge.validate import (Problem, alert_window, check_alert, check_emergency, check_entry,
                                check_mission, is_live)

STALE_AFTER = timedelta(days=365)
RESERVED_SLUGS = frozenset({"new", "export", "import"})  # console paths under /console/kb/


class EditorError(Exception):
    """A refused change: ``problems`` name the entry, field and reason; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 400, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.problems = problems or []

    def as_dict(self) -> dict[str, Any]:
        return {"error": str(self), "problems": [
            {"entry": p.entry, "field": p.field, "reason": p.reason} for p in self.problems]}


def is_stale(last_reviewed: Any, today: date | None = None) -> bool:
    """True when the content was last reviewed more than 12 months ago (or never)."""
    try:
        reviewed = date.fromisoformat(str(last_reviewed)[:10])
    except ValueError:
        return True
    return (today or utcnow().date()) - reviewed > STALE_AFTER


def diff(old: dict[str, Any] | None, new: dict[str, Any] | None, old_label: str, new_label: str) -> list[str]:
    """A line diff of two versions, as YAML (what staff read and edit)."""
    def lines(data: dict[str, Any] | None) -> list[str]:
        if data is None:
            return []
        return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=100).splitlines()
    return list(difflib.unified_diff(lines(old), lines(new), old_label, new_label, lineterm="", n=3))


# --- the editor -----------------------------------------------------------------------------------------------

class Editor:
    """Knowledge-base, directory and alert operations; each one transaction, audited."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    # entries ------------------------------------------------------------------------------------------------

    async def entries(self, query: str = "", kind: str | None = None) -> list[dict[str, Any]]:
        """Entries (archived ones last), newest content first, optionally filtered by a search text."""
        async with self.sessions() as session:
            rows = (await session.execute(
                select(KBEntry, KBVersion.data).join(KBVersion, (KBVersion.entry_id == KBEntry.id)
                                                     & (KBVersion.version == KBEntry.latest_version))
                .order_by(KBEntry.slug))).all()
        needle = query.strip().lower()
        items = []
        for entry, data in rows:
            if kind and entry.kind != kind:
                continue
            if needle and needle not in _haystack(entry.slug, data):
                continue
            items.append(_summary(entry, data))
        items.sort(key=lambda i: (i["status"] == "archived", i["slug"]))
        return items

    async def entry(self, slug: str) -> dict[str, Any]:
        """The entry with its published content and its draft (a newer unpublished version), if any."""
        async with self.sessions() as session:
            row = await self._entry(session, slug)
            versions = await self._kb_versions(session, row.id)
        by_number = {v.version: v for v in versions}
        latest = by_number[row.latest_version]
        published = by_number.get(row.published_version or -1)
        return {**_summary(row, latest.data),
                "published": published.data if published else None,
                "draft": latest.data if row.published_version != row.latest_version else None,
                "latest": latest.data}

    async def create(self, data: dict[str, Any], *, actor: str, note: str | None = None) -> dict[str, Any]:
        """A new entry as a draft (never served until published)."""
        content = _entry_content(data)
        if content["slug"] in RESERVED_SLUGS:
            raise EditorError("this slug names a console page", 400,
                              [Problem("console", str(content["slug"]), "slug", "reserved: choose another")])
        async with self.sessions.begin() as session:
            exists = (await session.execute(select(KBEntry.id).where(KBEntry.slug == content.get("slug")))).first()
            if exists:
                raise EditorError(f"an entry {content['slug']!r} already exists", 409,
                                  [Problem("console", str(content["slug"]), "slug", "already in use")])
            now = utcnow()
            row = KBEntry(slug=content["slug"], kind=content["kind"], status="draft", published_version=None,
                          latest_version=1, staff_edited=True, created_at=now, updated_at=now)
            session.add(row)
            await session.flush()
            session.add(KBVersion(entry_id=row.id, version=1, data=content, author=actor, note=note, created_at=now))
            await audit(session, actor, "kb_create", f"kb:{row.slug}", version=1)
        return await self.entry(content["slug"])

    async def update(self, slug: str, data: dict[str, Any], *, actor: str, base_version: int | None = None,
                     note: str | None = None) -> dict[str, Any]:
        """Save an edit as a new draft version; the live answer does not change until it is published."""
        content = _entry_content({**data, "slug": slug})
        async with self.sessions.begin() as session:
            row = await self._entry(session, slug, for_update=True)
            if base_version is not None and base_version != row.latest_version:
                raise EditorError(f"{slug} changed since you opened it (now version {row.latest_version}); "
                                  "reload and apply your edit again", 409)
            if content["kind"] != row.kind:
                raise EditorError("an entry's kind cannot change", 400,
                                  [Problem("console", slug, "kind", f"stays {row.kind}")])
            latest = await self._version(session, row.id, row.latest_version)
            if latest.data != content:
                row.latest_version += 1
                row.updated_at = utcnow()
                row.staff_edited = True
                if row.status == "archived":
                    row.status = "draft" if row.published_version is None else row.status
                session.add(KBVersion(entry_id=row.id, version=row.latest_version, data=content, author=actor,
                                      note=note, created_at=row.updated_at))
                await audit(session, actor, "kb_edit", f"kb:{slug}", version=row.latest_version)
        return await self.entry(slug)

    async def publish(self, slug: str, *, actor: str, version: int | None = None) -> dict[str, Any]:
        """Serve ``version`` (default: the latest) from the next message on, in every process."""
        async with self.sessions.begin() as session:
            row = await self._entry(session, slug, for_update=True)
            chosen = await self._version(session, row.id, version or row.latest_version)
            problems = check_entry(chosen.data, "console")
            if problems:
                raise EditorError("this version does not pass validation", 400, problems)
            row.published_version, row.status, row.updated_at, row.staff_edited = (
                chosen.version, "published", utcnow(), True)
            await bump_generation(session)
            await audit(session, actor, "kb_publish", f"kb:{slug}", version=chosen.version)
        return await self.entry(slug)

    async def rollback(self, slug: str, version: int, *, actor: str) -> dict[str, Any]:
        """Publish an earlier version's content again, as a new version (history stays linear)."""
        async with self.sessions.begin() as session:
            row = await self._entry(session, slug, for_update=True)
            old = await self._version(session, row.id, version)
            row.latest_version += 1
            now = utcnow()
            session.add(KBVersion(entry_id=row.id, version=row.latest_version, data=old.data, author=actor,
                                  note=f"rollback to version {version}", created_at=now))
            row.published_version, row.status, row.updated_at, row.staff_edited = (
                row.latest_version, "published", now, True)
            await bump_generation(session)
            await audit(session, actor, "kb_rollback", f"kb:{slug}", to=version, version=row.latest_version)
        return await self.entry(slug)

    async def archive(self, slug: str, *, actor: str) -> None:
        """Stop serving an entry (its history is kept; editing and publishing brings it back)."""
        async with self.sessions.begin() as session:
            row = await self._entry(session, slug, for_update=True)
            if row.kind == "playbook":
                raise EditorError("emergency playbooks cannot be removed; edit them instead", 409)
            was_live = row.status == "published"
            row.status, row.published_version, row.updated_at = "archived", None, utcnow()
            if was_live:
                await bump_generation(session)
            await audit(session, actor, "kb_archive", f"kb:{slug}")

    async def add_questions(self, slug: str, questions: list[str], *, actor: str) -> int:
        """Add question variants to the published entry and publish that as a new version.

        Returns the new version (or the current one when every question was already there).
        """
        async with self.sessions.begin() as session:
            row = await self._entry(session, slug, for_update=True)
            if row.published_version is None or row.kind != "faq":
                raise EditorError(f"{slug} is not a published FAQ entry", 409)
            current = await self._version(session, row.id, row.published_version)
            existing = list(current.data.get("questions") or [])
            seen = {q.strip() for q in existing}
            added = [q.strip()[:200] for q in questions if q.strip() and q.strip() not in seen]
            added = list(dict.fromkeys(added))
            if not added:
                return row.published_version
            data = {**current.data, "questions": existing + added}
            base = await self._version(session, row.id, row.latest_version)
            row.latest_version += 1
            now = utcnow()
            session.add(KBVersion(entry_id=row.id, version=row.latest_version, data=data, author=actor,
                                  note=f"{len(added)} question variants from unanswered messages", created_at=now))
            row.published_version, row.status, row.updated_at, row.staff_edited = (
                row.latest_version, "published", now, True)
            if base.version != current.version:
                # A pending draft stays the newest: re-save it on top with the same questions added.
                draft = {**base.data, "questions": list(dict.fromkeys(
                    list(base.data.get("questions") or []) + added))}
                row.latest_version += 1
                session.add(KBVersion(entry_id=row.id, version=row.latest_version, data=draft, author=actor,
                                      note="draft carried over with the new question variants", created_at=now))
            await bump_generation(session)
            await audit(session, actor, "kb_add_questions", f"kb:{slug}", added=len(added))
            return int(row.published_version)

    async def versions(self, slug: str) -> list[dict[str, Any]]:
        async with self.sessions() as session:
            row = await self._entry(session, slug)
            versions = await self._kb_versions(session, row.id)
        return [_version_info(v, row.published_version) for v in reversed(versions)]

    async def diff(self, slug: str, a: int, b: int) -> list[str]:
        async with self.sessions() as session:
            row = await self._entry(session, slug)
            old, new = await self._version(session, row.id, a), await self._version(session, row.id, b)
        return diff(old.data, new.data, f"{slug} v{a}", f"{slug} v{b}")

    async def _entry(self, session: AsyncSession, slug: str, *, for_update: bool = False) -> KBEntry:
        query = select(KBEntry).where(KBEntry.slug == slug)
        if for_update:
            query = query.with_for_update()
        row = (await session.execute(query)).scalar_one_or_none()
        if row is None:
            raise EditorError(f"no entry {slug!r}", 404)
        return row

    async def _version(self, session: AsyncSession, entry_id: int, version: int) -> KBVersion:
        row = (await session.execute(select(KBVersion).where(
            KBVersion.entry_id == entry_id, KBVersion.version == version))).scalar_one_or_none()
        if row is None:
            raise EditorError(f"no version {version}", 404)
        return row

    async def _kb_versions(self, session: AsyncSession, entry_id: int) -> list[KBVersion]:
        return list((await session.execute(select(KBVersion).where(KBVersion.entry_id == entry_id)
                                           .order_by(KBVersion.version))).scalars())

    # directory ----------------------------------------------------------------------------------------------

    async def countries(self, query: str = "") -> list[dict[str, Any]]:
        async with self.sessions() as session:
            rows = (await session.execute(select(DirectoryCountry).order_by(DirectoryCountry.iso))).scalars().all()
        needle = query.strip().lower()
        items = [_country_summary(r) for r in rows]
        return [i for i in items if not needle or needle in f'{i["iso"]} {i["name"]}'.lower()]

    async def country(self, iso: str) -> dict[str, Any]:
        async with self.sessions() as session:
            row = await session.get(DirectoryCountry, iso.upper())
            versions = await self._doc_versions(session, "directory", iso.upper())
        if row is None and not versions:
            raise EditorError(f"no directory entry for {iso!r}", 404)
        live = {"emergency": row.emergency, "missions": row.missions} if row else None
        latest = versions[-1].data if versions else live
        published_version = row.published_version if row else None
        draft = latest if versions and versions[-1].version != published_version else None
        return {**(_country_summary(row) if row else {"iso": iso.upper()}), "published": live,
                "draft": draft, "latest": latest}

    async def update_country(self, iso: str, data: dict[str, Any], *, actor: str, base_version: int | None = None,
                             note: str | None = None) -> dict[str, Any]:
        """Save a draft of a country's emergency numbers and missions (checked like the import)."""
        iso = iso.upper()
        content = _country_content(iso, data)
        async with self.sessions.begin() as session:
            row = await session.get(DirectoryCountry, iso, with_for_update=True)
            if row is None:
                row = DirectoryCountry(iso=iso, emergency=None, missions=[], staff_edited=True, latest_version=0,
                                       updated_at=utcnow())
                session.add(row)
                await session.flush()
            if base_version is not None and base_version != row.latest_version:
                raise EditorError(f"{iso} changed since you opened it (now version {row.latest_version}); "
                                  "reload and apply your edit again", 409)
            await self._snapshot_seeded(session, row)
            latest = await self._doc_version(session, "directory", iso, row.latest_version) \
                if row.latest_version else None
            if latest is None or latest.data != content:
                row.latest_version += 1
                row.updated_at = utcnow()
                session.add(DocVersion(kind="directory", key=iso, version=row.latest_version, data=content,
                                       author=actor, note=note, created_at=row.updated_at))
                await audit(session, actor, "directory_edit", f"directory:{iso}", version=row.latest_version)
        return await self.country(iso)

    async def publish_country(self, iso: str, *, actor: str, version: int | None = None) -> dict[str, Any]:
        iso = iso.upper()
        async with self.sessions.begin() as session:
            row = await session.get(DirectoryCountry, iso, with_for_update=True)
            if row is None:
                raise EditorError(f"no directory entry for {iso!r}", 404)
            await self._snapshot_seeded(session, row)
            chosen = await self._doc_version(session, "directory", iso, version or row.latest_version)
            problems = _country_problems(iso, chosen.data)
            if problems:
                raise EditorError("this version does not pass validation", 400, problems)
            row.emergency, row.missions = chosen.data.get("emergency"), list(chosen.data.get("missions") or [])
            row.published_version, row.staff_edited, row.updated_at = chosen.version, True, utcnow()
            await bump_generation(session)
            await audit(session, actor, "directory_publish", f"directory:{iso}", version=chosen.version)
        return await self.country(iso)

    async def rollback_country(self, iso: str, version: int, *, actor: str) -> dict[str, Any]:
        iso = iso.upper()
        async with self.sessions() as session:
            old = await self._doc_version(session, "directory", iso, version)
        await self.update_country(iso, old.data, actor=actor, note=f"rollback to version {version}")
        return await self.publish_country(iso, actor=actor)

    async def country_versions(self, iso: str) -> list[dict[str, Any]]:
        iso = iso.upper()
        async with self.sessions() as session:
            row = await session.get(DirectoryCountry, iso)
            versions = await self._doc_versions(session, "directory", iso)
        if row is None:
            raise EditorError(f"no directory entry for {iso!r}", 404)
        return [_version_info(v, row.published_version) for v in reversed(versions)]

    async def _snapshot_seeded(self, session: AsyncSession, row: DirectoryCountry) -> None:
        """A country loaded from the seed has no versions yet: its live content becomes version 1."""
        if row.latest_version == 0 and (row.emergency or row.missions):
            row.latest_version = row.published_version = 1
            session.add(DocVersion(kind="directory", key=row.iso, version=1, author="seed",
                                   data={"emergency": row.emergency, "missions": list(row.missions)},
                                   note="as loaded from data/directory", created_at=utcnow()))
            await session.flush()

    # alerts -------------------------------------------------------------------------------------------------

    async def alerts(self, country: str | None = None, *, include_archived: bool = False) -> list[dict[str, Any]]:
        async with self.sessions() as session:
            query = select(SafetyAlert).order_by(SafetyAlert.country, SafetyAlert.id.desc())
            if country:
                query = query.where(SafetyAlert.country == country.upper())
            rows = (await session.execute(query)).scalars().all()
            latest = await self._latest_docs(session, "alert", [str(r.id) for r in rows])
        return [_alert_summary(r, latest.get(str(r.id))) for r in rows
                if include_archived or r.status != "archived"]

    async def alert(self, alert_id: int) -> dict[str, Any]:
        async with self.sessions() as session:
            row = await self._alert(session, alert_id)
            versions = await self._doc_versions(session, "alert", str(alert_id))
        latest = versions[-1].data if versions else row.data
        draft = latest if row.published_version != row.latest_version else None
        return {**_alert_summary(row, latest), "published": row.data, "draft": draft, "latest": latest}

    async def create_alert(self, data: dict[str, Any], *, actor: str, note: str | None = None) -> dict[str, Any]:
        content = _alert_content(data)
        async with self.sessions.begin() as session:
            now = utcnow()
            row = SafetyAlert(country=content["country"], status="draft", latest_version=1, created_at=now,
                              updated_at=now)
            session.add(row)
            await session.flush()
            session.add(DocVersion(kind="alert", key=str(row.id), version=1, data=content, author=actor, note=note,
                                   created_at=now))
            await audit(session, actor, "alert_create", f"alert:{row.id}", country=content["country"])
            alert_id = row.id
        return await self.alert(alert_id)

    async def update_alert(self, alert_id: int, data: dict[str, Any], *, actor: str,
                           base_version: int | None = None, note: str | None = None) -> dict[str, Any]:
        content = _alert_content(data)
        async with self.sessions.begin() as session:
            row = await self._alert(session, alert_id, for_update=True)
            if base_version is not None and base_version != row.latest_version:
                raise EditorError(f"alert {alert_id} changed since you opened it (now version "
                                  f"{row.latest_version}); reload and apply your edit again", 409)
            latest = await self._doc_version(session, "alert", str(alert_id), row.latest_version)
            if latest.data != content:
                row.latest_version += 1
                row.updated_at = utcnow()
                session.add(DocVersion(kind="alert", key=str(alert_id), version=row.latest_version, data=content,
                                       author=actor, note=note, created_at=row.updated_at))
                await audit(session, actor, "alert_edit", f"alert:{alert_id}", version=row.latest_version)
        return await self.alert(alert_id)

    async def publish_alert(self, alert_id: int, *, actor: str, version: int | None = None) -> dict[str, Any]:
        async with self.sessions.begin() as session:
            row = await self._alert(session, alert_id, for_update=True)
            chosen = await self._doc_version(session, "alert", str(alert_id), version or row.latest_version)
            problems = check_alert(chosen.data, f"alert {alert_id}")
            if problems:
                raise EditorError("this version does not pass validation", 400, problems)
            row.data, row.country, row.published_version = chosen.data, chosen.data["country"], chosen.version
            row.status, row.updated_at = "published", utcnow()
            await bump_generation(session)
            await audit(session, actor, "alert_publish", f"alert:{alert_id}", version=chosen.version)
        return await self.alert(alert_id)

    async def rollback_alert(self, alert_id: int, version: int, *, actor: str) -> dict[str, Any]:
        async with self.sessions() as session:
            old = await self._doc_version(session, "alert", str(alert_id), version)
        await self.update_alert(alert_id, old.data, actor=actor, note=f"rollback to version {version}")
        return await self.publish_alert(alert_id, actor=actor)

    async def archive_alert(self, alert_id: int, *, actor: str) -> None:
        async with self.sessions.begin() as session:
            row = await self._alert(session, alert_id, for_update=True)
            was_live = row.status == "published"
            row.status, row.published_version, row.data, row.updated_at = "archived", None, None, utcnow()
            if was_live:
                await bump_generation(session)
            await audit(session, actor, "alert_archive", f"alert:{alert_id}")

    async def alert_versions(self, alert_id: int) -> list[dict[str, Any]]:
        async with self.sessions() as session:
            row = await self._alert(session, alert_id)
            versions = await self._doc_versions(session, "alert", str(alert_id))
        return [_version_info(v, row.published_version) for v in reversed(versions)]

    async def _alert(self, session: AsyncSession, alert_id: int, *, for_update: bool = False) -> SafetyAlert:
        query = select(SafetyAlert).where(SafetyAlert.id == alert_id)
        if for_update:
            query = query.with_for_update()
        row = (await session.execute(query)).scalar_one_or_none()
        if row is None:
            raise EditorError(f"no alert {alert_id}", 404)
        return row

    # shared -------------------------------------------------------------------------------------------------

    async def _doc_versions(self, session: AsyncSession, kind: str, key: str) -> list[DocVersion]:
        return list((await session.execute(select(DocVersion).where(DocVersion.kind == kind, DocVersion.key == key)
                                           .order_by(DocVersion.version))).scalars())

    async def _doc_version(self, session: AsyncSession, kind: str, key: str, version: int) -> DocVersion:
        row = (await session.execute(select(DocVersion).where(
            DocVersion.kind == kind, DocVersion.key == key, DocVersion.version == version))).scalar_one_or_none()
        if row is None:
            raise EditorError(f"no version {version}", 404)
        return row

    async def _latest_docs(self, session: AsyncSession, kind: str, keys: list[str]) -> dict[str, dict[str, Any]]:
        if not keys:
            return {}
        newest = (select(DocVersion.key, func.max(DocVersion.version).label("v"))
                  .where(DocVersion.kind == kind, DocVersion.key.in_(keys)).group_by(DocVersion.key).subquery())
        rows = await session.execute(select(DocVersion.key, DocVersion.data).join(
            newest, (DocVersion.key == newest.c.key) & (DocVersion.version == newest.c.v))
            .where(DocVersion.kind == kind))
        return {key: data for key, data in rows}


# --- content normalisation and summaries ----------------------------------------------------------------------

def _entry_content(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise EditorError("an entry must be a JSON object", 400)
    content = {k: plain(v) for k, v in data.items() if not str(k).startswith("_") and v not in (None, "", [], {})}
    content.setdefault("kind", "faq")
    for key in ("title", "answer", "followup"):
        if isinstance(content.get(key), dict):
            content[key] = {k: v for k, v in content[key].items() if v not in (None, "")}
    if isinstance(content.get("questions"), list):
        content["questions"] = list(dict.fromkeys(str(q).strip() for q in content["questions"] if str(q).strip()))
    content.setdefault("last_reviewed", utcnow().date().isoformat())
    # A draft may still lack its sources; publishing needs them (and everything else valid).
    problems = [p for p in check_entry(content, "console") if not p.field.startswith("sources")]
    if problems:
        raise EditorError("the entry has problems", 400, problems)
    return content


def _country_content(iso: str, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise EditorError("a directory entry must be a JSON object", 400)
    emergency = data.get("emergency")
    if emergency:
        emergency = {**plain(emergency), "iso": iso}
    missions = [{**plain(m), "iso": iso} if isinstance(m, dict) else m for m in data.get("missions") or []]
    content = {"emergency": emergency or None, "missions": missions}
    problems = _country_problems(iso, content)
    if problems:
        raise EditorError("the directory entry has problems", 400, problems)
    return content


def _country_problems(iso: str, content: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    if content.get("emergency"):
        problems.extend(check_emergency(content["emergency"], "console"))
    missions = content.get("missions")
    if not isinstance(missions, list):
        return problems + [Problem("console", iso, "missions", "a list of missions")]
    for mission in missions:
        problems.extend(check_mission(mission, "console"))
    if not content.get("emergency") and not missions:
        problems.append(Problem("console", iso, "(country)", "emergency numbers or at least one mission"))
    return problems


def _alert_content(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise EditorError("an alert must be a JSON object", 400)
    content = plain({k: v for k, v in data.items() if k in (
        "country", "level", "text", "starts_at", "ends_at", "source")})
    if isinstance(content.get("country"), str):
        content["country"] = content["country"].strip().upper()
    if isinstance(content.get("text"), dict):
        content["text"] = {k: str(v).strip() for k, v in content["text"].items() if v not in (None, "")}
    problems = check_alert(content)
    if problems:
        raise EditorError("the alert has problems", 400, problems)
    return content


def _haystack(slug: str, data: dict[str, Any]) -> str:
    parts = [slug, *(str(v) for v in (data.get("title") or {}).values()), *(data.get("questions") or []),
             *(str(v) for v in (data.get("answer") or {}).values()), *(str(t) for t in data.get("tags") or [])]
    return "\n".join(parts).lower()


def _summary(row: KBEntry, latest: dict[str, Any]) -> dict[str, Any]:
    title = latest.get("title") or {}
    return {"slug": row.slug, "kind": row.kind, "status": row.status, "title": title.get("zh") or row.slug,
            "title_en": title.get("en"), "published_version": row.published_version,
            "latest_version": row.latest_version, "has_draft": row.published_version != row.latest_version,
            "last_reviewed": latest.get("last_reviewed"), "stale": is_stale(latest.get("last_reviewed")),
            "tags": [str(t) for t in latest.get("tags") or []], "updated_at": row.updated_at.isoformat()}


def _country_summary(row: DirectoryCountry) -> dict[str, Any]:
    from nlu.geo import zh_name

    dates = [str((row.emergency or {}).get("last_reviewed") or "")]
    dates += [str(m.get("last_reviewed") or "") for m in row.missions]
    reviewed = min((d[:10] for d in dates if len(d) >= 10), default=None)
    return {"iso": row.iso, "name": zh_name(row.iso), "emergency": row.emergency, "missions": len(row.missions),
            "published_version": row.published_version, "latest_version": row.latest_version,
            "has_draft": bool(row.latest_version) and row.published_version != row.latest_version,
            "reviewed": reviewed, "stale": is_stale(reviewed), "updated_at": row.updated_at.isoformat()}


def _alert_summary(row: SafetyAlert, latest: dict[str, Any] | None) -> dict[str, Any]:
    shown = row.data or latest or {}
    live = bool(row.data) and row.status == "published" and is_live(row.data)
    expired = bool(shown) and alert_window(shown)[1] <= utcnow()
    return {"id": row.id, "country": row.country, "status": row.status, "level": shown.get("level"),
            "text": (shown.get("text") or {}).get("zh"), "starts_at": shown.get("starts_at"),
            "ends_at": shown.get("ends_at"), "live": live, "expired": expired,
            "published_version": row.published_version, "latest_version": row.latest_version,
            "has_draft": row.published_version != row.latest_version, "updated_at": row.updated_at.isoformat()}


def _version_info(v: KBVersion | DocVersion, published: int | None) -> dict[str, Any]:
    return {"version": v.version, "author": v.author, "note": v.note, "created_at": v.created_at.isoformat(),
            "published": v.version == published}
